"""Single sign-on end to end against a real OIDC provider (tests/oidc_provider) on loopback.

Symphony runs in-process behind the test client; the provider runs in its own process, and
``provider_sign_in`` signs in there as a browser would.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from accounts.models import RoleBinding, SsoIdentity, User
from accounts.tests.sso_helpers import path_of, provider_sign_in
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def sso_login(client, provider, username, *, next_url="/admin/"):
    """Start at Symphony, sign in at the provider, come back: the callback's response."""
    start = client.get(f"/sso/login/?{urlencode({'next': next_url})}")
    assert start.status_code == 302
    assert start["Location"].startswith(f"{provider.issuer}/authorize/")
    return client.get(path_of(provider_sign_in(start["Location"], username)))


def bindings(user, source):
    return sorted(user.role_bindings.filter(source=source).values_list("role__name", flat=True))


def test_it_asks_for_the_code_with_pkce_state_and_nonce(client, sso):
    start = client.get("/sso/login/")
    query = parse_qs(urlsplit(start["Location"]).query)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [sso.client_id]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32
    assert query["redirect_uri"] == ["http://testserver/sso/callback/"]


def test_it_creates_the_user_on_first_login_with_the_mapped_roles(client, sso):
    sub = sso.user("carol", groups=["platform-admins", "ml-team", "unmapped"], email="carol@example.com")
    response = sso_login(client, sso, "carol")

    assert response.status_code == 302 and response["Location"] == "/admin/"
    carol = User.objects.get(username="carol")
    assert carol.email == "carol@example.com" and carol.is_staff and not carol.has_usable_password()
    assert SsoIdentity.objects.get(user=carol).subject == sub
    assert bindings(carol, "sso") == ["admin", "developer"]
    assert bindings(carol, "manual") == []
    assert client.get("/admin/").status_code == 200
    me = client.get("/api/v1/me/").json()
    assert me["username"] == "carol" and me["roles"] == ["admin", "developer"]
    assert "agent:delete" in me["permissions"]

    login = AuditEvent.objects.get(event_type="auth.sso.login")
    assert login.actor == carol
    assert login.details["created"] is True
    assert login.details["granted"] == ["admin", "developer"]
    assert login.details["skipped"] == ["ml-team=viewer@alpha"]  # no project alpha
    assigned = AuditEvent.objects.filter(event_type="authz.role.assigned").order_by("id")
    assert [e.details for e in assigned] == [
        {"user": "carol", "role": "admin", "source": "sso"},
        {"user": "carol", "role": "developer", "source": "sso"},
    ]


def test_it_resyncs_at_every_login_and_keeps_manual_grants(client, sso, django_capture_on_commit_callbacks):
    from accounts import services

    sso.user("dave", groups=["ml-team"])
    sso_login(client, sso, "dave")
    dave = User.objects.get(username="dave")
    services.role_grant(actor=None, user=dave, role="viewer")  # by hand, beside the synced developer
    client.logout()

    sso.user("dave", groups=["watchers"])
    with django_capture_on_commit_callbacks(execute=True):
        sso_login(client, sso, "dave")
    assert bindings(dave, "sso") == ["viewer"]
    assert bindings(dave, "manual") == ["viewer"]
    assert not User.objects.get(pk=dave.pk).has_perm("agent:execute")  # developer is gone, cache too
    revoked = AuditEvent.objects.get(event_type="authz.role.revoked")
    assert revoked.details == {"user": "dave", "role": "developer", "source": "sso"}
    client.logout()

    sso.user("dave", groups=[])
    sso_login(client, sso, "dave")
    assert bindings(dave, "sso") == []
    assert bindings(dave, "manual") == ["viewer"]  # leaving every group keeps what a person granted
    assert User.objects.get(pk=dave.pk).has_perm("agent:read")
    user_api = client.get("/api/v1/users/dave/")
    assert user_api.status_code == 403  # dave may not read users; an admin may:


def test_the_users_api_shows_manual_and_synced_roles_apart(client, sso, admin_user):
    sso.user("erin", groups=["watchers"])
    sso_login(client, sso, "erin")
    from accounts import services

    services.role_grant(actor=None, user=User.objects.get(username="erin"), role="analyst")
    client.force_login(admin_user)
    body = client.get("/api/v1/users/erin/").json()
    assert body["roles"] == ["analyst"] and body["sso_roles"] == ["viewer"]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("rogue_key", "bad_signature"),
        ("wrong_audience", "unknown_audience"),
        ("expired", "expired_token"),
        ("wrong_issuer", "wrong_issuer"),
        ("wrong_nonce", "bad_nonce"),
    ],
)
def test_it_refuses_an_id_token_that_does_not_verify(client, sso, mode, reason):
    sso.user("mallory", groups=["platform-admins"])
    sso.mode(mode)
    response = sso_login(client, sso, "mallory")

    assert response.status_code == 403
    assert "Single sign-on failed" in response.content.decode()
    assert f'<code id="sso-failure-reason">{reason}</code>' in response.content.decode()
    assert not User.objects.filter(username="mallory").exists()
    assert client.get("/api/v1/me/").status_code in (401, 403)
    failed = AuditEvent.objects.get(event_type="auth.sso.failed")
    assert failed.outcome == "failure" and failed.details["reason"] == reason
    assert not AuditEvent.objects.filter(event_type="auth.sso.login").exists()


def test_it_refuses_a_tampered_state(client, sso):
    sso.user("trudy", groups=["platform-admins"])
    start = client.get("/sso/login/")
    callback = provider_sign_in(start["Location"], "trudy")
    state = parse_qs(urlsplit(callback).query)["state"][0]
    response = client.get(path_of(callback).replace(state, "x" + state[1:]))

    assert response.status_code == 403
    assert "state mismatch" in response.content.decode()
    assert AuditEvent.objects.get(event_type="auth.sso.failed").details["reason"] == "bad_state"
    assert not User.objects.filter(username="trudy").exists()


def test_it_accepts_a_callback_only_once(client, sso):
    sso.user("rita", groups=[])
    start = client.get("/sso/login/")
    callback = path_of(provider_sign_in(start["Location"], "rita"))
    assert client.get(callback).status_code == 302
    client.logout()
    replay = client.get(callback)
    assert replay.status_code == 403
    assert AuditEvent.objects.get(event_type="auth.sso.failed").details["reason"] == "bad_state"


def test_it_never_adopts_a_local_account_of_the_same_name(client, sso, user_factory):
    user_factory(username="root", is_superuser=True)
    sso.user("root", groups=["platform-admins"])
    response = sso_login(client, sso, "root")
    assert response.status_code == 403
    assert AuditEvent.objects.get(event_type="auth.sso.failed").details["reason"] == "username_taken"
    assert not SsoIdentity.objects.exists()
    assert not RoleBinding.objects.filter(source="sso").exists()


def test_it_refuses_a_user_deactivated_in_symphony(client, sso):
    sso.user("ivan", groups=["watchers"])
    sso_login(client, sso, "ivan")
    client.logout()
    User.objects.filter(username="ivan").update(is_active=False)
    response = sso_login(client, sso, "ivan")
    assert response.status_code == 403
    assert AuditEvent.objects.get(event_type="auth.sso.failed").details["reason"] == "user_inactive"


def test_it_shows_a_clear_page_when_the_provider_is_unreachable(client, sso, settings):
    from tests.servers import free_port

    settings.SYMPHONY_OIDC_ISSUER = f"http://127.0.0.1:{free_port()}/o"
    response = client.get("/sso/login/")
    assert response.status_code == 502
    assert "could not be reached" in response.content.decode()
    assert AuditEvent.objects.get(event_type="auth.sso.failed").details["reason"] == "provider_unavailable"


def test_it_ends_the_provider_session_on_logout(client, sso):
    sso.control("client", redirect_uris="http://testserver/sso/callback/",
                post_logout_redirect_uris="http://testserver/admin/login/")  # fmt: skip
    sso.user("lena", groups=["watchers"])
    sso_login(client, sso, "lena")
    response = client.post("/admin/logout/")
    assert response.status_code == 200
    link = re.search(r'id="sso-logout-continue" href="([^"]+)"', response.content.decode())[1]
    target = urlsplit(html.unescape(link))
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{sso.issuer}/logout/"
    query = parse_qs(target.query)
    assert query["post_logout_redirect_uri"] == ["http://testserver/admin/login/"]
    assert query["id_token_hint"][0].count(".") == 2
    assert client.get("/api/v1/me/").status_code in (401, 403)  # logged out here already
    assert AuditEvent.objects.filter(event_type="auth.logout").count() == 1


def test_it_logs_out_as_usual_after_a_password_login(client, sso, admin_user):
    client.force_login(admin_user)
    response = client.post("/admin/logout/")
    assert response.status_code == 200
    assert "sso-logout-continue" not in response.content.decode()
    assert client.get("/api/v1/me/").status_code in (401, 403)


def test_it_is_off_without_an_issuer(client):
    assert client.get("/sso/login/").status_code == 404
    assert client.get("/sso/callback/?code=x&state=y").status_code == 404
    assert "Log in with SSO" not in client.get("/admin/login/").content.decode()
