"""config/nginx/nginx.conf: `nginx -t` with Debian's nginx and a live TLS request through it."""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests import servers

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "config" / "nginx" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REQUIRE = os.environ.get("SYMPHONY_REQUIRE_SERVICES", "") in {"1", "true", "yes"}


def _need(binary: str) -> None:
    if not os.path.exists(binary) and not shutil.which(binary):
        if REQUIRE:
            pytest.fail(f"{binary} is required (SYMPHONY_REQUIRE_SERVICES=1) but not installed")
        pytest.skip(f"{binary} not installed (apt-get install nginx openssl)")


def render(tmp: Path, *, https_port: int, http_port: int, upstream: str) -> Path:
    """The real file with only its deployment paths and addresses swapped for test ones."""
    text = CONF.read_text()
    replacements = {
        "pid /var/run/nginx.pid;": f"pid {tmp}/nginx.pid;",
        "/etc/nginx/tls/": f"{tmp}/tls/",
        "server symphony:8000": f"server {upstream}",
        "server streams:8001": f"server {upstream}",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
    }
    for old, new in replacements.items():
        assert old in text, f"{old!r} is no longer in nginx.conf: update the test's rendering"
        text = text.replace(old, new)
    out = tmp / "nginx.conf"
    out.write_text(text)
    return out


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    _need("openssl")
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-keyout", str(tls / "tls.key"), "-out", str(tls / "tls.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    return tls


def test_it_passes_nginx_t(tmp_path, tls_dir):
    _need(NGINX)
    https_port, http_port = servers.free_ports(2)
    conf = render(tmp_path, https_port=https_port, http_port=http_port, upstream="127.0.0.1:9")
    result = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def _block(text: str, head: str) -> str:
    start = text.index(head)
    depth, i = 0, text.index("{", start)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[start : j + 1]
    raise AssertionError(f"unbalanced block {head}")


def test_it_closes_metrics_to_the_outside():
    block = _block(CONF.read_text(), "location = /metrics")
    allowed = re.findall(r"allow\s+([^;]+);", block)
    assert set(allowed) <= {"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1", "fc00::/7"}
    assert "deny all;" in block
    assert block.index("deny all;") > max(block.index(a) for a in allowed)


def test_it_limits_login_harder_than_the_api():
    text = CONF.read_text()
    rates = {zone: (int(n), unit) for zone, n, unit in re.findall(r"zone=(\w+):\d+m rate=(\d+)r/([sm])", text)}
    per_second = {zone: n / (60 if unit == "m" else 1) for zone, (n, unit) in rates.items()}
    login = _block(text, "location = /admin/login/")
    api = _block(text, "location /api/ ")
    login_zone = re.search(r"limit_req zone=(\w+)", login).group(1)
    api_zone = re.search(r"limit_req zone=(\w+)", api).group(1)
    assert per_second[login_zone] < per_second[api_zone]
    assert "limit_req_status 429;" in text


def test_it_sets_security_headers_only_at_server_level():
    text = CONF.read_text()
    server = _block(text, "listen 443 ssl")
    for header in ["Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"]:
        assert f"add_header {header}" in server
    for location in re.findall(r"location [^{]+\{[^}]*\}", server):
        assert "add_header" not in location, "add_header in a location drops the server-level headers"


@pytest.mark.slow
def test_it_serves_health_over_tls_and_round_trips_the_request_id(tmp_path, tls_dir):
    _need(NGINX)
    app_port, https_port, http_port = servers.free_ports(3)
    conf = render(tmp_path, https_port=https_port, http_port=http_port, upstream=f"127.0.0.1:{app_port}")
    env = servers.app_env(tmp_path)
    with (
        servers.running(servers.gunicorn_command(app_port), env=env, log=tmp_path / "gunicorn.log") as app,
        servers.running(
            [NGINX, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"], log=tmp_path / "nginx.log"
        ) as proxy,
    ):
        servers.wait_for(f"http://127.0.0.1:{app_port}/health/live", process=app, timeout=30)
        context = ssl.create_default_context(cafile=str(tls_dir / "tls.crt"))
        context.check_hostname = False
        servers.wait_for(f"https://127.0.0.1:{https_port}/health/live", context=context, process=proxy)

        request = urllib.request.Request(
            f"https://127.0.0.1:{https_port}/health/live", headers={"X-Request-ID": "deploy-test-42"}
        )
        with urllib.request.urlopen(request, context=context, timeout=5) as response:  # noqa: S310
            assert response.status == 200
            assert response.headers["X-Request-ID"] == "deploy-test-42"
            assert response.headers["Strict-Transport-Security"].startswith("max-age=")
            assert response.headers.get_all("X-Content-Type-Options") == ["nosniff"]

        # Without one, nginx makes the id, passes it upstream and Django echoes it.
        with urllib.request.urlopen(f"https://127.0.0.1:{https_port}/health/live", context=context) as response:
            assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])

        # Plain HTTP is redirected to HTTPS.
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(f"http://127.0.0.1:{http_port}/health/live")
        assert redirect.value.code == 308
        assert redirect.value.headers["Location"].startswith("https://")

    lines = [json.loads(line) for line in (tmp_path / "nginx.log").read_text().splitlines() if line.startswith("{")]
    assert any(line["request_id"] == "deploy-test-42" and line["status"] == 200 for line in lines), lines


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_it_routes_task_and_workflow_streams_unbuffered_to_the_asgi_process():
    text = CONF.read_text()
    start = text.index("location ~ ^/api/v1/(tasks|workflows)/[0-9]+/stream/$ {")
    block = text[start : text.index("}", start)]
    assert "proxy_pass http://symphony_streams;" in block
    assert "proxy_buffering off;" in block
    assert "upstream symphony_streams {" in text


def test_it_routes_claims_to_the_asgi_process_which_may_hold_them():
    text = CONF.read_text()
    start = text.index("location = /api/v1/agent/claim/ {")
    block = text[start : text.index("}", start)]
    assert "proxy_pass http://symphony_streams;" in block
    assert "zone=symphony_agent" in block  # the agents' rate zone, as for the rest of the protocol
