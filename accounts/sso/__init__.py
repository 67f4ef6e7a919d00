"""Single sign-on through OpenID Connect, on mozilla-django-oidc (see docs/identity.md).

``rolemap`` parses ``SYMPHONY_OIDC_ROLE_MAP`` (importable from settings: no Django models here),
``provider`` discovers and caches the provider's metadata, ``backend`` verifies the ID token and
hands the claims to ``accounts.services.sso``, and ``views`` run the browser flow.
"""
