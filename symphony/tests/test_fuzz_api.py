"""Fuzz the live OpenAPI schema with schemathesis, as a super_admin key and as a viewer key.

Every operation gets bounded positive (schema-valid) and negative (schema-violating) examples through
the real WSGI stack. Checks: no 5xx, status codes / content types / headers / bodies as documented,
405 for undocumented methods; and a viewer's requests never change a row (audit and sessions aside).

Excluded checks, by policy: ``positive_data_acceptance`` (valid-by-schema input may still be refused
by rules the schema cannot state: unknown references, state conflicts, escalation) and
``negative_data_rejection`` (DRF accepts some inputs stricter schemas would not, e.g. extra body fields).
"""

from __future__ import annotations

import os

import hypothesis
import pytest
import schemathesis
from django.apps import apps
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, connection
from hypothesis import HealthCheck, Phase
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

EXAMPLES = int(os.environ.get("SYMPHONY_FUZZ_EXAMPLES", "12"))
EXCLUDED_CHECKS = [positive_data_acceptance, negative_data_rejection]
#: Rows a read may legitimately write: the audit trail (denials are audited) and sessions.
UNWATCHED_TABLES = {"audit_auditevent", "django_session"}


@pytest.fixture
def wsgi_schema(settings):
    """The live schema, served by the app under test, with requests run in the test's transaction."""
    settings.SYMPHONY_RATELIMIT_DEFAULT = "1000000/15m"  # fuzz the endpoints, not the limiter
    # The WSGI handler would close the test transaction's connection at the end of each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _row_counts() -> dict[str, int]:
    counts = {}
    with connection.cursor() as cursor:
        for model in apps.get_models(include_auto_created=True):
            table = model._meta.db_table
            if table in UNWATCHED_TABLES or model._meta.proxy or not model._meta.managed:
                continue
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608 - model tables
            counts[table] = cursor.fetchone()[0]
    return counts


def _fuzz(schema, raw_key: str, *, read_only: bool) -> tuple[int, dict[str, str]]:
    """Run every operation's examples; return the number of calls and the failures by operation."""
    headers = {"Authorization": f"Bearer {raw_key}"}
    calls, failures = 0, {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                nonlocal calls
                before = _row_counts() if read_only else None
                case.call_and_validate(headers=headers, excluded_checks=EXCLUDED_CHECKS)
                calls += 1
                if read_only:
                    assert _row_counts() == before, f"{case.method} {case.formatted_path} changed rows"

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # collect every failure, report them together
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:1500]
    return calls, failures


def _report(failures: dict[str, str]) -> str:
    return "\n\n".join(f"== {label}\n{message}" for label, message in failures.items())


@pytest.fixture(autouse=True)
def _needs_operations(wsgi_schema):
    if not any(True for _ in wsgi_schema.get_all_operations()):
        pytest.skip("the schema has no API operations to fuzz yet")


def test_it_survives_fuzzing_as_a_super_admin(wsgi_schema, make_key):
    calls, failures = _fuzz(wsgi_schema, make_key("super_admin"), read_only=False)

    assert failures == {}, _report(failures)
    assert calls > 0


def test_it_changes_nothing_when_a_viewer_fuzzes(wsgi_schema, make_key):
    calls, failures = _fuzz(wsgi_schema, make_key("viewer"), read_only=True)

    assert failures == {}, _report(failures)
    assert calls > 0
