"""The authentication backend of the SSO callback: token exchange, ID token verification, claims.

mozilla-django-oidc does the protocol plumbing (token request, JWKS lookup, userinfo, the state,
nonce and PKCE bookkeeping in the views); this subclass supplies what it leaves out: endpoints from
discovery, and a full ID token check (signature against the provider's JWKS, issuer, audience,
``azp``, expiry, nonce), each refusal with its own reason. Users and roles are left to
``accounts.services.sso``. Permissions are not answered here: the RBAC backend does that.
"""

from __future__ import annotations

from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings

from accounts.sso.provider import SsoFailure, provider_metadata

# Claims that only the verified ID token may set (userinfo must not override them).
_TOKEN_ONLY_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "azp", "auth_time"})
_JWT_ERRORS: list[tuple[type[Exception], str, str]] = [
    (jwt.ExpiredSignatureError, "expired_token", "The ID token has expired."),
    (jwt.InvalidAudienceError, "unknown_audience", "The ID token was issued for another client."),
    (jwt.InvalidIssuerError, "wrong_issuer", "The ID token was issued by another provider."),
    (jwt.ImmatureSignatureError, "token_not_yet_valid", "The ID token is not valid yet (check the clocks)."),
    (jwt.MissingRequiredClaimError, "missing_claim", "The ID token lacks a required claim."),
    (jwt.InvalidSignatureError, "bad_signature", "The ID token's signature does not verify."),
    (jwt.DecodeError, "malformed_token", "The ID token cannot be decoded."),
    (jwt.InvalidTokenError, "invalid_token", "The ID token is invalid."),
]


def oidc_settings(attr: str, *args: Any) -> Any:
    """mozilla-django-oidc's settings, derived from ``SYMPHONY_OIDC_*`` (and discovery, lazily)."""
    fixed: dict[str, Any] = {
        "OIDC_RP_CLIENT_ID": settings.SYMPHONY_OIDC_CLIENT_ID,
        "OIDC_RP_CLIENT_SECRET": settings.SYMPHONY_OIDC_CLIENT_SECRET,
        "OIDC_RP_SIGN_ALGO": settings.SYMPHONY_OIDC_SIGN_ALGO,
        "OIDC_RP_SCOPES": settings.SYMPHONY_OIDC_SCOPES,
        "OIDC_USE_NONCE": True,
        "OIDC_USE_PKCE": True,
        "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256",
        "OIDC_TIMEOUT": settings.SYMPHONY_OIDC_TIMEOUT,
        "OIDC_STORE_ID_TOKEN": True,  # the id_token_hint of RP-initiated logout
        "OIDC_AUTHENTICATION_CALLBACK_URL": "sso-callback",
        "OIDC_REDIRECT_FIELD_NAME": "next",
    }
    if attr in fixed:
        return fixed[attr]
    endpoints = {
        "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
        "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
        "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
        "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
    }
    if attr in endpoints:
        return provider_metadata().get(endpoints[attr])
    return import_from_settings(attr, *args)


class SsoBackend(OIDCAuthenticationBackend):
    """Authenticates the SSO callback only (``sso_nonce`` and ``sso_code_verifier`` given by
    ``SsoCallbackView``); every other ``authenticate()`` call skips it. Raises ``SsoFailure``."""

    get_settings = staticmethod(oidc_settings)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Django builds every backend for each authenticate() and session lookup: read nothing
        # here, so password logins never wait on (or fail with) the provider.
        self.UserModel = get_user_model()

    def _configure(self) -> None:
        self.OIDC_OP_TOKEN_ENDPOINT = self.get_settings("OIDC_OP_TOKEN_ENDPOINT")
        self.OIDC_OP_USER_ENDPOINT = self.get_settings("OIDC_OP_USER_ENDPOINT")
        self.OIDC_OP_JWKS_ENDPOINT = self.get_settings("OIDC_OP_JWKS_ENDPOINT")
        self.OIDC_RP_CLIENT_ID = self.get_settings("OIDC_RP_CLIENT_ID")
        self.OIDC_RP_CLIENT_SECRET = self.get_settings("OIDC_RP_CLIENT_SECRET")
        self.OIDC_RP_SIGN_ALGO = self.get_settings("OIDC_RP_SIGN_ALGO")
        self.OIDC_RP_IDP_SIGN_KEY = None

    def authenticate(self, request: HttpRequest | None, *, sso_nonce: str, sso_code_verifier: str) -> Any:
        from accounts.services.sso import sso_login

        if request is None:
            return None
        self.request = request
        self._configure()
        code = request.GET.get("code", "")
        token_info = self._exchange(code, sso_code_verifier)
        id_token, access_token = token_info.get("id_token"), token_info.get("access_token")
        if not isinstance(id_token, str):
            raise SsoFailure("missing_id_token", "The identity provider returned no ID token.", status=502)
        payload = self.verify_token(id_token, nonce=sso_nonce)
        claims = self._claims(payload, access_token, id_token)
        user = sso_login(issuer=payload["iss"], claims=claims)
        user.sso_id_token = id_token  # kept in the session by the view, after login() cycled it
        return user

    def _exchange(self, code: str, code_verifier: str) -> dict[str, Any]:
        from django.urls import reverse

        payload = {
            "client_id": self.OIDC_RP_CLIENT_ID,
            "client_secret": self.OIDC_RP_CLIENT_SECRET,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.request.build_absolute_uri(reverse("sso-callback")),
            "code_verifier": code_verifier,
        }
        try:
            token_info = self.get_token(payload)
        except requests.HTTPError as exc:
            # The provider refused the code (reused, expired, wrong verifier): its body may say why.
            raise SsoFailure("token_exchange_failed", "The identity provider refused the authorization code.") from exc
        except (requests.RequestException, ValueError) as exc:
            raise SsoFailure("provider_unavailable", "The identity provider could not be reached.", status=502) from exc
        if not isinstance(token_info, dict):
            raise SsoFailure("token_exchange_failed", "The identity provider's token response is not an object.")
        return token_info

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        """The ID token's claims after checking signature, issuer, audience, expiry and nonce."""
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.DecodeError as exc:
            raise SsoFailure("malformed_token", "The ID token cannot be decoded.") from exc
        if alg != self.OIDC_RP_SIGN_ALGO:
            raise SsoFailure("wrong_algorithm", f"The ID token is signed with {alg!r}, not {self.OIDC_RP_SIGN_ALGO}.")
        key = self._signing_key(token)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=settings.SYMPHONY_OIDC_ISSUER,
                leeway=settings.SYMPHONY_OIDC_CLOCK_SKEW_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.InvalidTokenError as exc:
            reason, message = next((r, m) for kind, r, m in _JWT_ERRORS if isinstance(exc, kind))
            raise SsoFailure(reason, message) from exc
        audiences = payload["aud"] if isinstance(payload["aud"], list) else [payload["aud"]]
        # OpenID Connect Core 3.1.3.7: with several audiences, azp must name this client.
        if len(audiences) > 1 and payload.get("azp") != self.OIDC_RP_CLIENT_ID:
            raise SsoFailure("unknown_audience", "The ID token was issued for another client.")
        if payload.get("nonce") != kwargs.get("nonce"):
            raise SsoFailure("bad_nonce", "The ID token does not answer this login (nonce mismatch).")
        return payload

    def _signing_key(self, token: str) -> Any:
        try:
            return self.retrieve_matching_jwk(token)
        except requests.RequestException as exc:
            raise SsoFailure(
                "provider_unavailable", "The identity provider's keys could not be fetched.", status=502
            ) from exc
        except (SuspiciousOperation, KeyError, ValueError, jwt.PyJWKError, jwt.DecodeError) as exc:
            raise SsoFailure(
                "unknown_signing_key", "The ID token is signed with a key the provider does not publish."
            ) from exc

    def _claims(self, payload: dict[str, Any], access_token: Any, id_token: str) -> dict[str, Any]:
        """The ID token's claims, completed from the userinfo endpoint when the provider has one."""
        claims = dict(payload)
        if not self.OIDC_OP_USER_ENDPOINT or not isinstance(access_token, str):
            return claims
        try:
            userinfo = self.get_userinfo(access_token, id_token, payload)
        except requests.RequestException as exc:
            raise SsoFailure("provider_unavailable", "The identity provider's userinfo failed.", status=502) from exc
        if not isinstance(userinfo, dict) or str(userinfo.get("sub")) != str(payload["sub"]):
            # OpenID Connect Core 5.3.2: a userinfo answer for another subject must not be used.
            raise SsoFailure("userinfo_mismatch", "The identity provider's userinfo is about another user.")
        claims.update({k: v for k, v in userinfo.items() if k not in _TOKEN_ONLY_CLAIMS})
        return claims

    # --- not a permission source: the RBAC backend answers has_perm ---------------------------------

    def get_user(self, user_id: Any) -> Any:
        user = super().get_user(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        return set()

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        return False

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        return False

    def with_perm(self, *args: Any, **kwargs: Any) -> Any:
        return self.UserModel.objects.none()
