import json
import logging
from contextlib import contextmanager

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


# --- no secret in any log line ---------------------------------------------------------------------

USER_PASSWORD = "Plaintext-User-Pw-8d1f3"


@pytest.fixture
def restored_secrets():
    """make_formatter() reads the configured secrets into the module: give them back afterwards."""
    saved = logs._secrets
    yield
    logs._secrets = saved


@contextmanager
def listening(log_output, *names: str):
    """Also capture loggers that do not propagate to the root (django.request, django.security.*)."""
    [handler] = [h for h in logging.getLogger().handlers if getattr(h, "stream", None) is log_output.stream]
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def _frames(record: dict) -> list[dict]:
    return [frame for group in record.get("exception", []) for frame in group.get("frames", [])]


@pytest.mark.django_db
def test_it_logs_a_failing_user_creation_without_the_password_or_any_local_variable(
    client, admin_user, log_output, monkeypatch
):
    # user_create holds the plaintext password in a local variable when audit.record fails under it.
    def broken_record(*args, **kwargs):
        raise RuntimeError("the audit store broke")

    client.raise_request_exception = False
    client.force_login(admin_user)
    monkeypatch.setattr("audit.record", broken_record)

    with listening(log_output, "django.request"):
        response = client.post(
            "/api/v1/users/", {"username": "newcomer", "password": USER_PASSWORD}, content_type="application/json"
        )

    assert response.status_code == 500
    [error] = [record for record in log_output.records() if record.get("exception")]
    assert error["logger"] == "django.request" and error["level"] == "error"
    assert _frames(error), "the traceback is logged"
    assert all("locals" not in frame for frame in _frames(error))
    assert error["request"] == "POST /api/v1/users/"
    assert USER_PASSWORD not in log_output.stream.getvalue()


def test_it_renders_console_tracebacks_without_local_variables():
    def fail(password: str) -> None:
        raise ValueError("no")

    try:
        fail(USER_PASSWORD)
    except ValueError:
        import sys

        record = logging.makeLogRecord(
            {"name": "dev", "levelno": logging.ERROR, "levelname": "ERROR", "msg": "failed", "exc_info": sys.exc_info()}
        )

    line = logs.make_formatter(logs.CONSOLE).format(record)

    assert "ValueError" in line
    assert USER_PASSWORD not in line


def test_it_masks_the_configured_secrets_and_url_passwords_anywhere(monkeypatch, tmp_path, restored_secrets):
    key_file = tmp_path / "secret_key"
    key_file.write_text("file-held-secret-key-value\n")
    monkeypatch.setenv("DATABASE_URL", "postgres://symphony:Db%2FPass-77aa@db.internal:5432/symphony")
    monkeypatch.setenv("REDIS_URL", "redis://:Redis-Pass-88bb@cache.internal:6379/0")
    monkeypatch.setenv("SECRET_KEY_FILE", str(key_file))
    monkeypatch.setenv("OIDC_CLIENT_SECRET", "oidc-client-secret-99cc")
    formatter = logs.make_formatter(logs.JSON)
    record = logging.makeLogRecord(
        {
            "name": "some.library",
            "levelno": logging.ERROR,
            "levelname": "ERROR",
            "msg": "cannot reach %s (auth Db/Pass-77aa, Redis-Pass-88bb) with %s and %s",
            "args": ("amqp://guest:guest-pw@mq:5672//", "file-held-secret-key-value", "oidc-client-secret-99cc"),
        }
    )

    line = formatter.format(record)

    for secret in ("Db/Pass-77aa", "Db%2FPass-77aa", "Redis-Pass-88bb", "guest-pw", "file-held", "oidc-client"):
        assert secret not in line
    assert "amqp://guest:[REDACTED]@mq:5672//" in json.loads(line)["event"]


def test_it_blanks_values_under_secret_sounding_keys(log_output):
    structlog.get_logger("symphony.test").info(
        "configured", new_password="pw-1", database_url="postgres://x", client_secret="cs", prompt_tokens=12
    )

    [record] = log_output.events("configured")
    assert record["new_password"] == record["database_url"] == record["client_secret"] == logs.REDACTED
    assert record["prompt_tokens"] == 12


@pytest.mark.django_db
def test_it_logs_an_invalid_host_as_one_warning_without_a_traceback(client, log_output):
    client.raise_request_exception = False
    with listening(log_output, "django.security.DisallowedHost"):
        response = client.get("/admin/", headers={"Host": "evil.example"})

    assert response.status_code == 400
    [record] = [r for r in log_output.records() if r["logger"] == "django.security.DisallowedHost"]
    assert record["level"] == "warning"
    assert "exception" not in record
    assert "evil.example" in record["event"]
