"""The identity admin in a real browser (Debian's Chromium through Playwright)."""

import re

import pytest

from accounts.models import ApiKey
from accounts.tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

RAW_KEY = re.compile(r"sym_[a-z0-9]{12}_[A-Za-z0-9_\-]{43,}")


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")


def test_it_logs_in_to_the_admin(live_server, page, super_admin):
    log_in(page, live_server.url, super_admin.username)
    assert page.locator("#site-name").inner_text() == "Symphony operator console"
    assert page.locator("a[href='/admin/accounts/apikey/']").count() >= 1


def test_it_shows_a_new_api_key_exactly_once(live_server, page, super_admin):
    log_in(page, live_server.url, super_admin.username)
    page.goto(f"{live_server.url}/admin/accounts/apikey/add/")
    page.fill("#id_name", "from-the-browser")
    page.click("#id_owner + .select2 .select2-selection")  # the autocomplete widget
    page.fill(".select2-search__field", super_admin.username)
    page.locator(".select2-results__option", has_text=super_admin.username).click()
    page.fill("#id_rate_limit", "100/m")
    page.click("input[name=_save]")

    message = page.locator(".messagelist .success code.api-key")
    raw = message.inner_text()
    assert RAW_KEY.fullmatch(raw)
    key = ApiKey.objects.get(name="from-the-browser")
    assert raw.startswith(f"sym_{key.prefix}_")

    page.reload()
    assert RAW_KEY.search(page.content()) is None
    page.goto(f"{live_server.url}/admin/accounts/apikey/")
    assert key.prefix in page.content()
    assert RAW_KEY.search(page.content()) is None
    assert key.key_hash not in page.content()


def test_it_lets_a_read_only_staff_viewer_look_but_not_change(live_server, page, user_factory):
    viewer = user_factory(username="vera", roles=["viewer"], extra_permissions=["user:read"], is_staff=True)
    bob = user_factory(username="bob")
    log_in(page, live_server.url, viewer.username)
    page.goto(f"{live_server.url}/admin/accounts/user/{bob.pk}/change/")
    assert "bob" in page.locator("#content").inner_text()
    assert page.locator("input[name=_save]").count() == 0
    assert page.locator("input[name=username]").count() == 0  # shown as text, not a field
    response = page.goto(f"{live_server.url}/admin/accounts/user/add/")
    assert response.status == 403
