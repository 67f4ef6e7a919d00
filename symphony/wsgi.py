"""WSGI entry point for gunicorn: ``gunicorn symphony.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")

application = get_wsgi_application()

from observability.health import boot_completed  # noqa: E402 - needs the apps loaded above

boot_completed()  # /health/startup answers 200 from here on
