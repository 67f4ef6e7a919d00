"""Swagger UI and the admin work in a real browser under the Content-Security-Policy."""

from __future__ import annotations

import pytest

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.urls("symphony.tests.urls"),
]


def _watch_csp(page) -> list[str]:
    """Collect CSP violations: console errors and securitypolicyviolation events."""
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    return problems


def test_it_renders_swagger_ui_without_csp_violations(live_server, page):
    problems = _watch_csp(page)
    response = page.goto(f"{live_server.url}/api/docs/")

    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector(".opblock-summary-path", state="visible")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/api/test/catalog/" in path for path in paths)
    page.locator(".opblock-summary-path", has_text="/api/test/catalog/").first.click()
    page.wait_for_selector(".opblock-body")
    assert problems == []


def test_it_lets_an_operator_log_in_to_the_admin_under_the_csp(live_server, page, user_with_role):
    user_with_role("grace", role=None, is_staff=True, is_superuser=True)
    problems = _watch_csp(page)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "grace")
    page.fill("#id_password", "correct horse battery")
    page.click("input[type=submit]")

    page.wait_for_selector("#site-name")
    assert "Fleet administration" in page.title() or "Site administration" in page.content()
    assert page.url.rstrip("/").endswith("/admin")
    assert problems == []
