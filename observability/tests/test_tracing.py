import pytest
from opentelemetry import trace

from observability import tracing
from observability.tests.otlp_receiver import OtlpReceiver

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
OTEL_VARS = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
)


@pytest.fixture
def otel_env(monkeypatch):
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _server_span(exporter, route_fragment):
    matching = [s for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert matching, [s.name for s in exporter.get_finished_spans()]
    [span] = [s for s in matching if route_fragment in s.name]
    return span


@pytest.mark.django_db
def test_it_continues_an_incoming_traceparent(client, spans, log_output):
    response = client.get("/health", headers={"traceparent": TRACEPARENT})

    assert response.status_code == 200
    span = _server_span(spans, "health")
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT_ID
    [access] = log_output.events("request")
    assert access["trace_id"] == TRACE_ID
    assert access["span_id"] == format(span.context.span_id, "016x")


@pytest.mark.django_db
def test_it_does_not_trace_probes_or_scrapes(client, spans):
    client.get("/health/live")
    client.get("/metrics")

    assert [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER] == []


@pytest.mark.django_db
def test_it_keeps_health_check_queries_out_of_traces(client, spans):
    assert client.get("/health/ready").status_code == 200
    assert client.get("/health").status_code == 200

    assert [s.name for s in spans.get_finished_spans() if s.kind != trace.SpanKind.SERVER] == []


@pytest.mark.redis
@pytest.mark.django_db
def test_it_traces_redis_commands(client, spans):
    from django.core.cache import cache

    with tracing.span("warm_cache"):
        cache.set("tracing-probe", "1")

    assert any(s.attributes.get("db.system") == "redis" for s in spans.get_finished_spans())


@pytest.mark.redis
def test_the_cache_breakers_probe_is_not_traced(spans):
    from django.core.cache import cache

    with tracing.span("outage_probe"):
        cache.ping()  # what the breaker's probe thread sends every second while Redis is down

    assert [s.name for s in spans.get_finished_spans()] == ["outage_probe"]


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_traces_postgresql_queries(spans):
    import threading

    from django.db import connections

    def query_on_a_new_connection():
        try:
            with tracing.span("probe_query"), connections["default"].cursor() as cursor:
                cursor.execute("SELECT 42")
        finally:
            connections["default"].close()

    thread = threading.Thread(target=query_on_a_new_connection)
    thread.start()
    thread.join()

    db_spans = [s for s in spans.get_finished_spans() if s.attributes.get("db.system") == "postgresql"]
    assert any("SELECT" in s.name for s in db_spans), [s.name for s in spans.get_finished_spans()]


def test_it_opens_symphony_spans_with_attributes(spans):
    with tracing.span("task_submit", task_kind="summarise", priority=3) as span:
        traceparent = tracing.current_traceparent()

    [finished] = spans.get_finished_spans()
    assert finished.name == "task_submit"
    assert dict(finished.attributes) == {"task_kind": "summarise", "priority": 3}
    assert traceparent.startswith(f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-")


def test_it_continues_a_stored_traceparent_in_a_worker(spans):
    with tracing.span("task_submit"):
        stored = tracing.current_traceparent()

    with tracing.span("task_claim", context=tracing.context_from_traceparent(stored)):
        pass

    submit, claim = spans.get_finished_spans()
    assert claim.context.trace_id == submit.context.trace_id
    assert claim.parent.span_id == submit.context.span_id


def test_it_is_a_cheap_no_op_when_tracing_is_off():
    with tracing.span("task_submit", task_kind="x") as span:
        span.set_attribute("ignored", True)
        assert tracing.current_traceparent() == ""

    assert not span.get_span_context().is_valid
    assert tracing.span("a") is tracing.span("b")


@pytest.mark.parametrize("bad", ["", None, "garbage", "00-zz-yy-01", f"00-{'0' * 32}-{PARENT_ID}-01"])
def test_it_ignores_a_malformed_traceparent(bad):
    assert tracing.context_from_traceparent(bad) is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, None),
    ],
)
def test_it_chooses_the_exporter_from_otel_variables_only(otel_env, env, expected):
    for name, value in env.items():
        otel_env.setenv(name, value)

    assert tracing.exporter_name() == expected


@pytest.mark.parametrize(
    ("protocol", "module"),
    [
        ("http/protobuf", "opentelemetry.exporter.otlp.proto.http.trace_exporter"),
        ("grpc", "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"),
    ],
)
def test_it_speaks_the_configured_otlp_protocol(otel_env, protocol, module):
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    otel_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)

    exporter = tracing.build_exporter()

    assert type(exporter).__module__ == module
    exporter.shutdown()


def test_it_refuses_an_unknown_protocol(otel_env):
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    otel_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")

    with pytest.raises(ValueError, match="http/json"):
        tracing.build_exporter()


def test_it_stays_off_without_otel_variables(otel_env, monkeypatch):
    monkeypatch.setattr(tracing, "_configured_pid", None)

    assert tracing.configure_tracing() is False
    assert tracing.is_enabled() is False


def test_it_sends_real_otlp_http_to_a_collector(otel_env):
    with OtlpReceiver() as receiver:
        otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        otel_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        otel_env.setenv("OTEL_SERVICE_NAME", "symphony-test")
        provider = tracing.build_provider()  # the exporter comes from the variables alone
        with provider.get_tracer("test").start_as_current_span("task_complete", attributes={"task_id": 7}):
            pass
        assert provider.force_flush(10_000)
        provider.shutdown()

    [(path, headers, _message)] = receiver.requests
    assert path == "/v1/traces"
    assert headers["content-type"] == "application/x-protobuf"
    [(resource, span)] = receiver.spans()
    assert resource["service.name"] == "symphony-test"
    assert resource["service.version"]
    assert span.name == "task_complete"
    assert [(a.key, a.value.int_value) for a in span.attributes] == [("task_id", 7)]
