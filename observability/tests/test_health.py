import logging
import threading

import pytest

from observability import health, registry
from observability.registry import DEGRADED, HEALTHY, HealthResult

PUBLIC_IP = "203.0.113.7"


@pytest.fixture
def released():
    """An event set at teardown, so a check that waits on it never outlives the test."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def extra_check(monkeypatch):
    def register(name, func, timeout=2.0):
        monkeypatch.setitem(registry._health_checks, name, registry.HealthCheck(name, func, timeout))

    return register


def test_it_answers_live_without_touching_the_database(client):
    # No django_db mark: any database access in this test raises.
    response = client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


def test_it_answers_probes_for_any_host_header(client):
    # A kubelet probes the pod IP, which ALLOWED_HOSTS rarely lists.
    assert client.get("/health/live", HTTP_HOST="10.244.3.17:8000").status_code == 200


@pytest.mark.django_db
def test_it_answers_ready_when_database_cache_and_migrations_are_fine(client):
    response = client.get("/health/ready")

    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_it_names_the_failing_component_when_not_ready(client, monkeypatch):
    def broken_cache():
        raise ConnectionError("cache refused")

    monkeypatch.setattr(health, "READY_CHECKS", (*health.READY_CHECKS[:1], registry.HealthCheck("cache", broken_cache)))

    response = client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["failing"] == ["cache"]
    assert "cache refused" in response.json()["checks"]["cache"]


@pytest.mark.django_db
def test_it_hides_failure_messages_of_ready_from_the_internet(client, monkeypatch):
    monkeypatch.setattr(health, "READY_CHECKS", (registry.HealthCheck("cache", lambda: 1 / 0),))

    response = client.get("/health/ready", REMOTE_ADDR=PUBLIC_IP)

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failing": ["cache"]}


def test_it_answers_startup_only_after_boot(client, monkeypatch):
    monkeypatch.setattr(health, "_boot_completed", False)
    assert client.get("/health/startup").status_code == 503

    health.boot_completed()

    assert client.get("/health/startup").status_code == 200


@pytest.mark.django_db
def test_it_reports_every_component_to_private_networks(client, extra_check):
    extra_check("agent_orchestra", lambda: HealthResult(DEGRADED, "2 agents stale", {"stale": 2}))

    response = client.get("/health")

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == DEGRADED
    assert body["version"]
    assert body["uptime_seconds"] >= 0
    assert {"database", "memory", "disk", "agent_orchestra"} <= set(body["components"])
    orchestra = body["components"]["agent_orchestra"]
    assert orchestra["status"] == DEGRADED
    assert orchestra["message"] == "2 agents stale"
    assert orchestra["details"] == {"stale": 2}
    assert body["components"]["database"]["status"] == HEALTHY
    assert isinstance(body["components"]["database"]["duration_ms"], float)


@pytest.mark.django_db
def test_it_shows_only_the_overall_status_to_the_internet(client):
    response = client.get("/health", REMOTE_ADDR=PUBLIC_IP)

    assert response.status_code == 200
    assert response.json() == {"status": HEALTHY}


@pytest.mark.django_db
def test_it_shows_details_to_a_monitor_key_from_the_internet(client, monitor_key):
    response = client.get("/health", REMOTE_ADDR=PUBLIC_IP, headers=monitor_key.headers)

    assert response.status_code == 200
    assert "components" in response.json()


@pytest.mark.django_db
def test_it_hides_details_from_a_key_without_monitor(client, plain_key):
    response = client.get("/health", REMOTE_ADDR=PUBLIC_IP, headers=plain_key.headers)

    assert response.json() == {"status": HEALTHY}


@pytest.mark.django_db
def test_it_can_refuse_details_to_private_networks(client, settings):
    settings.SYMPHONY_HEALTH_DETAILS_ALLOW_PRIVATE = False

    assert client.get("/health").json() == {"status": HEALTHY}


@pytest.mark.django_db
def test_it_times_out_a_hanging_check_instead_of_hanging(client, extra_check, released):
    extra_check("agent_orchestra", lambda: released.wait(30) and HealthResult(HEALTHY), timeout=0.05)

    response = client.get("/health")

    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unhealthy"
    assert body["components"]["agent_orchestra"]["message"] == "timed out after 0.05s"
    assert body["components"]["database"]["status"] == HEALTHY


@pytest.mark.django_db
def test_it_turns_a_raising_check_into_unhealthy(client, extra_check):
    extra_check("agent_orchestra", lambda: {}["missing"])

    body = client.get("/health").json()

    assert body["components"]["agent_orchestra"]["status"] == "unhealthy"
    assert body["components"]["agent_orchestra"]["message"].startswith("KeyError")


@pytest.mark.django_db
def test_it_degrades_memory_near_the_limit(client, settings, monkeypatch):
    monkeypatch.setattr(health, "rss_bytes", lambda: 85 * 1024 * 1024)
    settings.SYMPHONY_MEMORY_LIMIT_MB = 100

    memory = client.get("/health").json()["components"]["memory"]

    assert memory["status"] == DEGRADED
    assert memory["details"]["rss_mb"] == 85.0


@pytest.mark.django_db
def test_it_fails_memory_over_the_limit(client, settings, monkeypatch):
    monkeypatch.setattr(health, "rss_bytes", lambda: 99 * 1024 * 1024)
    settings.SYMPHONY_MEMORY_LIMIT_MB = 100

    response = client.get("/health")

    assert response.status_code == 503
    assert response.json()["components"]["memory"]["status"] == "unhealthy"


@pytest.mark.django_db
def test_it_fails_disk_below_the_minimum_free_space(client, settings):
    settings.SYMPHONY_DISK_MIN_FREE_MB = 1024 * 1024 * 1024  # a petabyte: never free here

    disk = client.get("/health").json()["components"]["disk"]

    assert disk["status"] == "unhealthy"
    assert disk["details"]["min_free_mb"] == 1024 * 1024 * 1024


@pytest.mark.redis
@pytest.mark.django_db
def test_it_checks_redis_when_configured(client):
    redis = client.get("/health").json()["components"]["redis"]

    assert redis["status"] == HEALTHY
    assert redis["message"] == "PING answered"


@pytest.mark.django_db
def test_it_reports_pending_migrations_as_not_ready(monkeypatch):
    from django.db.migrations.executor import MigrationExecutor

    monkeypatch.setattr(health, "_migrations_applied", False)
    monkeypatch.setattr(MigrationExecutor, "migration_plan", lambda self, targets: [(_Migration(), False)])

    result = health.check_migrations()

    assert result.status == "unhealthy"
    assert result.details == {"pending": ["agents.0002_future"]}


class _Migration:
    app_label = "agents"
    name = "0002_future"


@pytest.mark.django_db
def test_it_logs_a_failing_probe_as_a_warning_not_as_a_server_error(client, monkeypatch, log_output):
    # Kubelets and load balancers read 503s from probes during every start and outage: one warning each
    # (not_ready), not also an ERROR line from django.request.
    monkeypatch.setattr(health, "READY_CHECKS", (registry.HealthCheck("cache", lambda: 1 / 0),))
    server_errors = []
    handler = logging.Handler(level=logging.ERROR)
    handler.emit = server_errors.append
    django_request = logging.getLogger("django.request")
    django_request.addHandler(handler)
    try:
        assert client.get("/health/ready").status_code == 503
        monkeypatch.setattr(health, "_boot_completed", False)
        assert client.get("/health/startup").status_code == 503
    finally:
        django_request.removeHandler(handler)

    assert [record.getMessage() for record in server_errors] == []
    [warning] = log_output.events("not_ready")
    assert warning["level"] == "warning" and warning["failing"] == ["cache"]
