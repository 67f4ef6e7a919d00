"""Rate limits through the real stack, on the configured cache (the shared SQLite cache here, Redis with REDIS_URL)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from audit.models import AuditEvent

pytestmark = [pytest.mark.django_db, pytest.mark.urls("symphony.tests.urls")]

CATALOG = "/api/test/catalog/"


@pytest.fixture(autouse=True)
def _small_limits(settings, clock):
    settings.SYMPHONY_RATELIMIT_DEFAULT = "3/m"
    settings.SYMPHONY_RATELIMIT_OVERRIDES = {}


def _get(api, path=CATALOG, **headers):
    return api.get(path, headers=headers)


def test_it_allows_n_requests_and_refuses_the_next_with_retry_after(api):
    remaining = [_get(api)["X-RateLimit-Remaining"] for _ in range(3)]
    refused = _get(api)

    assert remaining == ["2", "1", "0"]
    assert refused.status_code == 429
    body = refused.json()["error"]
    assert body["code"] == "rate_limited"
    assert body["details"]["limit"] == 3
    assert body["request_id"] == refused["X-Request-ID"]
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["X-RateLimit-Limit"] == "3"
    assert refused["X-RateLimit-Remaining"] == "0"
    assert 0 <= int(refused["X-RateLimit-Reset"]) <= 60


def test_it_puts_the_headers_on_every_api_answer_including_errors(api):
    ok = _get(api)
    not_found = _get(api, "/api/v1/no-such-thing/")

    assert ok.status_code == 200
    assert not_found.status_code == 404
    assert ok["X-RateLimit-Limit"] == not_found["X-RateLimit-Limit"] == "3"
    assert not_found["X-RateLimit-Remaining"] == "1"


def test_it_serves_again_once_the_window_has_passed(api, clock):
    for _ in range(3):
        assert _get(api).status_code == 200
    refused = _get(api)
    assert refused.status_code == 429
    clock.shift(int(refused["Retry-After"]) - 1)
    assert _get(api).status_code == 429
    clock.shift(1)
    again = _get(api)

    assert again.status_code == 200
    assert again["X-RateLimit-Remaining"] == "2"


def test_it_counts_each_api_key_on_its_own(api, make_key):
    first, second = make_key("viewer", username="one"), make_key("viewer", username="two")
    for _ in range(3):
        assert _get(api, Authorization=f"Bearer {first}").status_code == 200

    assert _get(api, Authorization=f"Bearer {first}").status_code == 429
    assert _get(api, Authorization=f"Bearer {second}").status_code == 200
    assert _get(api).status_code == 200  # anonymous callers from the same address are counted apart


def test_it_applies_a_keys_own_rate_limit(api, make_key):
    raw = make_key("viewer", rate_limit="5/m")
    answers = [_get(api, **{"X-API-Key": raw}) for _ in range(6)]

    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert answers[0]["X-RateLimit-Limit"] == "5"


def test_it_counts_session_users_per_user(api, user_with_role):
    api.force_login(user_with_role("carol"))
    for _ in range(3):
        assert _get(api, "/api/test/whoami/").status_code == 200

    assert _get(api, "/api/test/whoami/").status_code == 429
    api.logout()
    assert _get(api, "/api/test/whoami/").status_code == 401  # anonymous: another counter


def test_it_counts_anonymous_callers_per_client_ip_behind_a_trusted_proxy(api, settings):
    settings.SYMPHONY_TRUSTED_PROXIES = ["10.0.0.0/8"]
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    for _ in range(3):
        assert api.get(CATALOG, HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy).status_code == 200

    assert api.get(CATALOG, HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy).status_code == 429
    assert api.get(CATALOG, HTTP_X_FORWARDED_FOR="203.0.113.8", **proxy).status_code == 200


def test_it_limits_a_flood_of_bad_keys_by_address(api):
    bad = [f"sym_{i:012d}_{'x' * 43}" for i in range(4)]
    answers = [_get(api, Authorization=f"Bearer {key}") for key in bad]

    assert [a.status_code for a in answers] == [401, 401, 401, 429]


def test_it_gives_an_overridden_endpoint_its_own_counter(api, settings):
    settings.SYMPHONY_RATELIMIT_OVERRIDES = {"test-catalog": "1/m", "test-echo": "strict"}
    assert _get(api).status_code == 200
    assert _get(api, CATALOG + "admin%3Aread/")["X-RateLimit-Limit"] == "1"  # basename matches -detail too

    echo = api.post("/api/test/echo/", {"a": 1}, format="json")
    assert _get(api).status_code == 429
    assert echo.status_code == 200
    assert echo["X-RateLimit-Limit"] == "100"
    assert _get(api, "/api/test/whoami/")["X-RateLimit-Remaining"] == "2"  # the default counter is untouched


def test_it_audits_a_flood_once_per_window(api):
    for _ in range(3):
        _get(api)
    for _ in range(5):
        assert _get(api).status_code == 429

    events = AuditEvent.objects.filter(event_type="security.rate_limit.exceeded")
    assert events.count() == 1
    event = events.get()
    assert event.outcome == "denied"
    assert event.details["scope"] == "ip"
    assert event.details["limit"] == 3
    assert event.ip_address == "127.0.0.1"


def test_it_counts_rejections_in_metrics(api):
    def rejected() -> float:
        return REGISTRY.get_sample_value("symphony_rate_limit_rejections_total", {"scope": "ip"}) or 0.0

    before = rejected()
    for _ in range(5):
        _get(api)

    assert rejected() == before + 2


def test_it_can_be_switched_off(api, settings):
    settings.RATELIMIT_ENABLE = False
    answers = [_get(api) for _ in range(5)]

    assert {a.status_code for a in answers} == {200}
    assert "X-RateLimit-Limit" not in answers[0]


def test_it_leaves_pages_outside_the_api_alone(client):
    answer = client.get("/health/live")

    assert answer.status_code == 200
    assert "X-RateLimit-Limit" not in answer
