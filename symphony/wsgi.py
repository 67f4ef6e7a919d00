"""WSGI entry point for gunicorn: ``gunicorn symphony.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")

application = get_wsgi_application()
