import json
import logging

import pytest
import structlog

from observability import logs

RAW_KEY = "sym_0123456789ab_" + "S3cretS3cretS3cretS3cretS3cretS3cretS3cretXY"


@pytest.mark.django_db
def test_it_writes_one_json_access_line_without_any_secret(client, log_output):
    response = client.get(
        "/api/v1/nowhere/?token=hunter2",
        headers={"Authorization": f"Bearer {RAW_KEY}", "Cookie": "sessionid=cookie-secret-value"},
    )

    assert response.status_code in (401, 404)
    [line] = [line for line in log_output.lines if '"request"' in line]
    access = json.loads(line)
    assert access["method"] == "GET"
    assert access["path"] == "/api/v1/nowhere/"
    assert access["status"] == response.status_code
    assert isinstance(access["duration_ms"], float)
    assert access["request_id"] == response["X-Request-ID"]
    output = log_output.stream.getvalue()
    for secret in ("S3cret", "cookie-secret-value", "hunter2"):
        assert secret not in output


@pytest.mark.django_db
def test_it_logs_a_rejected_api_key_by_nothing_but_the_outcome(client, log_output):
    response = client.get("/health", headers={"X-API-Key": RAW_KEY})

    assert response.status_code == 401
    assert "S3cret" not in log_output.stream.getvalue()


def test_it_redacts_secrets_that_code_passes_by_mistake(log_output):
    log = structlog.get_logger("symphony.test")
    log.warning(
        "key_rejected",
        detail=f"presented {RAW_KEY}",
        password="pw-value",
        headers={"Authorization": "Bearer abcdefghijklmnop", "Accept": "json"},
        api_key=RAW_KEY,
    )

    [record] = log_output.events("key_rejected")
    assert record["password"] == logs.REDACTED
    assert record["api_key"] == logs.REDACTED
    assert record["headers"] == {"Authorization": logs.REDACTED, "Accept": "json"}
    assert record["detail"] == f"presented sym_0123456789ab_{logs.REDACTED}"
    assert record["level"] == "warning"
    assert record["logger"] == "symphony.test"


def test_it_formats_stdlib_records_the_same_way(log_output):
    logging.getLogger("some.library").error("connect failed for %s", f"Bearer {RAW_KEY}")

    [record] = log_output.events(f"connect failed for Bearer {logs.REDACTED}")
    assert record["level"] == "error"
    assert record["logger"] == "some.library"
    assert "timestamp" in record


def test_it_writes_exceptions_as_structured_tracebacks(log_output):
    log = structlog.get_logger("symphony.test")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it_failed")

    [record] = log_output.events("it_failed")
    [frame_group] = record["exception"]
    assert frame_group["exc_type"] == "ValueError"
    assert frame_group["exc_value"] == "boom"


def test_it_leaves_the_frames_local_variables_out_of_tracebacks(log_output):
    # A stdlib logger, as gunicorn logs a worker that crashed while importing the app.
    def connect(password: str) -> None:
        database_password = password  # noqa: F841 - a local variable the traceback must not show
        raise ConnectionError("connection refused")

    try:
        connect("pg-password-in-a-local")
    except ConnectionError:
        logging.getLogger("gunicorn.error").exception("Exception in worker process")

    [record] = log_output.events("Exception in worker process")
    frames = record["exception"][0]["frames"]
    assert frames[-1]["name"] == "connect"
    assert all("locals" not in frame for frame in frames)
    assert "pg-password-in-a-local" not in log_output.stream.getvalue()


def test_it_renders_console_lines_in_development():
    record = logging.makeLogRecord({"name": "dev", "levelno": logging.INFO, "levelname": "INFO", "msg": "hello"})

    line = logs.make_formatter(logs.CONSOLE).format(record)

    assert "hello" in line
    assert not line.startswith("{")


def test_it_refuses_an_unknown_log_format():
    with pytest.raises(ValueError, match="log format"):
        logs.logging_config("INFO", "xml")


def test_it_drops_debug_lines_below_the_configured_level(log_output):
    logging.getLogger().setLevel(logging.INFO)
    structlog.get_logger("symphony.test").debug("too_chatty")
    structlog.get_logger("symphony.test").info("worth_it")

    assert log_output.events("too_chatty") == []
    assert len(log_output.events("worth_it")) == 1
