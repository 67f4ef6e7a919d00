"""Prometheus multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), settled before prometheus_client loads.

Pure Python: ``symphony/settings.py`` calls ``settle_multiprocess_dir()`` first thing, before any app
imports prometheus_client (which picks its storage at import time).
"""

from __future__ import annotations

import os

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
