"""WSGI entry point for gunicorn: ``gunicorn symphony.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")

application = get_wsgi_application()

from django.conf import settings  # noqa: E402 - configured by the line above

from observability.health import boot_completed  # noqa: E402 - needs the apps loaded above
from symphony import db  # noqa: E402

# Requests give up waiting on PostgreSQL after this bound (management commands do not).
db.arm(settings.SYMPHONY_DB_TIMEOUT_SECONDS)
boot_completed()  # /health/startup answers 200 from here on
