"""Template tags for the login pages: the "Log in with SSO" link when OIDC is configured."""

from __future__ import annotations

from urllib.parse import urlencode

from django import template
from django.conf import settings
from django.urls import reverse

from accounts.sso.provider import is_configured

register = template.Library()


@register.simple_tag
def sso_login_url(next_url: str = "") -> str:
    """The SSO start URL (carrying ``next``), or "" when single sign-on is not configured."""
    if not is_configured():
        return ""
    url = reverse("sso-login")
    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


@register.simple_tag
def sso_password_login_restricted() -> bool:
    """True when ``SYMPHONY_OIDC_ONLY`` keeps password login for superusers only."""
    return bool(settings.SYMPHONY_OIDC_ONLY)
