"""symphony.db: psycopg connections whose waits are bounded on the client side, against a private
PostgreSQL cluster that the tests freeze (SIGSTOP): the server accepts and acknowledges, and never
answers, which no server-side timeout can cure."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from symphony import db

pytestmark = pytest.mark.slow


@pytest.fixture
def armed() -> Iterator[float]:
    db.arm(1.0)
    yield 1.0
    db.arm(None)
    db._forget_commits()  # what a request's start does: a test's commits are not the next one's


def _connect(cluster) -> db.BoundedConnection:
    return db.connect(host="127.0.0.1", port=cluster.port, user="postgres", dbname="postgres", connect_timeout=2)


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)  # polling for the server to wake up


def test_it_gives_up_on_a_frozen_server_closes_the_connection_and_pauses_until_it_answers(armed, private_postgres):
    connection = _connect(private_postgres)
    assert connection.execute("SELECT 1").fetchone() == (1,)

    private_postgres.freeze()
    try:
        with pytest.raises(db.DatabaseTimeout, match="did not answer within 1s"):
            connection.execute("SELECT 2")
        assert connection.closed
        assert db.is_paused()
        # While paused, no new connection even tries: it would wait once more.
        with pytest.raises(db.DatabaseTimeout, match="waiting for it to answer again"):
            _connect(private_postgres)
    finally:
        private_postgres.thaw()

    _until(lambda: not db.is_paused(), "the background probe did not find the database again")
    again = _connect(private_postgres)
    assert again.execute("SELECT 3").fetchone() == (3,)
    again.close()


def test_it_says_the_outcome_is_unknown_when_a_commit_times_out(armed, private_postgres):
    connection = _connect(private_postgres)
    connection.execute("DROP TABLE IF EXISTS bound_commit")
    connection.execute("CREATE TABLE bound_commit (x int)")
    connection.commit()
    db._forget_commits()  # a new request: only the commit below counts
    connection.execute("INSERT INTO bound_commit VALUES (1)")

    private_postgres.freeze()
    try:
        with pytest.raises(db.DatabaseTimeout) as raised:
            connection.commit()
    finally:
        private_postgres.thaw()

    assert raised.value.outcome_unknown
    # And it stays unknown for the rest of the request: the pause refusing the next connection
    # (outcome known on its own) must not answer "nothing was saved" over this commit.
    with pytest.raises(db.DatabaseTimeout, match="waiting for it to answer again") as refused:
        _connect(private_postgres)
    assert not refused.value.outcome_unknown and db.outcome_unknown(refused.value)
    # Why "unknown": the server received the COMMIT before it froze, and runs it when it wakes up.
    _until(lambda: private_postgres.psql("SELECT count(*) FROM bound_commit") == "1", "the commit never landed")


def test_a_commit_with_notifications_that_times_out_is_an_unknown_outcome_too(armed, private_postgres):
    connection = _connect(private_postgres)
    connection.execute("DROP TABLE IF EXISTS bound_notify")
    connection.execute("CREATE TABLE bound_notify (x int)")
    connection.commit()
    connection.execute("INSERT INTO bound_notify VALUES (1)")

    private_postgres.freeze()
    try:
        with pytest.raises(db.DatabaseTimeout) as raised:
            connection.commit([("symphony_task", "1")])  # SELECT pg_notify(...); COMMIT in one query
    finally:
        private_postgres.thaw()

    assert raised.value.outcome_unknown
    _until(lambda: private_postgres.psql("SELECT count(*) FROM bound_notify") == "1", "the commit never landed")


def test_a_query_that_times_out_is_not_an_unknown_outcome(armed, private_postgres):
    connection = _connect(private_postgres)
    private_postgres.freeze()
    try:
        with pytest.raises(db.DatabaseTimeout) as raised:
            connection.execute("SELECT 1")
    finally:
        private_postgres.thaw()

    assert not raised.value.outcome_unknown
    assert isinstance(raised.value, psycopg.OperationalError)  # what Django maps to OperationalError


def test_it_stays_bounded_whatever_tracing_did_to_psycopg(armed, private_postgres):
    # OpenTelemetry rewraps psycopg.Connection.connect; once unwrapped, it stays bound to the base
    # class (a subclass's connect() returned an unbounded psycopg.Connection: a test run hung on it).
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    PsycopgInstrumentor().instrument()
    traced = _connect(private_postgres)
    PsycopgInstrumentor().uninstrument()
    untraced = _connect(private_postgres)

    private_postgres.freeze()
    try:
        for connection in (traced, untraced):
            assert isinstance(connection, db.BoundedConnection)
            with pytest.raises(db.DatabaseTimeout):
                connection.execute("SELECT 1")
    finally:
        private_postgres.thaw()
