"""Chunked request bodies (``Transfer-Encoding: chunked``, no ``Content-Length``) through real gunicorn:
read within ``SYMPHONY_MAX_REQUEST_BYTES``, or refused with 413; never taken for an empty body."""

from __future__ import annotations

import json

import pytest
import requests

from symphony.tests.conftest import ADMIN_PASSWORD, response_json

pytestmark = pytest.mark.slow

LIMIT = 4096


def _chunks(data: bytes, size: int = 100):
    # A generator body: requests sends it chunked, without Content-Length.
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
def app(start_app):
    with start_app(SYMPHONY_MAX_REQUEST_BYTES=str(LIMIT)) as app:
        yield app


def _post_chunked(app, path: str, body: bytes, content_type: str = "application/json", **kwargs) -> requests.Response:
    headers = {"Content-Type": content_type, "Connection": "close", **kwargs.pop("headers", {})}
    return requests.post(f"{app.url}{path}", data=_chunks(body), headers=headers, timeout=60, **kwargs)


def test_it_reads_a_chunked_json_body(app):
    body = json.dumps({"kind": "chunked.upload", "orchestra": app.orchestra, "input": {"text": "x" * 1500}}).encode()

    response = _post_chunked(app, "/api/v1/tasks/", body, headers={"Authorization": f"Bearer {app.api_key}"})

    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request.headers
    assert response.status_code == 201, response.text
    assert response.json()["kind"] == "chunked.upload"
    assert response.json()["input"] == {"text": "x" * 1500}


def test_it_refuses_a_chunked_body_over_the_limit_with_413(app):
    body = json.dumps({"kind": "chunked.upload", "orchestra": app.orchestra, "input": {"text": "x" * LIMIT}}).encode()

    response = _post_chunked(app, "/api/v1/tasks/", body, headers={"Authorization": f"Bearer {app.api_key}"})

    assert response.status_code == 413
    error = response_json(response)["error"]
    assert error["code"] == "request_too_large"
    assert error["details"] == {"limit": LIMIT}


def test_it_reads_a_chunked_form_outside_the_api(app):
    session = requests.Session()
    session.get(f"{app.url}/admin/login/", timeout=30)
    form = f"username=operator&password={ADMIN_PASSWORD}&csrfmiddlewaretoken={session.cookies['csrftoken']}"

    response = session.post(
        f"{app.url}/admin/login/?next=/admin/",
        data=_chunks(form.encode(), size=7),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Referer": f"{app.url}/admin/login/"},
        allow_redirects=False,
        timeout=60,
    )

    assert response.status_code == 302, response.text[:300]  # logged in: the form was read
    assert "sessionid" in session.cookies
