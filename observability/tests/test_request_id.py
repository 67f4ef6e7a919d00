import pytest

from observability.context import client_ip, sanitize_request_id


def test_it_echoes_a_sane_request_id(client):
    response = client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 200
    assert response["X-Request-ID"] == "abc-123"


@pytest.mark.parametrize("bad", ["", "a" * 200, "evil\nheader", "<script>"])
def test_it_replaces_an_insane_request_id(client, bad):
    response = client.get("/health/live", HTTP_X_REQUEST_ID=bad)
    assert response["X-Request-ID"] != bad
    assert len(response["X-Request-ID"]) == 32
    assert sanitize_request_id(bad) != bad


def test_it_ignores_forwarded_for_from_an_untrusted_peer(rf, settings):
    settings.SYMPHONY_TRUSTED_PROXIES = []
    request = rf.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert client_ip(request) == "10.0.0.5"


def test_it_honours_forwarded_for_from_a_trusted_proxy(rf, settings):
    settings.SYMPHONY_TRUSTED_PROXIES = ["10.0.0.0/8"]
    request = rf.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="6.6.6.6, 1.2.3.4, 10.0.0.9")
    assert client_ip(request) == "1.2.3.4"


@pytest.mark.urls("observability.tests.urls")
def test_it_carries_the_request_id_into_the_log_line_and_the_audit_event(client, plain_key, log_output):
    from audit.models import AuditEvent

    response = client.get("/test-only/admin-probe/", headers={**plain_key.headers, "X-Request-ID": "abc-123"})

    assert response.status_code == 403
    assert response["X-Request-ID"] == "abc-123"
    assert response.json()["error"]["request_id"] == "abc-123"
    [access] = log_output.events("request")
    assert access["request_id"] == "abc-123"
    assert access["status"] == 403
    assert access["path"] == "/test-only/admin-probe/"
    assert access["user"] == plain_key.user.username
    assert access["key_prefix"] == plain_key.key.prefix
    event = AuditEvent.objects.get(event_type="authz.permission.denied")
    assert event.request_id == "abc-123"
    assert event.api_key_prefix == plain_key.key.prefix


def test_it_makes_a_request_id_for_every_log_line_of_a_request(client, log_output):
    response = client.get("/api/v1/nowhere/")
    [access] = log_output.events("request")
    assert access["request_id"] == response["X-Request-ID"]
    assert access["status"] == 404
