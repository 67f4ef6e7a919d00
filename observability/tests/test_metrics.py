import os
import shutil
import subprocess
import sys

import pytest
from django.db import transaction
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from observability import metrics, registry
from tests.servers import ROOT

REQUIRE_SERVICES = os.environ.get("SYMPHONY_REQUIRE_SERVICES", "") in {"1", "true", "yes"}
PUBLIC_IP = "203.0.113.7"


def sample_value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


class FleetCollector:
    def collect(self):
        gauge = GaugeMetricFamily("symphony_test_agents", "Agents by status (test).", labels=["status"])
        gauge.add_metric(["idle"], 3)
        yield gauge


class BrokenCollector:
    def collect(self):
        raise RuntimeError("database is gone")


@pytest.fixture
def fleet_collector(monkeypatch):
    collector = FleetCollector()
    monkeypatch.setattr(registry, "_collectors", [*registry._collectors, BrokenCollector(), collector])
    return collector


@pytest.mark.django_db
def test_it_serves_metrics_to_loopback(client):
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    assert 'symphony_build_info{python="' in text
    assert "django_http_requests_before_middlewares_total" in text


@pytest.mark.parametrize("ip", ["10.1.2.3", "172.20.0.9", "192.168.1.1", "fd00::1", "::1"])
def test_it_serves_metrics_to_private_networks(client, ip):
    assert client.get("/metrics", REMOTE_ADDR=ip).status_code == 200


def test_it_refuses_metrics_to_the_internet(client):
    assert client.get("/metrics", REMOTE_ADDR=PUBLIC_IP).status_code == 403


def test_it_serves_metrics_with_the_token_from_anywhere(client, settings):
    settings.METRICS_TOKEN = "scrape-token-0123456789"

    ok = client.get("/metrics", REMOTE_ADDR=PUBLIC_IP, headers={"Authorization": "Bearer scrape-token-0123456789"})
    wrong = client.get("/metrics", REMOTE_ADDR=PUBLIC_IP, headers={"Authorization": "Bearer scrape-token-nope"})

    assert ok.status_code == 200
    assert wrong.status_code == 403


def test_it_can_close_metrics_to_private_networks(client, settings):
    settings.SYMPHONY_METRICS_ALLOW_PRIVATE = False
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics").status_code == 403


def test_it_refuses_to_change_metrics(client):
    assert client.post("/metrics").status_code == 405


def test_it_includes_registered_collectors_and_survives_a_broken_one(client, fleet_collector):
    text = client.get("/metrics").content.decode()

    assert sample_value(text, "symphony_test_agents", status="idle") == 3
    assert "symphony_build_info" in text


def test_it_includes_registered_collectors_in_multiprocess_mode(client, fleet_collector, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    text = client.get("/metrics").content.decode()

    assert sample_value(text, "symphony_test_agents", status="idle") == 3
    assert "symphony_build_info" in text
    assert "django_http_requests_before_middlewares_total" not in text  # this process wrote no files


@pytest.mark.django_db
def test_it_counts_api_key_authentications_by_outcome(client, plain_key):
    before = client.get("/metrics").content.decode()
    client.get("/health", headers=plain_key.headers)
    client.get("/health", headers={"X-API-Key": plain_key.raw[:-4] + "zzzz"})
    after = client.get("/metrics").content.decode()

    name = "symphony_api_key_authentications_total"
    assert sample_value(after, name, outcome="success") == sample_value(before, name, outcome="success") + 1
    assert sample_value(after, name, outcome="invalid") == sample_value(before, name, outcome="invalid") + 1
    failures = "symphony_auth_failures_total"
    assert sample_value(after, failures, method="api_key") == sample_value(before, failures, method="api_key") + 1


@pytest.mark.django_db
def test_it_counts_failed_password_logins(client):
    before = client.get("/metrics").content.decode()
    client.post("/admin/login/", {"username": "nobody", "password": "wrong"})
    after = client.get("/metrics").content.decode()

    name = "symphony_auth_failures_total"
    assert sample_value(after, name, method="password") == sample_value(before, name, method="password") + 1


@pytest.mark.django_db
def test_it_counts_audit_events_by_type_and_severity(client, django_capture_on_commit_callbacks):
    import audit

    before = client.get("/metrics").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        audit.record("auth.failed", outcome="failure")
    after = client.get("/metrics").content.decode()

    name = "symphony_audit_events_total"
    labels = {"event_type": "auth.failed", "severity": "warning"}
    assert sample_value(after, name, **labels) == sample_value(before, name, **labels) + 1


@pytest.mark.django_db
def test_it_counts_no_audit_event_that_was_rolled_back(client, django_capture_on_commit_callbacks):
    """Issue 10: the admin's dry runs, rolled back, still counted their events."""
    import audit

    before = client.get("/metrics").content.decode()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ZeroDivisionError), transaction.atomic():
        audit.record("auth.failed", outcome="failure")
        1 / 0  # noqa: B018 - the change the event belongs to fails
    after = client.get("/metrics").content.decode()

    name = "symphony_audit_events_total"
    labels = {"event_type": "auth.failed", "severity": "warning"}
    assert sample_value(after, name, **labels) == sample_value(before, name, **labels)


def test_it_exposes_a_rate_limit_counter_for_the_hardening_code(client):
    metrics.RATE_LIMIT_REJECTIONS.labels(scope="api_key").inc()

    text = client.get("/metrics").content.decode()

    assert sample_value(text, "symphony_rate_limit_rejections_total", scope="api_key") >= 1


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (None, "success"),
        ("api_key_revoked", "revoked"),
        ("api_key_whatever", "failure"),
        ("not_authenticated", "failure"),
    ],
)
def test_it_bounds_api_key_outcome_labels(code, outcome):
    assert metrics.api_key_outcome(code) == outcome


@pytest.mark.django_db
def test_it_passes_promtool_check_metrics(client, plain_key, fleet_collector):
    promtool = shutil.which("promtool")
    if promtool is None:
        if REQUIRE_SERVICES:
            pytest.fail("promtool is required (SYMPHONY_REQUIRE_SERVICES=1): apt-get install prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    client.get("/health", headers=plain_key.headers)  # labelled samples in every Symphony counter family
    metrics.RATE_LIMIT_REJECTIONS.labels(scope="api").inc()
    text = client.get("/metrics").content

    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)

    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == ""


#: A process that counts 5 on a live gauge and dies without its files being cleaned up; then one that
#: finds those files under its own pid (a restarted container's PID namespace hands out the same pids).
_DEAD = """
from prometheus_client import Gauge
Gauge("symphony_test_waiting", "t", multiprocess_mode="livesum").inc(5)
"""
_REBORN = """
import os, sys
from pathlib import Path
[dead] = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("gauge_livesum_*.db")
dead.rename(dead.with_name(f"gauge_livesum_{os.getpid()}.db"))
if sys.argv[1] == "settle":
    from observability.multiprocess import settle_multiprocess_dir
    settle_multiprocess_dir()
from prometheus_client import CollectorRegistry, Gauge, generate_latest, multiprocess
Gauge("symphony_test_waiting", "t", multiprocess_mode="livesum").inc(1)
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
print(generate_latest(registry).decode())
"""


@pytest.mark.parametrize("settle", [True, False], ids=["settled", "as-prometheus-client-leaves-it"])
def test_a_process_reusing_a_dead_ones_pid_does_not_inherit_its_live_gauges(tmp_path, settle):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", _DEAD], env=env, check=True, cwd=ROOT)
    reborn = subprocess.run(
        [sys.executable, "-c", _REBORN, "settle" if settle else "raw"],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    # prometheus_client alone resumes from the dead process's 5; settled, the process counts its own 1.
    assert sample_value(reborn.stdout, "symphony_test_waiting") == (1 if settle else 6)
