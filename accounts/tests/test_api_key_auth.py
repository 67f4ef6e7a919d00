"""API-key authentication through the real stack: headers, rejections, audit, cache, rotation."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from accounts import services
from accounts.models import ApiKey
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

ME = "/api/v1/me/"


def test_it_accepts_a_bearer_key_and_an_x_api_key_header(client, api_key_factory, user_factory):
    key = api_key_factory(owner=user_factory(roles=["viewer"]), scopes=["agent:read"])
    assert client.get(ME, headers={"Authorization": f"Bearer {key.raw}"}).status_code == 200
    assert client.get(ME, headers={"X-API-Key": key.raw}).status_code == 200


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("sym_short", "api_key_malformed"),
        ("sym_abcdefabcdef_" + "x" * 43, "api_key_invalid"),
    ],
)
def test_it_rejects_a_bad_key_with_401_saying_which(client, header, code):
    response = client.get(ME, headers={"Authorization": f"Bearer {header}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_it_rejects_a_wrong_secret_for_a_real_prefix_and_audits_the_prefix_only(client, api_key_factory):
    key = api_key_factory()
    forged = f"sym_{key.prefix}_{'A' * 43}"
    response = client.get(ME, headers={"X-API-Key": forged}, REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_invalid"
    event = AuditEvent.objects.get(event_type="auth.failed")
    assert event.api_key_prefix == key.prefix
    assert event.ip_address == "203.0.113.9"
    assert event.outcome == "failure"
    assert "A" * 43 not in str(event.details)
    assert key.raw not in str(AuditEvent.objects.values().get())


def test_it_rejects_a_revoked_key(client, api_key_factory):
    key = api_key_factory(revoked_at=timezone.now())
    response = client.get(ME, headers={"Authorization": f"Bearer {key.raw}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"


def test_it_rejects_an_expired_key_and_records_expired_used(client, api_key_factory):
    key = api_key_factory(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(ME, headers={"Authorization": f"Bearer {key.raw}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_expired"
    event = AuditEvent.objects.get(event_type="apikey.expired_used")
    assert event.api_key_prefix == key.prefix
    assert event.actor == key.owner


def test_it_rejects_the_key_of_an_inactive_owner(client, api_key_factory, user_factory):
    key = api_key_factory(owner=user_factory(is_active=False))
    response = client.get(ME, headers={"Authorization": f"Bearer {key.raw}"})
    assert response.json()["error"]["code"] == "api_key_owner_inactive"


def test_it_keeps_a_rotated_key_working_for_the_grace_period_only(client, api_key_factory, user_factory, settings):
    settings.SYMPHONY_API_KEY_ROTATION_GRACE_HOURS = 24
    owner = user_factory(roles=["viewer"])
    old = api_key_factory(owner=owner, scopes=["agent:read"])
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        _new, raw = services.api_key_rotate(actor=owner, key=old)
    headers_old = {"Authorization": f"Bearer {old.raw}"}
    with time_machine.travel(start + timedelta(hours=23, minutes=59), tick=False):
        assert client.get(ME, headers=headers_old).status_code == 200
        assert client.get(ME, headers={"Authorization": f"Bearer {raw}"}).status_code == 200
    with time_machine.travel(start + timedelta(hours=24, seconds=1), tick=False):
        response = client.get(ME, headers=headers_old)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "api_key_expired"
        assert "rotated" in response.json()["error"]["message"]
        assert client.get(ME, headers={"Authorization": f"Bearer {raw}"}).status_code == 200
    assert AuditEvent.objects.get(event_type="apikey.expired_used").details["rotated"] is True


def test_it_stops_a_revoked_key_on_the_very_next_request(client, api_key_factory, django_capture_on_commit_callbacks):
    key = api_key_factory()
    headers = {"Authorization": f"Bearer {key.raw}"}
    assert client.get(ME, headers=headers).status_code == 200  # now cached
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(actor=key.owner, key=key)
    assert client.get(ME, headers=headers).json()["error"]["code"] == "api_key_revoked"


def test_it_acts_with_scopes_intersected_with_the_owners_current_permissions(client, api_key_factory, user_factory):
    owner = user_factory(roles=["admin"])
    key = api_key_factory(owner=owner, scopes=["agent:read", "user:read", "user:delete"])
    body = client.get(ME, headers={"Authorization": f"Bearer {key.raw}"}).json()
    assert body["permissions"] == ["agent:read", "user:read"]  # user:delete: the owner lacks it
    assert body["api_key"] == {
        "prefix": key.prefix,
        "name": key.name,
        "scopes": ["agent:read", "user:delete", "user:read"],
    }


def test_it_writes_last_used_at_at_most_once_a_minute(client, api_key_factory):
    key = api_key_factory()
    headers = {"Authorization": f"Bearer {key.raw}"}
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        client.get(ME, headers=headers)
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first == start
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        client.get(ME, headers=headers)
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_commits_the_failed_auth_event_although_the_request_fails(client):
    # Real commits here (no test transaction): the 401 path must not roll the audit row back.
    response = client.get(ME, headers={"X-API-Key": "sym_abcdefabcdef_" + "y" * 43})
    assert response.status_code == 401
    assert not connection.in_atomic_block
    assert AuditEvent.objects.filter(event_type="auth.failed", api_key_prefix="abcdefabcdef").count() == 1


def test_it_ignores_other_authorization_schemes(client):
    response = client.get(ME, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code in (401, 403)
    assert response.json()["error"]["code"] == "not_authenticated"
