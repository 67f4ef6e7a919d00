"""Settings for bench/bench_obs.py: Symphony's settings, plus a tiny authenticated endpoint, and an
"observability off" mode (``SYMPHONY_BENCH_OBSERVABILITY=off``) to measure what the stack costs.

Off means: no django-prometheus middleware and plain database backends (no metrics), the access log
silenced (``LOG_LEVEL=WARNING``, set by the bench), no OTEL_* variables (no tracing) and no
PROMETHEUS_MULTIPROC_DIR. The request id middleware stays: audit events and error bodies need it.
"""

import os

from symphony.settings import *  # noqa: F403
from symphony.settings import DATABASES, MIDDLEWARE

ROOT_URLCONF = "bench.urls"

if os.environ.get("SYMPHONY_BENCH_OBSERVABILITY", "on") == "off":
    MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("django_prometheus.")]
    for _db in DATABASES.values():
        _db["ENGINE"] = {"symphony.db.postgresql": "django.db.backends.postgresql"}.get(
            _db["ENGINE"], _db["ENGINE"].replace("django_prometheus.db.backends.", "django.db.backends.")
        )
