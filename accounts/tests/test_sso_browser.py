"""Single sign-on in Chromium: Symphony on localhost, the test provider on 127.0.0.1 (separate
cookies: different hosts and different cookie names)."""

from __future__ import annotations

import pytest

from accounts.models import User
from audit.models import AuditEvent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def sso_live(sso, live_server):
    sso.control(
        "client",
        redirect_uris=f"{live_server.url}/sso/callback/",
        post_logout_redirect_uris=f"{live_server.url}/admin/login/",
    )
    return sso


def sign_in_with_sso(page, base_url, provider, username):
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.click("#sso-login")
    page.wait_for_url(f"{provider.url}/accounts/login/**")
    page.fill("#id_username", username)
    page.fill("#id_password", "provider-pass")
    page.click("#idp-submit")


def test_it_signs_in_through_the_provider_and_follows_group_changes(live_server, page, sso_live):
    sso_live.user("carol", groups=["platform-admins"])
    sign_in_with_sso(page, live_server.url, sso_live, "carol")
    page.wait_for_url(f"{live_server.url}/admin/")
    assert page.locator("#user-tools").inner_text().upper().startswith("WELCOME")
    assert page.locator("a[href='/admin/accounts/user/']").count() >= 1  # admin: may read users
    cookies = {(c["domain"], c["name"]) for c in page.context.cookies()}
    assert ("localhost", "sessionid") in cookies and ("127.0.0.1", "idp_sessionid") in cookies
    carol = User.objects.get(username="carol")
    page.goto(f"{live_server.url}/admin/accounts/user/{carol.pk}/change/")
    assert "admin" in page.locator(".field-sso_roles").inner_text()

    # Moved to another group at the provider: the next login brings the new roles.
    sso_live.user("carol", groups=["watchers"])
    page.goto(f"{live_server.url}/admin/")
    page.click("#logout-form button")  # ends the provider's session too (RP-initiated logout)
    page.wait_for_url(f"{live_server.url}/admin/login/**")
    sign_in_with_sso(page, live_server.url, sso_live, "carol")  # the provider asks again
    page.wait_for_url(f"{live_server.url}/admin/")
    assert page.locator("a[href='/admin/accounts/user/']").count() == 0  # viewer: no users
    assert page.locator("a[href='/admin/agents/agent/']").count() >= 1
    revoked = AuditEvent.objects.get(event_type="authz.role.revoked")
    assert revoked.details == {"user": "carol", "role": "admin", "source": "sso"}


def test_it_refuses_a_tampered_state_with_a_clear_page(live_server, page, sso_live):
    sso_live.user("trudy", groups=["platform-admins"])
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.click("#sso-login")
    page.wait_for_url(f"{sso_live.url}/accounts/login/**")
    # Change the state in the authorization request the provider holds: it answers with a state
    # this browser's Symphony session never issued.
    assert "state%3D" in page.url
    page.goto(page.url.replace("state%3D", "state%3Dtampered", 1))
    page.fill("#id_username", "trudy")
    page.fill("#id_password", "provider-pass")
    page.click("#idp-submit")
    page.wait_for_selector("#sso-failure-reason")
    assert page.locator("h1").inner_text() == "Single sign-on failed"
    assert page.locator("#sso-failure-reason").inner_text() == "bad_state"
    assert AuditEvent.objects.get(event_type="auth.sso.failed").details["reason"] == "bad_state"
    page.goto(f"{live_server.url}/admin/")
    assert "/admin/login/" in page.url


def test_it_refuses_an_id_token_signed_by_another_key(live_server, page, sso_live):
    sso_live.user("mallory", groups=["platform-admins"])
    sso_live.mode("rogue_key")
    sign_in_with_sso(page, live_server.url, sso_live, "mallory")
    page.wait_for_selector("#sso-failure-reason")
    assert page.locator("#sso-failure-reason").inner_text() == "bad_signature"
    assert "signature does not verify" in page.locator("#sso-failure-message").inner_text()
    assert not User.objects.filter(username="mallory").exists()
    assert AuditEvent.objects.get(event_type="auth.sso.failed").details["reason"] == "bad_signature"
