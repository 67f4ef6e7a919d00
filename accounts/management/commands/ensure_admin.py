"""Create the ``admin`` superuser once; print its password once. Never resets an existing one."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction


class Command(BaseCommand):
    help = "Create the 'admin' superuser with SYMPHONY_ADMIN_PASSWORD or a random password printed once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="admin")

    @transaction.atomic
    def handle(self, *args: Any, username: str, **options: Any) -> None:
        from accounts.models import Role

        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Superuser '{username}' already exists; its password is unchanged.")
            return
        password = os.environ.get("SYMPHONY_ADMIN_PASSWORD") or secrets.token_urlsafe(16)
        user = User.objects.create_superuser(username=username, email="", password=password)
        user.roles.add(Role.objects.get(name="super_admin"))
        import audit

        audit.record("user.created", actor=None, resource=user, details={"username": username, "via": "ensure_admin"})
        if os.environ.get("SYMPHONY_ADMIN_PASSWORD"):
            self.stdout.write(f"Created superuser '{username}' with the password from SYMPHONY_ADMIN_PASSWORD.")
        else:
            self.stdout.write(f"Created superuser '{username}' with password: {password}")
            self.stdout.write("This password is shown once; change it in the admin.")
