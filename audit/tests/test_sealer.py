"""The background sealer on PostgreSQL: writer processes, processes that exit, events a killed process left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.db import connection, transaction

import audit
from audit.models import AuditEvent
from audit.verification import verify_chain
from tests.servers import ROOT, app_env

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

#: A writer process: ``count`` events, each in its own transaction; then either stays alive until
#: told to exit (a line on stdin), or exits at once. Its sealer's batch window comes from the
#: environment (``SYMPHONY_AUDIT_SEAL_INTERVAL``), as in a deployment.
WRITER = """
import os, sys
import django
django.setup()
from django.db import transaction
import audit
n, count, then = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for i in range(count):
    with transaction.atomic():
        audit.record("task.claimed", resource_type="agents.task", resource_id=f"{n}-{i}")
print("written", flush=True)
if then == "wait":
    sys.stdin.readline()
"""


def _writers(tmp_path: Path, count: int, per_writer: int, then: str, interval: float) -> list[subprocess.Popen]:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = app_env(
        tmp_path,
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="symphony.settings",
        LOG_LEVEL="WARNING",
        SYMPHONY_AUDIT_SEAL_INTERVAL=str(interval),
    )
    return [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(n), str(per_writer), then],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for n in range(count)
    ]


def test_several_writer_processes_end_with_every_event_sealed_in_one_chain(tmp_path, settings, audit_sealing):
    writers = _writers(tmp_path, 4, 30, "wait", settings.SYMPHONY_AUDIT_SEAL_INTERVAL)
    for writer in writers:
        assert writer.stdout.readline().strip() == "written", writer.stdout.read()
    # Every writer is still alive: their background sealers, not an exit flush, seal the events.
    audit_sealing.wait()
    result = verify_chain(seal=False)
    assert result.ok, result
    assert (result.checked, result.unsealed) == (120, 0)
    ids = set(AuditEvent.objects.values_list("resource_id", flat=True))
    assert ids == {f"{n}-{i}" for n in range(4) for i in range(30)}
    for writer in writers:
        writer.communicate("\n", timeout=60)
        assert writer.returncode == 0


def test_a_process_exiting_right_after_recording_leaves_nothing_unsealed(tmp_path):
    # A batch window of an hour: once the first round is past, only the exit flush can seal the rest.
    [writer] = _writers(tmp_path, 1, 5, "exit", 3600)
    output, _ = writer.communicate(timeout=120)
    assert writer.returncode == 0, output
    result = verify_chain(seal=False)  # nothing sealed here: the process did it before exiting
    assert result.ok, result
    assert (result.checked, result.unsealed) == (5, 0)


def test_events_a_killed_process_left_unsealed_are_sealed_by_the_next_sealer(settings, audit_sealing):
    settings.SYMPHONY_AUDIT_SEAL_IDLE_POLL = 0.2
    with transaction.atomic():
        audit.record("system.started")
    audit_sealing.wait()
    # A row committed by a process that died before its sealer ran: nothing in this process is woken.
    params = connection.settings_dict
    with psycopg.connect(
        host=params["HOST"] or None, port=params["PORT"] or None, dbname=params["NAME"], user=params["USER"]
    ) as other:
        other.execute(
            "INSERT INTO audit_auditevent (occurred_at, event_type, severity, outcome, actor_name, api_key_prefix,"
            " user_agent, resource_type, resource_id, action, details, request_id, trace_id, prev_hash, project)"
            " VALUES (now(), 'auth.login', 'info', 'success', 'orphan', '', '', '', '', '', '{}', '', '', '', '')"
        )
    audit_sealing.wait()  # the idle poll of this process's sealer finds it
    assert AuditEvent.objects.get(actor_name="orphan").chain_seq == 2
    assert verify_chain(seal=False).ok
