"""/api/v1/api-keys/: list scoping, create once, rotate, revoke, bad input."""

import json

import pytest

from accounts.models import ApiKey
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db
URL = "/api/v1/api-keys/"


def post(client, url, data, headers):
    return client.post(url, data=json.dumps(data), content_type="application/json", headers=headers)


def test_it_returns_the_raw_key_once_on_create(client, user_factory, key_for):
    user = user_factory(roles=["developer"])
    headers = key_for(user)
    response = post(client, URL, {"name": "ci", "scopes": ["agent:read"], "rate_limit": "100/m"}, headers)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["api_key"].startswith(f"sym_{body['prefix']}_")
    assert body["scopes"] == ["agent:read"]
    assert body["owner"] == user.username
    raw = body["api_key"]
    # Never again: not in the list, the detail, nor anywhere in the database.
    assert raw not in client.get(URL, headers=headers).content.decode()
    detail = client.get(f"{URL}{body['prefix']}/", headers=headers).json()
    assert "api_key" not in detail
    assert raw not in str(list(ApiKey.objects.values()))
    assert raw not in str(list(AuditEvent.objects.values()))
    assert client.get("/api/v1/me/", headers={"X-API-Key": raw}).json()["permissions"] == ["agent:read"]


def test_it_lists_only_my_keys_without_user_read(client, user_factory, api_key_factory, key_for):
    me = user_factory(roles=["viewer"])
    headers = key_for(me)
    api_key_factory(owner=user_factory())
    prefixes = {k["prefix"] for k in client.get(URL, headers=headers).json()["results"]}
    assert prefixes == set(ApiKey.objects.filter(owner=me).values_list("prefix", flat=True))
    other = ApiKey.objects.exclude(owner=me).get()
    assert client.get(f"{URL}{other.prefix}/", headers=headers).status_code == 404


def test_it_lists_everyones_keys_with_user_read(client, admin_user, user_factory, api_key_factory, key_for):
    api_key_factory(owner=user_factory())
    headers = key_for(admin_user)
    assert client.get(URL, headers=headers).json()["count"] == ApiKey.objects.count() == 2


@pytest.mark.parametrize(
    ("data", "field", "status"),
    [
        ({"name": "k", "scopes": ["agent:fly"]}, "scopes", 400),
        ({"name": "k", "scopes": ["user:delete"]}, "scopes", 403),
        ({"name": "k", "rate_limit": "lots"}, "rate_limit", 400),
        ({"name": "k", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at", 400),
        ({"scopes": ["agent:read"]}, "name", 400),
        ({"name": "k", "owner": "nobody"}, "owner", 400),
    ],
)
def test_it_rejects_bad_key_input_naming_the_field(client, user_factory, key_for, data, field, status):
    user = user_factory(roles=["viewer"])
    headers = key_for(user)
    before = ApiKey.objects.count()
    response = post(client, URL, data, headers)
    assert response.status_code == status, response.json()
    assert field in response.json()["error"]["details"]
    assert ApiKey.objects.count() == before


def test_it_refuses_a_new_key_wider_than_the_key_in_use(client, user_factory, key_for):
    # A key scoped to agent:read must not mint a key with the owner's other permissions.
    headers = key_for(user_factory(roles=["admin"]), scopes=["agent:read"])
    response = post(client, URL, {"name": "wider"}, headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "escalation_refused"


def test_it_refuses_a_duplicate_active_name(client, user_factory, key_for):
    headers = key_for(user_factory(roles=["viewer"]), name="same")
    response = post(client, URL, {"name": "same", "scopes": []}, headers)
    assert response.status_code == 400
    assert "name" in response.json()["error"]["details"]


def test_it_rotates_and_revokes(client, user_factory, api_key_factory):
    user = user_factory(roles=["viewer"])
    key = api_key_factory(owner=user, scopes=["agent:read"])
    headers = {"Authorization": f"Bearer {key.raw}"}
    response = client.post(f"{URL}{key.prefix}/rotate/", headers=headers)
    assert response.status_code == 201
    new_raw = response.json()["api_key"]
    assert response.json()["name"] == key.name
    old = client.get(f"{URL}{key.prefix}/", headers=headers).json()
    assert old["rotated_to"] == response.json()["prefix"]
    new_headers = {"Authorization": f"Bearer {new_raw}"}
    response = client.post(f"{URL}{key.prefix}/revoke/", headers=new_headers)
    assert response.status_code == 200
    assert response.json()["revoked_at"] is not None
    assert client.get("/api/v1/me/", headers=headers).status_code == 401
    response = client.post(f"{URL}{key.prefix}/revoke/", headers=new_headers)
    assert response.status_code == 409


def test_it_refuses_revoking_someone_elses_key_with_only_user_read(client, user_factory, api_key_factory, key_for):
    victim = api_key_factory(owner=user_factory())
    headers = key_for(user_factory(roles=["viewer"], extra_permissions=["user:read"]))
    response = client.post(f"{URL}{victim.prefix}/revoke/", headers=headers)
    assert response.status_code == 403
    assert ApiKey.objects.get(pk=victim.pk).revoked_at is None


def test_it_filters_keys_by_owner_and_activity(client, admin_user, user_factory, api_key_factory, key_for):
    bob = user_factory(username="bob")
    api_key_factory(owner=bob)
    from django.utils import timezone

    api_key_factory(owner=bob, revoked_at=timezone.now())
    headers = key_for(admin_user)
    assert client.get(f"{URL}?owner=bob", headers=headers).json()["count"] == 2
    assert client.get(f"{URL}?owner=bob&is_active=true", headers=headers).json()["count"] == 1
