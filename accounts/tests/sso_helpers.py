"""Walking the test provider's sign-in as a browser would (requests, for the non-browser tests)."""

from __future__ import annotations

from urllib.parse import parse_qs, urljoin, urlsplit

import requests


def provider_sign_in(authorize_url: str, username: str, password: str = "provider-pass") -> str:  # noqa: S107
    """Sign in at the provider from its authorization URL; return where it sends the browser back
    (Symphony's callback with ``code`` and ``state``)."""
    session = requests.Session()
    response = session.get(authorize_url, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text[:500]
    login_url = urljoin(authorize_url, response.headers["Location"])
    session.get(login_url, timeout=10).raise_for_status()
    response = session.post(
        login_url,
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["idp_csrftoken"],
            "next": parse_qs(urlsplit(login_url).query)["next"][0],
        },
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text[:500]
    response = session.get(urljoin(login_url, response.headers["Location"]), allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text[:500]
    return response.headers["Location"]


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path
