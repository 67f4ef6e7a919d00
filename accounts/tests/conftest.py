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


# --- single sign-on: a real OIDC provider on loopback ------------------------------------------------


class OidcProvider:
    """The test provider process (tests/oidc_provider) and its control API."""

    def __init__(self, url: str, control_token: str, client_id: str, client_secret: str) -> None:
        self.url = url
        self.issuer = f"{url}/o"
        self.client_id = client_id
        self.client_secret = client_secret
        self._token = control_token

    def control(self, what: str, **body: Any) -> dict[str, Any]:
        import requests

        response = requests.post(
            f"{self.url}/control/{what}", json=body, headers={"X-Control-Token": self._token}, timeout=10
        )
        response.raise_for_status()
        return response.json()

    def user(self, username: str, *, groups: list[str], password: str = "provider-pass", **fields: str) -> str:  # noqa: S107
        """Create or update a provider account; returns its subject (``sub``)."""
        return self.control("user", username=username, password=password, groups=groups, **fields)["sub"]

    def mode(self, mode: str) -> None:
        self.control("mode", mode=mode)


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A django-oauth-toolkit OIDC provider in its own process on 127.0.0.1 (one per xdist worker)."""
    import os
    import secrets
    import sys

    from tests.servers import ROOT, free_port, running, wait_for

    tmp = tmp_path_factory.mktemp("oidc-provider")
    port = free_port()
    provider = OidcProvider(f"http://127.0.0.1:{port}", secrets.token_hex(16), "symphony-test", secrets.token_hex(24))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "REDIS_", "SYMPHONY_"))
    }
    env.update(
        OIDC_TEST_PORT=str(port),
        OIDC_TEST_DB=str(tmp / "provider.sqlite3"),
        OIDC_TEST_CLIENT_ID=provider.client_id,
        OIDC_TEST_CLIENT_SECRET=provider.client_secret,
        OIDC_TEST_CONTROL_TOKEN=provider._token,
        PYTHONPATH=str(ROOT),
    )
    command = [sys.executable, "-m", "tests.oidc_provider"]
    with running(command, env=env, log=tmp / "provider.log") as process:
        wait_for(f"{provider.issuer}/.well-known/openid-configuration", timeout=60, process=process)
        yield provider


@pytest.fixture
def sso(oidc_provider: OidcProvider, settings: Any) -> OidcProvider:
    """Symphony configured for the test provider (which behaves, until told otherwise)."""
    from accounts.sso.provider import forget_metadata

    settings.SYMPHONY_OIDC_ISSUER = oidc_provider.issuer
    settings.SYMPHONY_OIDC_CLIENT_ID = oidc_provider.client_id
    settings.SYMPHONY_OIDC_CLIENT_SECRET = oidc_provider.client_secret
    settings.SYMPHONY_OIDC_ROLE_MAP = "platform-admins=admin,ml-team=developer,ml-team=viewer@alpha,watchers=viewer"
    forget_metadata()
    oidc_provider.mode("normal")
    oidc_provider.control("client", redirect_uris="http://testserver/sso/callback/")
    yield oidc_provider
    forget_metadata()
