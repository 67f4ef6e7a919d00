from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts.tests.factories import ApiKeyFactory, RoleFactory, UserFactory
from audit.models import AuditEvent


@pytest.fixture
def user_factory(db: None) -> type[UserFactory]:
    return UserFactory


@pytest.fixture
def role_factory(db: None) -> type[RoleFactory]:
    return RoleFactory


@pytest.fixture
def api_key_factory(db: None) -> type[ApiKeyFactory]:
    return ApiKeyFactory


@pytest.fixture
def super_admin(user_factory: type[UserFactory]) -> Any:
    return user_factory(username="root", roles=["super_admin"], is_staff=True)


@pytest.fixture
def admin_user(user_factory: type[UserFactory]) -> Any:
    """A user with the seeded ``admin`` role (not a superuser)."""
    return user_factory(username="alice", roles=["admin"], is_staff=True)


@pytest.fixture
def key_for(api_key_factory: type[ApiKeyFactory]) -> Callable[..., dict[str, str]]:
    """``key_for(user, scopes=[...])`` -> request headers carrying a fresh key for ``user``."""

    def make(user: Any, scopes: list[str] | None = None, **kwargs: Any) -> dict[str, str]:
        if scopes is None:
            from accounts.backends import compute_user_codes

            scopes = sorted(compute_user_codes(user))
        key = api_key_factory(owner=user, scopes=scopes, **kwargs)
        return {"Authorization": f"Bearer {key.raw}"}

    return make


@pytest.fixture
def events() -> Callable[..., list[AuditEvent]]:
    """``events("role.created")`` -> audit events of that type, oldest first."""

    def find(event_type: str | None = None) -> list[AuditEvent]:
        qs = AuditEvent.objects.order_by("id")
        return list(qs.filter(event_type=event_type) if event_type else qs)

    return find


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Any) -> None:
    """PBKDF2 at production strength costs ~0.5 s per hash; tests do not test its strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
