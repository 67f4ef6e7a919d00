"""Fuzz the live OpenAPI schema with schemathesis, as a super_admin key and as a viewer key.

Every operation gets bounded positive (schema-valid) and negative (schema-violating) examples through
the real WSGI stack. Checks: no 5xx, status codes / content types / headers / bodies as documented,
405 for undocumented methods; and a viewer's requests never insert, update or delete a row (the
audit trail, sessions, the key's last-use time and the viewer's own API keys aside).

One check is excluded, by policy (docs/api.md, "Fuzzing the contract"): ``positive_data_acceptance``
(ST202): input valid by the schema may still be refused, rightly, by rules a schema cannot state: a
reference to an object that does not exist or is another project's, a page past the end, a cross-field
rule (``until`` before ``since``), a state conflict, an escalation. ``negative_data_rejection`` (ST201)
runs: every schema-violating request must be refused (request bodies are closed, boolean filters, page
sizes and 64-bit integer filters are strict).
"""

from __future__ import annotations

import os
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from django.apps import apps
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from accounts.keys import hash_key

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

EXAMPLES = int(os.environ.get("SYMPHONY_FUZZ_EXAMPLES", "8"))
EXCLUDED_CHECKS = [positive_data_acceptance]
#: Rows a read may legitimately write: the audit trail (denials are audited) and sessions.
UNWATCHED_TABLES = {"audit_auditevent", "django_session"}
#: Columns a read may touch: the key's last use (written at most once a minute) and the last login.
UNWATCHED_COLUMNS = {"last_used_at", "last_login"}
#: Rows a viewer may change because they are the viewer's own: table -> lookup to their owner.
OWN_ROWS = {"accounts_apikey": "owner", "accounts_apikey_scopes": "apikey__owner"}


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


def _snapshot(viewer: Any) -> dict[str, int]:
    """A fingerprint of every watched table's rows, so an insert, update or delete shows.

    The viewer's own API keys are left out: owners manage their own keys (docs/identity.md).
    """
    snapshot = {}
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        if meta.db_table in UNWATCHED_TABLES or meta.proxy or not meta.managed:
            continue
        fields = [f.attname for f in meta.concrete_fields if f.attname not in UNWATCHED_COLUMNS]
        rows = model._base_manager.order_by("pk")
        if meta.db_table in OWN_ROWS:
            rows = rows.exclude(**{OWN_ROWS[meta.db_table]: viewer})
        snapshot[meta.db_table] = hash(repr(list(rows.values_list(*fields))))
    return snapshot


def _fuzz(schema, raw_key: str, *, read_only: bool) -> tuple[int, dict[str, str]]:
    """Run every operation's examples; return the number of calls and the failures by operation.

    ``read_only``: also fail when a request changes a row other than the key owner's own keys.
    """
    from accounts.models import ApiKey

    viewer = ApiKey.objects.get(key_hash=hash_key(raw_key)).owner
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
                before = _snapshot(viewer) if read_only else None
                case.call_and_validate(headers=headers, excluded_checks=EXCLUDED_CHECKS)
                calls += 1
                if read_only:
                    assert _snapshot(viewer) == before, f"{case.method} {case.formatted_path} changed rows"

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                # Nothing to make invalid: no parameters, no body and no authentication (the API root).
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as exc:  # collect every failure, report them together
                failures[f"{operation.label} ({mode.value})"] = _describe(exc)
    return calls, failures


def _describe(exc: BaseException) -> str:
    parts = [str(exc)]
    parts += [_describe(inner) for inner in getattr(exc, "exceptions", ())]  # Flaky hides the real failure
    return "\n".join(parts)[:3000]


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
