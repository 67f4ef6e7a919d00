"""The browser side of single sign-on: start, callback, logout, and a clear page when it fails.

The start view is mozilla-django-oidc's (state, nonce and PKCE verifier kept in the session). The
callback is ours so that every refusal has a reason, is audited as ``auth.sso.failed`` and shows
a page saying what went wrong, instead of the library's bare 400 or redirect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import structlog
from django.conf import settings
from django.contrib import admin, auth
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_POST
from mozilla_django_oidc.views import OIDCAuthenticationRequestView

import audit
from accounts.sso.backend import oidc_settings
from accounts.sso.provider import SsoFailure, is_configured, provider_metadata

log = structlog.get_logger(__name__)

BACKEND = "accounts.sso.backend.SsoBackend"
ID_TOKEN_SESSION_KEY = "sso_id_token"  # noqa: S105 - a session key name
_STATES_SESSION_KEY = "oidc_states"  # where mozilla-django-oidc's start view keeps state -> nonce, verifier
_NEXT_SESSION_KEY = "oidc_login_next"
DEFAULT_NEXT = "/admin/"


def failure_page(request: HttpRequest, failure: SsoFailure) -> HttpResponse:
    """Audit ``auth.sso.failed`` with the reason and show it (status 400, 403 or 502)."""
    log.warning("sso_login_failed", reason=failure.reason)
    with transaction.atomic():
        audit.record(
            "auth.sso.failed",
            outcome="failure",
            action="login",
            details={"reason": failure.reason, "message": failure.message, "issuer": settings.SYMPHONY_OIDC_ISSUER},
        )
    context = {
        **_page_context(request),
        "reason": failure.reason,
        "message": failure.message,
        "title": "Single sign-on failed",
    }
    return render(request, "accounts/sso_failed.html", context, status=failure.status)


def _page_context(request: HttpRequest) -> dict[str, Any]:
    """The admin's look (header, title) without its app sidebar: nobody is signed in here."""
    return {**admin.site.each_context(request), "is_nav_sidebar_enabled": False, "available_apps": []}


class SsoLoginView(OIDCAuthenticationRequestView):
    """Redirect to the provider's authorization endpoint (``?next=`` is where to land after)."""

    get_settings = staticmethod(oidc_settings)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not is_configured():
            raise Http404("Single sign-on is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = self.get_settings("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except SsoFailure as failure:
            return failure_page(request, failure)
        self.OIDC_RP_CLIENT_ID = self.get_settings("OIDC_RP_CLIENT_ID")
        return super().get(request)


@require_GET
def sso_callback(request: HttpRequest) -> HttpResponse:
    """Where the provider sends the browser back with ``code`` and ``state``: log in and go on to
    ``next`` (default the admin), or show why not."""
    if not is_configured():
        raise Http404("Single sign-on is not configured.")
    try:
        flow = _pop_flow(request)
        user = auth.authenticate(request, sso_nonce=flow["nonce"], sso_code_verifier=flow["code_verifier"])
        if user is None:
            raise SsoFailure("backend_missing", f"{BACKEND} is not in AUTHENTICATION_BACKENDS.", status=500)
    except SsoFailure as failure:
        return failure_page(request, failure)
    next_url = request.session.get(_NEXT_SESSION_KEY) or DEFAULT_NEXT
    auth.login(request, user, backend=BACKEND)
    request.session[ID_TOKEN_SESSION_KEY] = user.sso_id_token  # after login(), which may flush the session
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, require_https=request.is_secure()):
        next_url = DEFAULT_NEXT
    return HttpResponseRedirect(next_url)


def _pop_flow(request: HttpRequest) -> dict[str, Any]:
    """The nonce and PKCE verifier stored for this ``state``, removed so it cannot be replayed."""
    if request.GET.get("error"):
        error = request.GET["error"][:64]
        raise SsoFailure("provider_error", f"The identity provider refused the login: {error}.")
    state, code = request.GET.get("state"), request.GET.get("code")
    if not state or not code:
        raise SsoFailure("bad_request", "The callback lacks the code or the state.", status=400)
    states = request.session.get(_STATES_SESSION_KEY)
    if not isinstance(states, dict) or state not in states:
        raise SsoFailure("bad_state", "This login was not started here, or was already used (state mismatch).")
    flow = states.pop(state)
    request.session.modified = True
    request.session.save()  # before the slow provider round trips: a replay finds no state
    if not flow.get("nonce") or not flow.get("code_verifier"):
        raise SsoFailure("bad_state", "This login was started without a nonce or a PKCE verifier.")
    return flow


def logout_then(fallback: Callable[..., HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """A logout view: after an SSO login, end the provider's session too (RP-initiated logout)
    when it offers ``end_session_endpoint``; otherwise ``fallback`` (the usual logout view).

    The browser is sent on by a page that refreshes to the provider rather than a redirect:
    the logout is a form POST, and the CSP's ``form-action 'self'`` covers its redirects."""

    @require_POST
    @csrf_protect
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        id_token = request.session.get(ID_TOKEN_SESSION_KEY) if request.user.is_authenticated else None
        end_session = _end_session_endpoint() if id_token else None
        if not end_session:
            return fallback(request, *args, **kwargs)
        auth.logout(request)
        query = urlencode(
            {
                "id_token_hint": id_token,
                "client_id": oidc_settings("OIDC_RP_CLIENT_ID"),
                "post_logout_redirect_uri": request.build_absolute_uri(reverse("admin:login")),
            }
        )
        context = {
            **admin.site.each_context(request),
            "title": "Signing out",
            "end_session_url": f"{end_session}?{query}",
        }
        return render(request, "accounts/sso_logout.html", context)

    return view


def _end_session_endpoint() -> str | None:
    if not is_configured():
        return None
    try:
        endpoint = provider_metadata().get("end_session_endpoint")
    except SsoFailure:
        return None  # still log out here; the provider's session outlives it
    return endpoint if isinstance(endpoint, str) and endpoint else None
