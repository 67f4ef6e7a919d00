"""ASGI entry point."""

import os

from django.core.asgi import get_asgi_application

from symphony import runtime

runtime.ASGI = True  # before the URLs load: agents/urls.py routes the claim to its waiting view here

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")

application = get_asgi_application()

from django.conf import settings  # noqa: E402 - configured by the line above

from symphony import db  # noqa: E402

# Requests give up waiting on PostgreSQL after this bound (management commands do not).
db.arm(settings.SYMPHONY_DB_TIMEOUT_SECONDS)
