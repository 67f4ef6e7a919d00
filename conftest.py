"""Project-wide pytest fixtures: service markers, cache isolation, clients, browser."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REQUIRE_SERVICES = os.environ.get("SYMPHONY_REQUIRE_SERVICES", "") in {"1", "true", "yes"}
CHROMIUM = os.environ.get("SYMPHONY_CHROMIUM", "/usr/bin/chromium")

# On PostgreSQL the audit table refuses DELETE and TRUNCATE (audit migration 0004) except to members
# of symphony_audit_purger, and superusers are members of every role. Django flushes with TRUNCATE
# after each transactional test, so the tests' database role must be a superuser (the postgres role
# here) or a member of that role: a privilege the application's role never has in production
# (docs/DEPLOYMENT.md, "Database roles"). audit/tests/conftest.py connects as an ordinary role.


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    # Each xdist worker gets its own cache key prefix, so clearing "its" cache between tests never
    # wipes another worker's keys in the shared Redis database.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if "KEY_PREFIX" in settings.CACHES["default"] or os.environ.get("REDIS_URL"):
        settings.CACHES["default"]["KEY_PREFIX"] = f"test-{worker}"
    if settings.CACHES["default"]["BACKEND"] == "symphony.caches.SQLiteCache":
        # The embedded default's shared cache file: one per xdist worker, never the install's own.
        folder = Path(tempfile.gettempdir()) / f"symphony-test-cache-{os.getuid()}"
        folder.mkdir(exist_ok=True)
        settings.CACHES["default"]["LOCATION"] = str(folder / f"{worker}.sqlite3")


def _service_missing(name: str, reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{name} is required (SYMPHONY_REQUIRE_SERVICES=1) but {reason}")
    pytest.skip(f"{name} not available: {reason}")


def _redis_reachable() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001 - any failure means unreachable
        return False


@pytest.fixture(autouse=True)
def _services(request: pytest.FixtureRequest) -> None:
    from django.db import connection

    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        _service_missing("PostgreSQL", "DATABASE_URL does not point at PostgreSQL")
    if request.node.get_closest_marker("redis"):
        if not os.environ.get("REDIS_URL"):
            _service_missing("Redis", "REDIS_URL is not set")
        elif not _redis_reachable():
            _service_missing("Redis", f"{os.environ['REDIS_URL']} does not answer")
    if request.node.get_closest_marker("browser") and not shutil.which(CHROMIUM):
        _service_missing("Chromium", f"{CHROMIUM} is not installed (apt-get install chromium)")


@pytest.fixture(autouse=True)
def _audit_sealer():
    """No test leaves this process's background audit sealer (PostgreSQL) running into the next one."""
    yield
    from audit.services import _sealer

    _sealer.stop(flush=False)


class AuditSealing:
    """What a test waits for once audited work has committed (on PostgreSQL sealing is in the background)."""

    def wait(self, timeout: float = 60) -> None:
        """Until the background sealer has sealed every pending event (it is not done here)."""
        import time

        from audit.models import AuditEvent

        deadline = time.monotonic() + timeout
        while AuditEvent.objects.filter(chain_seq__isnull=True, hash__isnull=True).exists():
            assert time.monotonic() < deadline, f"events still unsealed after {timeout} s"
            time.sleep(0.02)

    def flush(self) -> None:
        """Stop the background sealer (as a process does at exit) and seal what is pending, here."""
        from audit.services import _sealer, audit_seal

        _sealer.stop(flush=False)
        audit_seal()


@pytest.fixture
def audit_sealing() -> AuditSealing:
    """``audit_sealing.wait()`` / ``.flush()``; ``audit.seal_now()`` seals inside a test's transaction too."""
    return AuditSealing()


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    """Every test starts with an empty cache (permissions, rate limits), in this worker's prefix."""
    from django.core.cache import cache

    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("*")
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def _fresh_breakers():
    """Redis circuit breakers are per process and server URL: one a test left open (an unreachable
    Redis on a random port of our range) must not greet a later test that draws the same port."""
    yield
    from symphony import caches

    for breaker in caches._breakers.values():
        breaker.failing_since = 0.0  # also ends its probe thread's loop
    caches._breakers.clear()


_DB_FIXTURES = {"db", "transactional_db", "live_server", "django_db_reset_sequences", "django_db_serialized_rollback"}


@pytest.fixture(autouse=True)
def _seeded_catalog(request: pytest.FixtureRequest) -> None:
    """Every database test starts with the permission catalog, the system roles and the ``default``
    project (all three made by migrations).

    A transactional test with ``serialized_rollback`` ends with a flush that skips ``post_migrate``,
    leaving the next test in that worker an empty database; which test comes next depends on xdist's
    scheduling. Tests with ``serialized_rollback`` restore the data themselves; for the others the
    missing rows are created inside the test's own transaction (three queries when nothing is missing).
    Every transactional test uses ``serialized_rollback``: a plain one's flush re-creates the content
    types under new ids, and the next serialized test's restore then collides with them.
    """
    marker = request.node.get_closest_marker("django_db")
    if marker is None and not _DB_FIXTURES & set(request.fixturenames):
        return
    if (marker and marker.kwargs.get("serialized_rollback")) or "django_db_serialized_rollback" in request.fixturenames:
        return
    request.getfixturevalue("_django_db_helper")
    from accounts.models import default_project_id
    from accounts.seeding import ensure_catalog

    ensure_catalog()
    default_project_id()


@pytest.fixture(scope="session")
def postgres_cluster():
    """A private PostgreSQL cluster for this test session (xdist worker): tests may stop it and freeze
    it (tests/servers.py ``PostgresCluster``). Use ``private_postgres``, which repairs it around each test."""
    from tests.servers import postgres_bin_dir, private_postgres

    if postgres_bin_dir() is None:
        _service_missing("PostgreSQL server binaries", "initdb and pg_ctl are not under /usr/lib/postgresql")
    with private_postgres() as cluster:
        yield cluster


@pytest.fixture
def private_postgres(postgres_cluster):
    """The session's private cluster, thawed and running at the start and at the end of the test."""
    postgres_cluster.ensure_up()
    yield postgres_cluster
    postgres_cluster.ensure_up()


@pytest.fixture(scope="session")
def migrated_template(postgres_cluster) -> str:
    """The name of a database of the private cluster with every migration applied, to ``clone``."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from tests.servers import ROOT, app_env

    name = "symphony_template"
    postgres_cluster.psql(f'CREATE DATABASE "{name}"')
    with tempfile.TemporaryDirectory(prefix="symphony-migrate-") as tmp:
        env = app_env(Path(tmp), DATABASE_URL=postgres_cluster.url(name), LOG_LEVEL="WARNING")
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    return name


@pytest.fixture
def make_user(db: None):
    """``make_user("operator", username="bob")`` -> a user holding those roles globally."""
    from accounts.tests.factories import UserFactory

    def make(*roles: str, **fields):
        return UserFactory(roles=list(roles), **fields)

    return make


@pytest.fixture
def make_api(db: None):
    """``make_api("viewer")`` or ``make_api(user=u, scopes=[...])`` -> a ``tests.api.Api`` with a
    fresh key of that user (all their permissions unless ``scopes``)."""
    from accounts.services import api_key_create
    from accounts.tests.factories import UserFactory
    from tests.api import Api

    def make(*roles: str, user=None, scopes=None, project=None):
        user = user or UserFactory(roles=list(roles))
        _, raw = api_key_create(
            owner=user, name=f"test-{user.pk}-{user.api_keys.count()}", scopes=scopes, project=project
        )
        api = Api(raw)
        api.user = user
        return api

    return make


@pytest.fixture
def admin_api(make_api):
    return make_api("super_admin")


@pytest.fixture
def operator_api(make_api):
    return make_api("operator")


@pytest.fixture
def project_factory(db: None):
    """``project_factory(slug="alpha")`` -> a project (get-or-create by slug)."""
    from accounts.tests.factories import ProjectFactory

    return ProjectFactory


@pytest.fixture
def spans():
    """Tracing on for this test, exporting synchronously to an in-memory exporter (yielded)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from observability import tracing

    exporter = InMemorySpanExporter()
    provider = tracing.build_provider(exporter, batch=False)
    tracing.instrument(provider)
    try:
        yield exporter
    finally:
        tracing.uninstrument()
        provider.shutdown()


@pytest.fixture
def browser():
    """A headless Debian Chromium driven by Playwright (it cannot download its own browser here)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


# --- users, keys and clients of the HTTP tests (symphony/, ratelimit/) ------------------------------


@pytest.fixture
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def user_with_role(db, fast_passwords):
    """``user_with_role(username, role="viewer", **fields)``: a user with that seeded role (or none)."""
    from accounts.models import Role, User

    def make(username: str = "alice", role: str | None = "viewer", **extra) -> User:
        user = User.objects.create_user(username=username, password="correct horse battery", **extra)  # noqa: S106
        if role:  # the seeded roles are gone in transaction=True tests (the flush removes them)
            user.roles.add(Role.objects.get(name=role))
        return user

    return make


@pytest.fixture
def make_key(user_with_role):
    """``make_key(role, rate_limit="", username=None)``: the raw key of a fresh user holding ``role``."""
    from accounts.services import api_key_create

    def make(role: str = "viewer", rate_limit: str = "", username: str | None = None) -> str:
        user = user_with_role(username=username or f"{role}-owner", role=role)
        _key, raw = api_key_create(owner=user, name=f"{role} key", rate_limit=rate_limit)
        return raw

    return make


@pytest.fixture
def api():
    from rest_framework.test import APIClient

    return APIClient(raise_request_exception=False)


@pytest.fixture
def clock():
    """Frozen time, so no test straddles a rate-limit window edge; ``clock.shift(seconds)`` moves it."""
    import datetime as dt

    import time_machine

    with time_machine.travel(dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=dt.UTC), tick=False) as traveller:
        yield traveller
