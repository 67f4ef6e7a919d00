"""Schedules: tasks and workflow runs fired on a cron expression or an interval by ``run_scheduler``.

Models live in ``models.py`` (registered with the workflows app), the rules of time in ``timing.py``,
writes in ``services.py``, the tick in ``ticker.py``.
"""
