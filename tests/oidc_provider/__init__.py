"""A real OpenID Connect provider for the SSO tests: django-oauth-toolkit with OIDC on, SQLite, an
RS256 key made at start, run as its own process on loopback (``python -m tests.oidc_provider``).

It lives apart from Symphony (own settings, database and cookie names) and offers a small
control API, guarded by a token, so tests can set users' groups, the client's redirect URIs, and
make it misbehave (sign with another key, another audience, an expired token).
"""
