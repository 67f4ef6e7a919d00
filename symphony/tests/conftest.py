"""Fixtures of the outage tests: Symphony under real gunicorn on the private PostgreSQL cluster
(``start_app``, ``outage_app``). Users, keys and clients come from the root conftest."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.servers import ROOT, app_env, gunicorn_app

# --- Symphony under gunicorn on the private PostgreSQL cluster -------------------------------------

BOUND = "2"  # SYMPHONY_DB_TIMEOUT_SECONDS of the servers under test
ADMIN_PASSWORD = "outage-admin-password-1"
SEED = f"""
from accounts.models import Role, User
from accounts.services import api_key_create
from agents.models import Orchestra
user = User.objects.create_user(username="outage")
user.roles.add(Role.objects.get(name="super_admin"))
_, raw = api_key_create(owner=user, name="outage tests")
User.objects.create_superuser(username="operator", password="{ADMIN_PASSWORD}")
orchestra = Orchestra.objects.create(name="outage")
print("SEEDED", raw, orchestra.pk)
"""


@dataclass
class Seeded:
    template: str
    api_key: str
    orchestra: int


@pytest.fixture(scope="session")
def seeded(postgres_cluster, migrated_template, tmp_path_factory) -> Seeded:
    """The migrated template plus a super_admin key, an admin user and an orchestra, seeded once."""
    name = "symphony_outage_seed"
    url = postgres_cluster.clone(migrated_template, name)
    env = _env(tmp_path_factory.mktemp("seed"), url)
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SEED], cwd=ROOT, env=env, check=True, capture_output=True
    ).stdout.decode()
    _, raw, orchestra = out[out.index("SEEDED") :].split()[:3]
    return Seeded(name, raw, int(orchestra))


def _env(tmp: Path, url: str, **extra: str) -> dict[str, str]:
    # These tests count answers, not limits: clients that retry at once while the database is away
    # would otherwise use up the key's default 500/15m and meet 429s after it comes back.
    env = app_env(tmp, DATABASE_URL=url, SYMPHONY_DB_TIMEOUT_SECONDS=BOUND, SYMPHONY_RATELIMIT_DEFAULT="1000000/15m")
    env.pop("REDIS_URL", None)  # by default the embedded cache: sessions then live in the database too
    env.update(extra)
    return env


@dataclass
class App:
    """A running server: base URL, its database, the seeded key and orchestra, its captured output."""

    url: str
    dbname: str
    api_key: str
    orchestra: int
    log: Path
    answers: list[tuple[int, dict, str]] = field(default_factory=list)

    def submit(self, key: str | None = None, timeout: float = 60) -> tuple[int, dict, requests.Response | None]:
        """POST a task with a fresh idempotency key; (status, JSON body, response), status 0 if no answer."""
        key = key or uuid.uuid4().hex
        body = {"kind": "outage.test", "orchestra": self.orchestra, "idempotency_key": key}
        headers = {"Authorization": f"Bearer {self.api_key}", "Connection": "close"}
        try:
            response = requests.post(f"{self.url}/api/v1/tasks/", json=body, headers=headers, timeout=timeout)
        except requests.RequestException:
            self.answers.append((0, {}, key))
            return 0, {}, None
        data = response_json(response)
        self.answers.append((response.status_code, data, key))
        return response.status_code, data, response

    def get(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.get(f"{self.url}{path}", headers={"Connection": "close", **(headers or {})}, timeout=60)

    def admin_session(self) -> requests.Session:
        """A session logged in to the admin as the seeded superuser."""
        session = requests.Session()
        session.get(f"{self.url}/admin/login/", timeout=30)
        response = session.post(
            f"{self.url}/admin/login/?next=/admin/",
            data={
                "username": "operator",
                "password": ADMIN_PASSWORD,
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            headers={"Referer": f"{self.url}/admin/login/"},
            timeout=30,
        )
        assert response.status_code == 200 and "sessionid" in session.cookies, response.text[:500]
        return session


def response_json(response: requests.Response) -> dict:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@pytest.fixture
def start_app(private_postgres, seeded, tmp_path):
    """``with start_app(**env) as app``: gunicorn with 2 sync workers on a fresh copy of the seeded
    database of the private cluster; ``db_password`` goes into ``DATABASE_URL`` (trust ignores it)."""

    @contextmanager
    def start(db_password: str = "", **extra: str) -> Iterator[App]:
        dbname = f"app_{uuid.uuid4().hex[:12]}"
        private_postgres.clone(seeded.template, dbname)
        env = _env(tmp_path, private_postgres.url(dbname, password=db_password), **extra)
        log = tmp_path / f"{dbname}.log"
        with gunicorn_app(env, log, workers=2) as base:
            yield App(base, dbname, seeded.api_key, seeded.orchestra, log)

    return start


@pytest.fixture
def outage_app(start_app) -> Iterator[App]:
    with start_app() as app:
        yield app
