"""The login pages with single sign-on: the SSO button, and password login under SYMPHONY_OIDC_ONLY."""

from __future__ import annotations

import pytest

from accounts.tests.factories import PASSWORD
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def oidc_settings(settings):
    settings.SYMPHONY_OIDC_ISSUER = "http://127.0.0.1:9/o"  # never contacted by these tests
    settings.SYMPHONY_OIDC_CLIENT_ID = "symphony"
    return settings


@pytest.mark.parametrize("path", ["/admin/login/?next=/admin/agents/", "/api-auth/login/?next=/admin/agents/"])
def test_the_login_pages_offer_sso_when_configured(client, oidc_settings, path):
    page = client.get(path).content.decode()
    assert 'id="sso-login" href="/sso/login/?next=%2Fadmin%2Fagents%2F"' in page
    assert "Log in with SSO" in page
    assert "sso-only-note" not in page


@pytest.mark.parametrize("path", ["/admin/login/", "/api-auth/login/"])
def test_the_login_pages_have_no_sso_button_without_oidc(client, path):
    assert 'id="sso-login"' not in client.get(path).content.decode()


@pytest.mark.parametrize("path", ["/admin/login/", "/api-auth/login/"])
def test_oidc_only_turns_password_login_off_for_all_but_superusers(client, oidc_settings, user_factory, path):
    oidc_settings.SYMPHONY_OIDC_ONLY = True
    user_factory(username="alice", roles=["admin"], is_staff=True)
    response = client.post(path, {"username": "alice", "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 200  # the form again, with an error
    assert "_auth_user_id" not in client.session
    assert "sso-only-note" in response.content.decode()
    failed = AuditEvent.objects.get(event_type="auth.failed")
    assert failed.details["username"] == "alice"


@pytest.mark.parametrize("path", ["/admin/login/", "/api-auth/login/"])
def test_oidc_only_keeps_password_login_for_superusers(client, oidc_settings, user_factory, path):
    oidc_settings.SYMPHONY_OIDC_ONLY = True
    user_factory(username="root", is_superuser=True, is_staff=True)
    response = client.post(path, {"username": "root", "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_oidc_only_ends_password_sessions_of_other_users(client, oidc_settings, user_factory):
    alice = user_factory(username="alice", roles=["admin"], is_staff=True)
    client.post("/admin/login/", {"username": "alice", "password": PASSWORD, "next": "/admin/"})
    assert client.get("/admin/").status_code == 200
    oidc_settings.SYMPHONY_OIDC_ONLY = True
    assert client.get("/admin/").status_code == 302  # back to the login page
    assert alice.is_active
