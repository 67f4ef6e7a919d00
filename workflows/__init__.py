"""Workflows: DAG runs of steps (each step a task), approvals by humans; built on agents' dispatch."""
