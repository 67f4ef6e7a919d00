"""Prometheus multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), settled before prometheus_client loads.

Pure Python: ``symphony/settings.py`` calls ``settle_multiprocess_dir()`` first thing, before any app
imports prometheus_client (which picks its storage at import time).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def settle_multiprocess_dir() -> None:
    """Count in-process when ``PROMETHEUS_MULTIPROC_DIR`` names a folder that does not exist.

    prometheus_client would crash creating its first metric. That is what a management command
    typed in a shell that kept ``make run``'s environment met once gunicorn had removed its folder.
    A gunicorn master creates the folder itself (config/gunicorn.conf.py), so only processes outside
    the server count apart, which is what they should do anyway.
    """
    folder = os.environ.get(ENV)
    if folder and not os.path.isdir(folder):
        del os.environ[ENV]
    elif folder:
        forget_own_live_gauges(folder)


def forget_own_live_gauges(folder: str) -> None:
    """Remove the live gauges (``multiprocess_mode="live..."``) filed under this process's pid.

    No live process has this pid but this one, so they are a dead process's: one whose pid came
    round again, as it does in a container restarted with the same folder (an emptyDir outlives the
    container, and a new PID namespace hands out the same pids). prometheus_client would read them
    as this process's starting values: the claims a crashed ASGI process held would stay counted as
    waiting. gunicorn empties the folder when it starts; a process outside it (the ASGI server)
    cannot do that, since other processes may be using the folder, but it can drop what is its own.
    The same files ``prometheus_client.multiprocess.mark_process_dead`` removes.
    """
    for stale in Path(folder).glob(f"gauge_live*_{os.getpid()}.db"):
        stale.unlink(missing_ok=True)
