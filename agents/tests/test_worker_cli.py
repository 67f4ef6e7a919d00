"""The ``symphony-agent`` command: what it says, how it is configured, and how it refuses to run."""

from __future__ import annotations

import re
import textwrap
from datetime import timedelta

import pytest
from django.utils import timezone
from symphony_agent import __version__
from symphony_agent.config import ConfigError, load

from accounts.models import ApiKey
from accounts.services.api_keys import api_key_revoke
from agents.models import Task
from agents.tests.factories import TaskFactory
from audit.models import AuditEvent
from tests.servers import ChatCompletionsStub, free_port, tcp_relay
from tests.workers import AGENT_COMMAND, AgentProcess, run_agent_command, wait_for


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# --- without a server --------------------------------------------------------------------------------


def test_it_prints_its_version():
    result = run_agent_command("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"symphony-agent {__version__}")


def test_it_shows_each_default_and_variable_in_help():
    result = run_agent_command("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert (
        "--poll-interval S seconds between claims while idle (±20% jitter) "
        "(default: 1.0; env SYMPHONY_AGENT_POLL_INTERVAL)" in text
    )
    assert "(default: 1; env SYMPHONY_AGENT_CONCURRENCY)" in text
    assert "--url URL Symphony's base URL, e.g. https://symphony.example.com (required; env SYMPHONY_AGENT_URL)" in text
    for flag in ["--version", "--log-level", "--once", "--demo", "--config", "--key-file", "--max-backoff"]:
        assert flag in text


def test_it_refuses_a_missing_key_file_in_one_line(tmp_path):
    missing = tmp_path / "agent.key"
    result = run_agent_command("--url", "http://127.0.0.1:9", "--demo", "--key-file", str(missing))
    assert result.returncode == 2
    assert one_line(result.stderr) == f"symphony-agent: cannot read the key file {missing}: No such file or directory"
    assert result.stdout == ""


def test_it_refuses_an_empty_key_file(tmp_path):
    (tmp_path / "agent.key").write_text("\n")
    result = run_agent_command("--url", "http://127.0.0.1:9", "--demo", "--key-file", str(tmp_path / "agent.key"))
    assert result.returncode == 2
    assert "is empty" in one_line(result.stderr)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def broken(:\n", "SyntaxError: invalid syntax"),
        (
            "import a_module_that_is_not_installed\n",
            "ModuleNotFoundError: No module named 'a_module_that_is_not_installed'",
        ),
        ("raise RuntimeError('no API token in this environment')\n", "RuntimeError: no API token in this environment"),
    ],
)
def test_it_refuses_a_handler_module_that_does_not_import_in_one_line(tmp_path, source, expected):
    (tmp_path / "myhandlers.py").write_text(source)
    env = {"SYMPHONY_AGENT_KEY": "sym_abcd1234_secret"}
    result = run_agent_command("--url", "http://127.0.0.1:9", "--handlers", "myhandlers", env=env, cwd=tmp_path)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("symphony-agent: cannot import handler module 'myhandlers': ")
    assert expected in line
    assert "Traceback" not in result.stderr + result.stdout


def test_it_refuses_to_run_without_handlers():
    result = run_agent_command("--url", "http://127.0.0.1:9", env={"SYMPHONY_AGENT_KEY": "sym_abcd1234_secret"})
    assert result.returncode == 2
    assert "no handlers to run: give --handlers MODULE (repeatable), or --demo" in one_line(result.stderr)


def test_the_chat_example_refuses_to_start_without_a_model():
    env = {"SYMPHONY_AGENT_KEY": "sym_abcd1234_secret"}
    result = run_agent_command("--url", "http://127.0.0.1:9", "--handlers", "symphony_agent.examples.chat", env=env)
    assert result.returncode == 2
    assert "set SYMPHONY_CHAT_MODEL" in one_line(result.stderr)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--concurrency", "0"], {}, "--concurrency must be more than 0, not '0'"),
        ([], {"SYMPHONY_AGENT_POLL_INTERVAL": "soon"}, "SYMPHONY_AGENT_POLL_INTERVAL must be a number, not 'soon'"),
        ([], {"SYMPHONY_AGENT_URL": "symphony.example.com"}, "must start with http:// or https://"),
        ([], {"SYMPHONY_AGENT_LOG_LEVEL": "loud"}, "must be one of debug, info, warning, error"),
    ],
)
def test_it_refuses_a_bad_setting_naming_it(args, env, expected):
    env = {"SYMPHONY_AGENT_KEY": "sym_abcd1234_secret", "SYMPHONY_AGENT_URL": "http://127.0.0.1:9", **env}
    result = run_agent_command("--demo", *args, env=env)
    assert result.returncode == 2
    assert expected in one_line(result.stderr)


def test_it_refuses_an_unknown_setting_in_the_config_file(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text('url = "http://127.0.0.1:9"\nconcurrency = 2\npoll_intervall = 3\n')
    result = run_agent_command("--config", str(config), "--demo", env={"SYMPHONY_AGENT_KEY": "sym_abcd1234_secret"})
    assert result.returncode == 2
    assert one_line(result.stderr) == f"symphony-agent: unknown setting(s) in the config file {config}: poll_intervall"


def test_settings_come_from_flags_then_the_environment_then_the_file(tmp_path):
    (tmp_path / "file.key").write_text("sym_file0000_secret\n")
    (tmp_path / "flag.key").write_text("sym_flag0000_secret\n")
    config = tmp_path / "agent.toml"
    config.write_text(
        textwrap.dedent(f"""\
            url = "http://file.example"
            key_file = "{tmp_path / "file.key"}"
            concurrency = 3
            handlers = ["a", "b"]
            log-level = "debug"
        """)
    )
    none = dict.fromkeys(["url", "key", "key_file", "concurrency", "handlers", "log_level"])
    env = {
        "SYMPHONY_AGENT_CONFIG": str(config),
        "SYMPHONY_AGENT_CONCURRENCY": "5",
        "SYMPHONY_AGENT_KEY": "sym_env0000_s",
    }

    from_file = load(none, {"SYMPHONY_AGENT_CONFIG": str(config)})
    assert (from_file.url, from_file.key, from_file.concurrency) == ("http://file.example", "sym_file0000_secret", 3)
    assert (from_file.handlers, from_file.log_level, from_file.poll_interval) == (["a", "b"], "debug", 1.0)

    from_env = load(none, env)
    assert (from_env.concurrency, from_env.key, from_env.url) == (5, "sym_env0000_s", "http://file.example")

    flags = {**none, "concurrency": "7", "key_file": str(tmp_path / "flag.key"), "handlers": ["c,d", "e"]}
    from_flags = load(flags, env)
    assert (from_flags.concurrency, from_flags.key, from_flags.handlers) == (7, "sym_flag0000_secret", ["c", "d", "e"])

    with pytest.raises(ConfigError, match="both a key and a key file"):
        load({**none, "url": "http://x.example", "key": "sym_a_b", "key_file": "/k"}, {})
    with pytest.raises(ConfigError, match="no agent key"):
        load({**none, "url": "http://x.example"}, {})


# --- against a live server ---------------------------------------------------------------------------


def _expire(key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))


@pytest.mark.parametrize(
    ("spoil", "code"),
    [
        (lambda agent: api_key_revoke(actor=agent.agent.owner, key=agent.agent.api_key), "api_key_revoked"),
        (lambda agent: _expire(agent.agent.api_key), "api_key_expired"),
        (None, "api_key_invalid"),
    ],
    ids=["revoked", "expired", "invalid"],
)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.postgres
def test_it_exits_2_at_once_for_a_key_the_server_refuses(live_server, make_agent, orchestra, spoil, code):
    worker = make_agent(capabilities=["echo"], orchestra=orchestra)
    key = worker.key if spoil else worker.key[: worker.key.rindex("_") + 1] + "A" * 43  # well-formed, wrong
    if spoil:
        spoil(worker)
    prefix = worker.agent.api_key.prefix
    before = AuditEvent.objects.filter(api_key_prefix=prefix).count()
    result = run_agent_command("--url", live_server.url, "--demo", env={"SYMPHONY_AGENT_KEY": key}, timeout=30)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith(f"symphony-agent: {live_server.url} refused the agent key sym_{prefix}: ")
    assert line.endswith(f"({code})")
    assert key.split("_", 2)[2] not in result.stderr + result.stdout  # the secret part
    # One try, so one audit event: no retry loop writing the trail full.
    assert AuditEvent.objects.filter(api_key_prefix=prefix).count() - before == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.postgres
def test_it_exits_2_for_a_key_bound_to_no_agent(live_server, make_api):
    api = make_api("operator")
    result = run_agent_command("--url", live_server.url, "--demo", env={"SYMPHONY_AGENT_KEY": api.key}, timeout=30)
    assert result.returncode == 2
    assert one_line(result.stderr).endswith("(agent_key_required)")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.postgres
def test_it_exits_2_when_its_key_is_revoked_while_running(live_server, make_agent, orchestra):
    worker = make_agent(capabilities=["echo"], orchestra=orchestra)
    command = [AGENT_COMMAND, "--url", live_server.url, "--demo", "--poll-interval", "0.1"]
    process = AgentProcess(command, env={"SYMPHONY_AGENT_KEY": worker.key})
    try:
        process.wait_for_lines("worker started")
        api_key_revoke(actor=worker.agent.owner, key=worker.agent.api_key)
        assert process.wait(timeout=30) == 2
    finally:
        process.stop()
    assert process.matching("refused the agent key .*api_key_revoked")
    # The calls already on their way when the key went (a claim, perhaps a heartbeat), then nothing.
    assert AuditEvent.objects.filter(event_type="auth.failed", api_key_prefix=worker.agent.api_key.prefix).count() <= 3


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.postgres
def test_it_runs_what_is_there_and_exits_with_once(live_server, make_agent, orchestra):
    worker = make_agent(capabilities=["echo"], orchestra=orchestra)
    tasks = [TaskFactory(orchestra=orchestra, kind="echo", input={"n": n}) for n in range(5)]
    env = {"SYMPHONY_AGENT_KEY": worker.key}
    result = run_agent_command("--url", live_server.url, "--demo", "--once", "--concurrency", "2", env=env)
    assert result.returncode == 0, result.stderr
    for task in tasks:
        task.refresh_from_db()
        assert (task.status, task.result) == ("succeeded", task.input)
    lines = result.stderr.strip().splitlines()
    assert all(f"[{worker.agent.name}]" in line for line in lines), result.stderr
    assert not any("nothing to run" in line for line in lines)  # idle polls are debug only
    assert "worker stopped: {'succeeded': 5" in result.stderr


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.postgres
def test_it_logs_idle_polls_at_debug_level_only(live_server, make_agent, orchestra):
    worker = make_agent(capabilities=["echo"], orchestra=orchestra)
    env = {"SYMPHONY_AGENT_KEY": worker.key}
    quiet = run_agent_command("--url", live_server.url, "--demo", "--once", env=env)
    chatty = run_agent_command("--url", live_server.url, "--demo", "--once", "--log-level", "debug", env=env)
    assert (quiet.returncode, chatty.returncode) == (0, 0)
    assert "nothing to run" not in quiet.stderr
    assert f"DEBUG [{worker.agent.name}] symphony_agent: claim: nothing to run" in chatty.stderr


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.postgres
def test_it_waits_for_a_server_that_is_down_and_says_so_once(live_server, make_agent, orchestra):
    worker = make_agent(capabilities=["echo"], orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra, kind="echo", input={"hi": 1})
    port = free_port()
    command = [AGENT_COMMAND, "--url", f"http://127.0.0.1:{port}", "--demo", "--log-level", "debug"]
    process = AgentProcess([*command, "--max-backoff", "0.2"], env={"SYMPHONY_AGENT_KEY": worker.key})
    try:
        process.wait_for_lines(r"heartbeat: next try in", count=5)
        with tcp_relay(port, int(live_server.url.rsplit(":", 1)[1])):
            process.wait_for_lines("server answering again")
            wait_for(lambda: Task.objects.get(pk=task.pk).status == "succeeded", what="the task done")
    finally:
        assert process.stop() == 0, process.output
    assert len(process.matching("WARNING .*server unreachable")) == 1, process.output
    assert len(process.matching("INFO .*server answering again")) == 1, process.output
    assert process.matching(r"worker started")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.postgres
def test_it_honours_retry_after_when_rate_limited(live_server, make_agent, orchestra):
    worker = make_agent(capabilities=["echo"], orchestra=orchestra)
    ApiKey.objects.filter(pk=worker.agent.api_key.pk).update(rate_limit="3/m")
    command = [AGENT_COMMAND, "--url", live_server.url, "--demo", "--log-level", "debug", "--poll-interval", "0.1"]
    process = AgentProcess(command, env={"SYMPHONY_AGENT_KEY": worker.key})
    try:
        [line] = process.wait_for_lines(r"claim: next try in .* \(Retry-After")
        # A SIGTERM ends the wait at once, whatever the server asked for.
        assert process.stop(timeout=15) == 0
    finally:
        process.stop()
    delay, retry_after = (float(x) for x in re.search(r"in ([\d.]+)s \(Retry-After ([\d.]+)s", line).groups())
    assert 1 <= retry_after <= 60
    assert retry_after <= delay <= retry_after * 1.1
    assert len(process.matching("WARNING .*server rate limited")) == 1, process.output


def test_it_exits_2_when_the_url_is_not_symphony():
    with ChatCompletionsStub() as other:  # some other HTTP server: 404 for the agent protocol
        url = other.base_url.removesuffix("/v1")
        result = run_agent_command("--url", url, "--demo", env={"SYMPHONY_AGENT_KEY": "sym_abcd1234abcd_secret"})
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith(f"symphony-agent: {url} refused the worker's first call: POST agent/heartbeat/: 404")
    assert line.endswith("(is --url Symphony's base URL?)")
