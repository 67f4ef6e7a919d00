"""Create an API key for a user and print the key, and only the key, on stdout (errors on stderr)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from rest_framework.exceptions import APIException

from accounts.validators import validate_rate_limit


def _positive_days(value: str) -> int:
    import argparse

    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--expires-in must be a whole number of days, got {value!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError("--expires-in must be at least 1 day")
    return days


class Command(BaseCommand):
    help = "Create an API key for USERNAME and print it once on stdout (e.g. key=$(manage.py create_api_key bob ...))."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="A name for the key, unique among the owner's active keys.")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            metavar="CODE",
            help="A permission code the key may use (repeatable). Default: every permission the owner holds.",
        )
        parser.add_argument("--expires-in", type=_positive_days, metavar="DAYS", help="Expire after DAYS days.")
        parser.add_argument(
            "--rate-limit",
            default="",
            metavar="RATE",
            help="A preset (strict, moderate, lenient) or a rate: 100/m, 100/15m, 5000/h, 10/s.",
        )

    def handle(self, *args: Any, username: str, name: str, scopes: list[str] | None, **options: Any) -> None:
        from accounts import services

        rate_limit = options["rate_limit"]
        try:
            validate_rate_limit(rate_limit)
        except ValidationError as exc:
            raise CommandError(f"--rate-limit: {exc.messages[0]}") from None
        try:
            owner = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        expires_in = options["expires_in"]
        expires_at = timezone.now() + timedelta(days=expires_in) if expires_in else None
        try:
            _key, raw = services.api_key_create(
                owner=owner, name=name, scopes=scopes, expires_at=expires_at, rate_limit=rate_limit, actor=owner
            )
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from None
        except APIException as exc:
            raise CommandError(str(exc.detail)) from None
        self.stdout.write(raw)


def _messages(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(exc.messages)
