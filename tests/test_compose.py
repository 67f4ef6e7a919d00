"""docker-compose.yml, checked as data (no `docker compose` here). `make image-test` runs the image with
this file's container settings; tests/test_helm.py checks that the chart uses the same ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests import dockerfile, references

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
# Created by the operator before `up` (docs/DEPLOYMENT.md), never committed.
OPERATOR_SECRETS = ("./secrets/",)
SYMPHONY_SERVICES = ("migrate", "symphony", "streams", "scheduler", "agent")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_it_has_every_service_of_the_stack(compose):
    assert set(compose["services"]) == {
        "postgres", "redis", "migrate", "symphony", "streams", "scheduler", "webhooks", "agent", "nginx", "jaeger",
        "prometheus",
        "grafana",
    }  # fmt: skip
    assert compose["services"]["postgres"]["image"].startswith("postgres:16")
    assert compose["services"]["redis"]["image"].startswith("redis:7")


def test_it_mounts_only_files_that_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("."):
                assert source in compose["volumes"], f"{name}: named volume {source} is not declared"
            elif not source.startswith(OPERATOR_SECRETS):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
    for secret in compose["secrets"].values():
        assert secret["file"].startswith(OPERATOR_SECRETS)


def test_it_waits_on_health_and_on_the_migration(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
    assert services["symphony"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["command"][1:3] == ["manage.py", "migrate"]
    assert "/health/ready" in " ".join(services["symphony"]["healthcheck"]["test"])


def test_it_sets_only_variables_the_code_reads(compose):
    for name in SYMPHONY_SERVICES:
        for variable in compose["services"][name]["environment"]:
            assert references.is_known_env(variable), f"{name}: nothing reads {variable}"
    env = compose["services"]["symphony"]["environment"]
    assert env["DEBUG"] == "false"
    assert env["DATABASE_URL"].startswith("postgres://")
    assert env["REDIS_URL"].startswith("redis://redis:6379/")
    # TLS ends at nginx; Django must not redirect the internal plain-HTTP callers (agent, probes, Prometheus).
    assert (env["SYMPHONY_HTTPS"], env["SYMPHONY_SECURE_PROXY_SSL_HEADER"], env["SECURE_SSL_REDIRECT"]) == (
        "true",
        "true",
        "false",
    )


def test_it_trusts_only_nginx_as_a_proxy(compose):
    nginx_ip = compose["services"]["nginx"]["networks"]["default"]["ipv4_address"]
    assert compose["services"]["symphony"]["environment"]["SYMPHONY_TRUSTED_PROXIES"] == nginx_ip


def test_it_runs_only_management_commands_that_exist(compose):
    commands = set()
    for name in SYMPHONY_SERVICES:
        commands |= references.manage_commands_in(" ".join(compose["services"][name].get("command", [])))
    assert {"migrate", "run_agent", "run_scheduler"} <= commands
    assert commands <= references.management_commands()


def tmpfs_mounts(service: dict) -> dict[str, dict[str, str]]:
    """``/target:opt=value,flag`` entries as {target: {opt: value}}."""
    mounts = {}
    for entry in service.get("tmpfs", []):
        target, _, options = entry.partition(":")
        mounts[target] = dict(option.partition("=")[::2] for option in options.split(",") if option)
    return mounts


def test_it_keeps_the_web_containers_read_only(compose):
    for name in SYMPHONY_SERVICES:
        service = compose["services"][name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert {"/tmp", "/app/var", "/tmp/prometheus"} <= set(tmpfs_mounts(service))


def test_it_gives_every_tmpfs_a_mode_the_app_user_can_write_and_a_size(compose):
    # A tmpfs without a mode is root's 0755 under podman, and uid 10001's gunicorn workers then die on
    # PROMETHEUS_MULTIPROC_DIR (found by `make image-test`).
    for name in SYMPHONY_SERVICES:
        for target, options in tmpfs_mounts(compose["services"][name]).items():
            assert options.get("mode") == "1777", f"{name}: {target}"
            assert re.fullmatch(r"\d+[kmg]", options.get("size", "")), f"{name}: {target} has no size"


def test_it_leaves_the_var_tmpfs_room_above_the_disk_health_minimum(compose):
    from django.conf import settings

    size = tmpfs_mounts(compose["services"]["symphony"])["/app/var"]["size"]
    megabytes = int(size[:-1]) * {"k": 1 / 1024, "m": 1, "g": 1024}[size[-1]]
    assert megabytes > 2 * settings.SYMPHONY_DISK_MIN_FREE_MB  # else /health calls var nearly full


def test_it_mounts_a_tmpfs_where_the_image_keeps_its_writable_state(compose):
    _, stages = dockerfile.parse(ROOT / "Dockerfile.production")
    env = dict(re.findall(r"([A-Z_]+)=(\S+)", " ".join(i.args for i in stages[-1].all("ENV"))))
    targets = set(tmpfs_mounts(compose["services"]["symphony"]))
    assert {env["SYMPHONY_VAR_DIR"], env["PROMETHEUS_MULTIPROC_DIR"]} <= targets


def test_it_serves_streams_from_the_asgi_process(compose):
    streams = compose["services"]["streams"]
    assert streams["command"][:4] == ["python", "-m", "uvicorn", "symphony.asgi:application"]
    assert streams["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert compose["services"]["nginx"]["depends_on"]["streams"]["condition"] == "service_healthy"
