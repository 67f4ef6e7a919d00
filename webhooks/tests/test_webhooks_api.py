"""The webhooks API: create with the secret shown once, encrypted at rest, rotation, SSRF refusal."""

from __future__ import annotations

from typing import Any

import pytest

from webhooks import crypto
from webhooks.models import Webhook

pytestmark = pytest.mark.django_db


def _create(api: Any, project: Any, url: str, events: list[str] | None = None) -> Any:
    return api.post("/api/v1/webhooks/", {"project": project.slug, "url": url, "events": events or ["task.*"]})


def test_it_shows_the_secret_once_and_stores_it_encrypted(admin_api, project_factory, events) -> None:
    project = project_factory(slug="alpha")
    r = _create(admin_api, project, "http://127.0.0.1:9/hook", ["task.succeeded", "workflow.*"])
    assert r.status_code == 201, r.json()
    body = r.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and body["project"] == "alpha"
    stored = Webhook.objects.get(pk=body["id"])
    assert secret not in stored.secret_encrypted
    assert crypto.decrypt(stored.secret_encrypted) == secret
    again = admin_api.get(f"/api/v1/webhooks/{body['id']}/").json()
    assert "secret" not in again and secret not in str(again)
    assert secret not in str(events("webhook.created")[0].details)
    assert len(events("webhook.created")) == 1


def test_it_rotates_with_overlap(admin_api, project_factory, events) -> None:
    r = _create(admin_api, project_factory(slug="alpha"), "http://127.0.0.1:9/hook")
    old = r.json()["secret"]
    rotated = admin_api.post(f"/api/v1/webhooks/{r.json()['id']}/rotate-secret/", {"overlap_seconds": 600})
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    from webhooks.services import webhook_signing_secrets

    assert webhook_signing_secrets(Webhook.objects.get(pk=r.json()["id"])) == [new, old]
    assert events("webhook.secret_rotated")[0].details == {"overlap_seconds": 600}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8000/",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "ftp://example.com/",
        "http://user:pw@example.com/",
    ],
)
def test_it_refuses_internal_urls_at_creation(admin_api, project_factory, settings, url: str) -> None:
    settings.SYMPHONY_WEBHOOK_ALLOW_PRIVATE = False
    r = _create(admin_api, project_factory(slug="alpha"), url)
    assert r.status_code == 400
    assert "url" in r.json()["error"]["details"]
    assert not Webhook.objects.exists()


def test_it_refuses_an_internal_url_on_update(admin_api, project_factory, settings) -> None:
    hook = _create(admin_api, project_factory(slug="alpha"), "http://127.0.0.1:9/").json()
    settings.SYMPHONY_WEBHOOK_ALLOW_PRIVATE = False
    r = admin_api.patch(f"/api/v1/webhooks/{hook['id']}/", {"url": "http://10.0.0.1/"})
    assert r.status_code == 400 and "url" in r.json()["error"]["details"]
    assert Webhook.objects.get().url == "http://127.0.0.1:9/"


def test_it_names_a_bad_event_pattern(admin_api, project_factory) -> None:
    r = _create(admin_api, project_factory(slug="alpha"), "http://127.0.0.1:9/", ["task.*", "Not A Pattern"])
    assert r.status_code == 400 and "events" in r.json()["error"]["details"]
    assert not Webhook.objects.exists()


def test_a_viewer_reads_but_cannot_create(admin_api, viewer_api, project_factory) -> None:
    project = project_factory(slug="alpha")
    _create(admin_api, project, "http://127.0.0.1:9/")
    assert viewer_api.get("/api/v1/webhooks/").status_code == 200
    assert _create(viewer_api, project, "http://127.0.0.1:9/").status_code == 403


def test_it_filters_by_project(admin_api, project_factory) -> None:
    _create(admin_api, project_factory(slug="alpha"), "http://127.0.0.1:9/a")
    _create(admin_api, project_factory(slug="beta"), "http://127.0.0.1:9/b")
    rows = admin_api.get("/api/v1/webhooks/", {"project": "beta"}).json()["results"]
    assert [row["url"] for row in rows] == ["http://127.0.0.1:9/b"]
