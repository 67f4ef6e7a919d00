"""Fixtures of the hardening tests: users with roles, API keys, the test URLs."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from rest_framework.test import APIClient

from accounts import ratelimit
from accounts.models import Role, User
from accounts.services import api_key_create


@pytest.fixture(autouse=True)
def _forget_key_limits():
    ratelimit.key_limits.clear()
    yield
    ratelimit.key_limits.clear()


@pytest.fixture
def make_user(db, fast_passwords):
    def make(username: str = "alice", role: str | None = "viewer", **extra) -> User:
        user = User.objects.create_user(username=username, password="correct horse battery", **extra)
        if role:  # the seeded roles are gone in transaction=True tests (the flush removes them)
            user.roles.add(Role.objects.get(name=role))
        return user

    return make


@pytest.fixture
def make_key(make_user):
    def make(role: str = "viewer", rate_limit: str = "", username: str | None = None) -> str:
        user = make_user(username=username or f"{role}-owner", role=role)
        _key, raw = api_key_create(owner=user, name=f"{role} key", rate_limit=rate_limit)
        return raw

    return make


@pytest.fixture
def api():
    return APIClient(raise_request_exception=False)


@pytest.fixture
def clock():
    """Frozen time, so no test straddles a rate-limit window edge; ``clock.shift(seconds)`` moves it."""
    with time_machine.travel(dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=dt.UTC), tick=False) as traveller:
        yield traveller


@pytest.fixture
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
