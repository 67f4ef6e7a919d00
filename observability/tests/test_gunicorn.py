"""Symphony under real gunicorn (config/gunicorn.conf.py): metrics summed across workers, probes
with an unreachable database, and tracing set up after fork in each worker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from observability.tests.otlp_receiver import OtlpReceiver
from tests.servers import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# This helper's port range is 18400-18499: ten ports per xdist worker.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
BASE_PORT = 18400 + 10 * (_WORKER % 9)
CLOSED_PORT = 18499  # nothing listens there: a database that refuses connections
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class Gunicorn:
    def __init__(self, port: int, tmp_path: Path, workers: int, **env: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = tmp_path / f"gunicorn-{port}.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DATABASE_URL", "REDIS_URL"))}
        clean.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.env = {
            **clean,
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(workers),
            "SYMPHONY_VAR_DIR": str(tmp_path / "var"),
            "SECRET_KEY": "test-secret-key-not-for-production-0123456789abcdef",
            "STATICFILES_STORAGE": "django.contrib.staticfiles.storage.StaticFilesStorage",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
            "LOG_LEVEL": "WARNING",
            **env,
        }
        Path(self.env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

    def migrate(self) -> Gunicorn:
        """Create the server's own SQLite database (rejected keys are audited, so it needs tables)."""
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=self.env, check=True
        )
        return self

    def __enter__(self) -> Gunicorn:
        port = int(self.url.rsplit(":", 1)[1])
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise AssertionError(f"port {port} is already in use: another server would answer this test")
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "symphony.wsgi"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_for_boot()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_for_boot(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/health/startup", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)  # polling for the server to boot, not waiting for time to pass
        raise AssertionError(f"gunicorn did not start: {self.log_path.read_text()[-2000:]}")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def get(self, path: str, *, headers: dict[str, str] | None = None, timeout: float = 10) -> requests.Response:
        # A fresh connection per request, so the kernel spreads them over the workers.
        return requests.get(f"{self.url}{path}", headers={"Connection": "close", **(headers or {})}, timeout=timeout)


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.fixture
def two_workers(tmp_path) -> Iterator[Gunicorn]:
    with Gunicorn(BASE_PORT, tmp_path, workers=2).migrate() as server:
        yield server


def test_it_sums_metrics_across_gunicorn_workers(two_workers):
    pids: set[int] = set()
    health_requests = 0
    while (len(pids) < 2 or health_requests < 20) and health_requests < 300:
        response = two_workers.get("/health")
        assert response.status_code == 200, response.text
        pids.add(response.json()["components"]["memory"]["details"]["pid"])
        health_requests += 1
    rejected = 10
    for _ in range(rejected):
        assert two_workers.get("/health", headers={"X-API-Key": "sym_not-a-key"}).status_code == 401

    text = two_workers.get("/metrics").text

    assert len(pids) == 2, "both workers served"
    assert _sample(text, "django_http_requests_total_by_view_transport_method_total", view="health") == (
        health_requests + rejected
    )
    assert _sample(text, "symphony_api_key_authentications_total", outcome="malformed") == rejected
    assert 'symphony_build_info{python="' in text


def test_it_reports_not_ready_naming_the_database_when_it_is_unreachable(tmp_path):
    url = f"postgres://postgres@127.0.0.1:{CLOSED_PORT}/symphony_nowhere"
    with Gunicorn(BASE_PORT + 1, tmp_path, workers=1, DATABASE_URL=url) as server:
        ready = server.get("/health/ready")
        live = server.get("/health/live")
        startup = server.get("/health/startup")

    assert ready.status_code == 503
    assert "database" in ready.json()["failing"]
    assert "database" in ready.json()["checks"]
    assert live.status_code == 200
    assert startup.status_code == 200


def test_it_traces_requests_in_each_worker_after_fork(tmp_path):
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
        with Gunicorn(BASE_PORT + 2, tmp_path, workers=2, **env) as server:
            response = server.get("/health", headers={"traceparent": traceparent})
            assert response.status_code == 200, response.text
            assert receiver.received.wait(timeout=20), "no OTLP export arrived"

    server_spans = [span for _resource, span in receiver.spans() if span.trace_id.hex() == TRACE_ID]
    assert server_spans, [span.name for _resource, span in receiver.spans()]
    assert server_spans[0].parent_span_id.hex() == "00f067aa0ba902b7"


def test_it_sums_metrics_across_three_workers_without_a_multiprocess_folder_set(tmp_path):
    """``gunicorn -c config/gunicorn.conf.py -w 3`` with no PROMETHEUS_MULTIPROC_DIR: the config makes
    a folder for its workers, every scrape reports the totals, and the folder goes when gunicorn does."""
    server = Gunicorn(free_port(), tmp_path, workers=3).migrate()
    server.env.pop("PROMETHEUS_MULTIPROC_DIR")
    with server:
        pids: set[int] = set()
        served = 0
        while (len(pids) < 3 or served < 30) and served < 600:
            response = server.get("/health")
            assert response.status_code == 200, response.text
            pids.add(response.json()["components"]["memory"]["details"]["pid"])
            served += 1
        # The folder the config made: the one holding our workers' files.
        (folder,) = {p.parent for pid in pids for p in Path("/dev/shm").glob(f"symphony-prometheus-*/*_{pid}.db")}
        scrapes = [server.get("/metrics").text for _ in range(6)]  # served by several workers
        assert folder.is_dir()

    assert len(pids) == 3, "all three workers served"
    totals = {
        _sample(text, "django_http_requests_total_by_view_transport_method_total", view="health") for text in scrapes
    }
    assert totals == {served}
    assert not folder.exists()


def test_management_commands_run_when_the_multiprocess_folder_is_gone(tmp_path):
    """A shell that kept make run's environment after gunicorn removed its folder."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "gone"), "SYMPHONY_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "gone").exists()


def test_it_opens_a_control_socket_only_where_it_is_told(tmp_path):
    # A HOME where nothing can be created, as in the read-only image: gunicorn's default would fail there.
    (tmp_path / "home").write_text("not a directory")
    home = {"HOME": str(tmp_path / "home" / "nowhere"), "XDG_RUNTIME_DIR": ""}
    with Gunicorn(BASE_PORT + 3, tmp_path, workers=1, LOG_LEVEL="INFO", **home) as server:
        assert server.get("/health/live").status_code == 200
    assert "Control" not in server.log_path.read_text()

    socket_path = tmp_path / "var" / "gunicorn.ctl"
    with Gunicorn(BASE_PORT + 3, tmp_path, workers=1, GUNICORN_CONTROL_SOCKET=str(socket_path), **home):
        shown = subprocess.run(
            [str(Path(sys.executable).parent / "gunicornc"), "-s", str(socket_path), "-c", "show workers", "-j"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["workers"]) == 1
    assert not socket_path.exists()  # removed when gunicorn stopped
