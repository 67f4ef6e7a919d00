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
    response = post(client, URL, {"name": "ci", "scopes": ["agent:read"], "rate_limit": "1000/h"}, headers)
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


def test_it_defaults_a_new_keys_scopes_to_the_key_in_use(client, user_factory, key_for):
    # Regression (issue 10): this was a 403 listing the owner's other permissions.
    headers = key_for(user_factory(roles=["admin"]), scopes=["agent:read", "orchestra:read"])
    response = post(client, URL, {"name": "narrow"}, headers)
    assert response.status_code == 201, response.json()
    assert response.json()["scopes"] == ["agent:read", "orchestra:read"]
    me = client.get("/api/v1/me/", headers={"Authorization": f"Bearer {response.json()['api_key']}"}).json()
    assert me["permissions"] == ["agent:read", "orchestra:read"]


def test_it_refuses_a_new_key_with_a_scope_beyond_the_key_in_use(client, user_factory, key_for, events):
    headers = key_for(user_factory(roles=["admin"]), scopes=["agent:read"])
    response = post(client, URL, {"name": "wider", "scopes": ["agent:read", "agent:delete"]}, headers)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "escalation_refused"
    assert "agent:delete" in error["details"]["scopes"][0]
    assert ApiKey.objects.count() == 1
    (denied,) = events("authz.permission.denied")
    assert denied.details["reason"] == "escalation_refused"
    assert denied.details["field"] == "scopes"


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


# --- a key never manages a key broader than itself (issue 10) ---------------------------------------


def bearer(key):
    return {"Authorization": f"Bearer {key.raw}"}


def test_it_refuses_a_scoped_key_revoking_its_owners_full_key(client, user_factory, api_key_factory, events):
    owner = user_factory(roles=["admin"])
    full = api_key_factory(owner=owner, scopes=["agent:read", "agent:delete", "user:update"])
    narrow = api_key_factory(owner=owner, scopes=["agent:read"])
    response = client.post(f"{URL}{full.prefix}/revoke/", headers=bearer(narrow))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "escalation_refused"
    assert error["message"] == (
        f"API key {narrow.prefix} cannot revoke a key broader than itself: its scopes do not cover "
        "agent:delete, user:update."
    )
    assert ApiKey.objects.get(pk=full.pk).revoked_at is None
    assert client.get("/api/v1/me/", headers=bearer(full)).status_code == 200
    assert not events("apikey.revoked")
    assert events("authz.permission.denied")[0].details["field"] == "scopes"


def test_it_lets_a_key_revoke_a_key_it_covers_and_itself(client, user_factory, api_key_factory):
    owner = user_factory(roles=["admin"])
    wide = api_key_factory(owner=owner, scopes=["agent:read", "agent:delete"])
    narrow = api_key_factory(owner=owner, scopes=["agent:read"])
    assert client.post(f"{URL}{narrow.prefix}/revoke/", headers=bearer(wide)).status_code == 200
    assert client.post(f"{URL}{wide.prefix}/revoke/", headers=bearer(wide)).status_code == 200
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 2


def test_it_refuses_a_scoped_key_rotating_a_broader_key(client, user_factory, api_key_factory):
    owner = user_factory(roles=["admin"])
    full = api_key_factory(owner=owner, scopes=["agent:read", "agent:delete"])
    narrow = api_key_factory(owner=owner, scopes=["agent:read"])
    response = client.post(f"{URL}{full.prefix}/rotate/", headers=bearer(narrow))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "escalation_refused"
    assert "agent:delete" in response.json()["error"]["details"]["scopes"][0]
    full.refresh_from_db()
    assert full.rotated_at is None and full.rotated_to is None
    assert ApiKey.objects.count() == 2


def test_it_refuses_a_limited_key_creating_a_less_limited_one(client, user_factory, api_key_factory, events):
    limited = api_key_factory(owner=user_factory(roles=["developer"]), scopes=["agent:read"], rate_limit="10/m")
    response = post(client, URL, {"name": "sibling", "rate_limit": "100000/m"}, bearer(limited))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "escalation_refused"
    assert error["details"]["rate_limit"] == [
        f"API key {limited.prefix} is limited to 10/m (0.167 requests/s): it cannot create a key allowed more: "
        "100000/m (1666.667 requests/s)."
    ]
    assert ApiKey.objects.count() == 1
    assert events("authz.permission.denied")[0].details["field"] == "rate_limit"


@pytest.mark.parametrize(
    ("acting", "asked", "status"),
    [
        ("10/m", "10/m", 201),  # as limited: fine
        ("10/m", "600/h", 201),  # 600/h is 10/m
        ("10/m", "601/h", 403),
        ("100/h", "2/m", 403),  # fewer requests per unit, but more per second
        ("1/s", "3600/h", 201),
        ("10/m", "", 403),  # "" is the default limit (moderate: 500/15m), looser than 10/m
        ("", "30/m", 201),  # no own limit counts as the default: 30/m = 0.5/s < 500/15m = 0.556/s
        ("", "100/m", 403),
        ("", "", 201),
    ],
)
def test_it_compares_rate_limits_per_second(client, user_factory, api_key_factory, acting, asked, status):
    key = api_key_factory(owner=user_factory(roles=["developer"]), scopes=["agent:read"], rate_limit=acting)
    response = post(client, URL, {"name": "new", "scopes": ["agent:read"], "rate_limit": asked}, bearer(key))
    assert response.status_code == status, response.json()
    if status == 403:
        assert list(response.json()["error"]["details"]) == ["rate_limit"]


def test_it_counts_a_key_without_a_limit_as_the_configured_default(client, settings, user_factory, api_key_factory):
    settings.SYMPHONY_RATELIMIT_DEFAULT = "lenient"  # 5000/15m = 5.6/s
    key = api_key_factory(owner=user_factory(roles=["developer"]), scopes=["agent:read"])
    assert post(client, URL, {"name": "a", "rate_limit": "300/m"}, bearer(key)).status_code == 201
    response = post(client, URL, {"name": "b", "rate_limit": "400/m"}, bearer(key))
    assert response.status_code == 403
    assert "the default limit lenient (5.556 requests/s)" in response.json()["error"]["message"]


def test_it_gives_a_new_key_the_limit_of_the_key_in_use_when_none_is_asked(client, user_factory, api_key_factory):
    limited = api_key_factory(owner=user_factory(roles=["developer"]), scopes=["agent:read"], rate_limit="10/m")
    response = post(client, URL, {"name": "sibling"}, bearer(limited))
    assert response.status_code == 201, response.json()
    assert response.json()["rate_limit"] == "10/m"
    assert response.json()["scopes"] == ["agent:read"]


def test_it_refuses_a_limited_key_rotating_a_less_limited_one(client, user_factory, api_key_factory):
    owner = user_factory(roles=["developer"])
    fast = api_key_factory(owner=owner, scopes=["agent:read"], rate_limit="1000/m")
    slow = api_key_factory(owner=owner, scopes=["agent:read"], rate_limit="10/m")
    response = client.post(f"{URL}{fast.prefix}/rotate/", headers=bearer(slow))
    assert response.status_code == 403
    assert "rate_limit" in response.json()["error"]["details"]
    assert ApiKey.objects.get(pk=fast.pk).rotated_at is None
    response = client.post(f"{URL}{fast.prefix}/revoke/", headers=bearer(slow))
    assert response.status_code == 403
    assert ApiKey.objects.get(pk=fast.pk).revoked_at is None
    # The other way round is managing a narrower key: fine.
    assert client.post(f"{URL}{slow.prefix}/rotate/", headers=bearer(fast)).status_code == 201


def test_it_lets_a_session_manage_any_of_its_own_keys(client, user_factory, api_key_factory):
    owner = user_factory(roles=["developer"])
    key = api_key_factory(owner=owner, scopes=["agent:read", "agent:execute"], rate_limit="100000/m")
    client.force_login(owner)
    assert post(client, URL, {"name": "fast", "rate_limit": "100000/m"}, {}).status_code == 201
    assert client.post(f"{URL}{key.prefix}/rotate/").status_code == 201
    assert client.post(f"{URL}{key.prefix}/revoke/").status_code == 200


def test_it_refuses_an_agent_bound_key_managing_keys(client, user_factory, key_for):
    operator = user_factory(roles=["operator"])
    headers = key_for(operator)
    agents = []
    for name in ("worker-1", "worker-2"):
        response = post(client, "/api/v1/agents/", {"name": name}, headers)
        assert response.status_code == 201, response.json()
        agents.append(response.json())
    agent_headers = {"Authorization": f"Bearer {agents[0]['api_key']}"}
    owners_key = ApiKey.objects.get(owner=operator, agent__isnull=True)
    targets = [owners_key.prefix, agents[1]["api_key_prefix"], agents[0]["api_key_prefix"]]
    for prefix in targets:
        for verb in ("revoke", "rotate"):
            response = client.post(f"{URL}{prefix}/{verb}/", headers=agent_headers)
            assert response.status_code == 403, (prefix, verb)
            assert response.json()["error"]["code"] == "escalation_refused"
            assert "holds no permissions" in response.json()["error"]["message"]
    response = post(client, URL, {"name": "escape", "scopes": []}, agent_headers)
    assert response.status_code == 403
    assert ApiKey.objects.count() == 3
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()
    assert not ApiKey.objects.filter(rotated_at__isnull=False).exists()
