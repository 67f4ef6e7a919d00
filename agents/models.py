"""Agents, orchestras and tasks."""
