"""Fixtures for observability tests: captured log output with the real formatter, keyed users."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from observability import logs
from observability.tests.factories import UserFactory


@dataclass
class CapturedLogs:
    stream: io.StringIO

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stream.getvalue().splitlines() if line.strip()]

    def records(self) -> list[dict]:
        """Every line parsed as JSON (a line that is not JSON fails the test)."""
        return [json.loads(line) for line in self.lines]

    def events(self, event: str) -> list[dict]:
        return [record for record in self.records() if record.get("event") == event]


@pytest.fixture
def log_output() -> Iterator[CapturedLogs]:
    """What the production JSON formatter writes, captured from the root logger at DEBUG."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.make_formatter(logs.JSON))
    root = logging.getLogger()
    loggers = [root, logging.getLogger("django.request")]
    old_levels = [logger.level for logger in loggers]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield CapturedLogs(stream)
    finally:
        root.removeHandler(handler)
        for logger, level in zip(loggers, old_levels, strict=True):
            logger.setLevel(level)


@dataclass
class KeyedUser:
    user: object
    key: object
    raw: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.raw}"}


def _keyed_user(roles: list[str], scopes: list[str] | None) -> KeyedUser:
    from accounts.services import api_key_create

    user = UserFactory(role_names=roles)
    key, raw = api_key_create(owner=user, name="observability test", scopes=scopes)
    return KeyedUser(user, key, raw)


@pytest.fixture
def monitor_key(db) -> KeyedUser:
    """An API key allowed ``system:monitor`` (owner: a viewer)."""
    return _keyed_user(["viewer"], ["system:monitor"])


@pytest.fixture
def plain_key(db) -> KeyedUser:
    """An API key with no permission at all (owner without roles)."""
    return _keyed_user([], [])
