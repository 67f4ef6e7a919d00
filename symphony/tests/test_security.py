"""Security headers, cookies, `check --deploy` under the documented production settings, TLS proxies."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

#: The production settings documented in docs/security.md (plus a real secret and host).
PRODUCTION_ENV = {
    "DEBUG": "false",
    "ALLOWED_HOSTS": "symphony.example.com",
    "SYMPHONY_HTTPS": "true",
    "SYMPHONY_SECURE_PROXY_SSL_HEADER": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "REDIS_URL": "redis://127.0.0.1:6379/7",
}


def _python(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SYMPHONY_", "SECURE_")) and k != "DJANGO_ALLOW_ASYNC_UNSAFE"  # a pytest-only crutch
    }
    base.update({"SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_SETTINGS_MODULE": "symphony.settings", **env})
    return subprocess.run([sys.executable, *args], env=base, capture_output=True, text=True, check=False)


CHECK_DEPLOY = ["manage.py", "check", "--deploy", "--fail-level", "WARNING"]


def test_it_passes_check_deploy_under_the_documented_production_settings():
    result = _python(CHECK_DEPLOY, PRODUCTION_ENV)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_fails_check_deploy_without_https_settings():
    result = _python(CHECK_DEPLOY, {"DEBUG": "false", "REDIS_URL": ""})

    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout  # no HSTS


def test_it_derives_hsts_and_secure_cookies_from_symphony_https():
    show = [
        "-c",
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT)",
    ]
    on = _python(show, {"DEBUG": "false", "SYMPHONY_HTTPS": "true"})
    off = _python(show, {"DEBUG": "false"})
    custom = _python(show, {"DEBUG": "false", "SYMPHONY_HTTPS": "true", "SECURE_HSTS_SECONDS": "600"})

    assert on.stdout.split() == ["31536000", "True", "True", "True"], on.stderr
    assert off.stdout.split() == ["0", "False", "False", "False"], off.stderr
    assert custom.stdout.split()[0] == "600"


def test_it_refuses_a_bad_rate_setting_at_start_up():
    result = _python(["-c", "import symphony.settings"], {"SYMPHONY_RATELIMIT_OVERRIDES": "audit-event=sometimes"})

    assert result.returncode != 0
    assert "SYMPHONY_RATELIMIT_OVERRIDES" in result.stderr


@pytest.mark.parametrize("path", ["/api/v1/nothing/", "/admin/login/"])
def test_it_sends_the_security_headers(client, path):
    response = client.get(path)

    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


def test_it_sends_hsts_on_secure_requests(client, settings):
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True

    assert client.get("/api/v1/nothing/", secure=True)["Strict-Transport-Security"] == (
        "max-age=31536000; includeSubDomains"
    )


def test_it_logs_in_through_a_tls_terminating_proxy(settings, user_with_role):
    """Secure cookies, HTTPS redirect and CSRF's strict Referer check, with X-Forwarded-Proto: https."""
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    user_with_role("erin", role="super_admin", is_staff=True)
    browser = Client(enforce_csrf_checks=True)
    # What nginx sends: the original Host, and X-Forwarded-Proto set by the proxy itself.
    proxied = {
        "HTTP_HOST": "testserver",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_REFERER": "https://testserver/admin/login/",
    }

    assert browser.get("/admin/login/").status_code == 301  # plain HTTP is sent to HTTPS
    form = browser.get("/admin/login/", **proxied)
    csrf_cookie = form.cookies["csrftoken"]
    answer = browser.post(
        "/admin/login/?next=/admin/",
        {"username": "erin", "password": "correct horse battery", "csrfmiddlewaretoken": csrf_cookie.value},
        **proxied,
    )

    assert answer.status_code == 302, answer.content[:500]
    assert answer["Location"] == "/admin/"
    session_cookie = answer.cookies["sessionid"]
    assert session_cookie["secure"] and session_cookie["httponly"]
    assert session_cookie["samesite"] == "Lax"
    assert csrf_cookie["secure"] and csrf_cookie["httponly"]
    assert browser.get("/admin/", **proxied).status_code == 200


def test_it_refuses_a_login_post_whose_referer_is_another_site(settings, user_with_role):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    user_with_role("frank", role="super_admin", is_staff=True)
    browser = Client(enforce_csrf_checks=True)
    proxied = {"HTTP_HOST": "testserver", "HTTP_X_FORWARDED_PROTO": "https"}
    token = browser.get("/admin/login/", **proxied).cookies["csrftoken"].value
    answer = browser.post(
        "/admin/login/",
        {"username": "frank", "password": "correct horse battery", "csrfmiddlewaretoken": token},
        HTTP_REFERER="https://evil.example/",
        **proxied,
    )

    assert answer.status_code == 403


def test_the_csp_header_follows_the_settings(client, settings):
    first = client.get("/api/v1/nothing/")["Content-Security-Policy"]
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {
        "DIRECTIVES": {"script-src": ["'self'"]},
        "EXCLUDE_URL_PREFIXES": ["/admin/"],
    }

    api = client.get("/api/v1/nothing/")
    admin = client.get("/admin/login/")

    assert first != "default-src 'none'"
    assert api["Content-Security-Policy"] == admin["Content-Security-Policy"] == "default-src 'none'"
    assert "script-src 'self'" in api["Content-Security-Policy-Report-Only"]
    assert "Content-Security-Policy-Report-Only" not in admin


def test_a_response_that_used_a_nonce_gets_it_in_its_policy(rf, settings):
    from csp.constants import NONCE, SELF
    from django.http import HttpResponse

    from symphony.middleware import CSPMiddleware

    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"script-src": [SELF, NONCE]}}

    def view(request):
        return HttpResponse(f"<script nonce='{request.csp_nonce}'></script>")

    request = rf.get("/console/")
    response = CSPMiddleware(view)(request)
    plain_request = rf.get("/console/")
    plain = CSPMiddleware(lambda request: HttpResponse("ok"))(plain_request)

    nonce = request._csp_nonce
    assert f"'nonce-{nonce}'" in response["Content-Security-Policy"]
    assert "nonce-" not in plain["Content-Security-Policy"]
    with pytest.raises(Exception, match="not available after the CSP header"):
        str(plain_request.csp_nonce)  # too late: the header is written
