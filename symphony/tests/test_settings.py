import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from symphony.env import env_bool, env_float, env_int, env_list, env_secret


def test_it_parses_booleans_strictly(monkeypatch):
    monkeypatch.setenv("X_FLAG", "true")
    assert env_bool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "0")
    assert env_bool("X_FLAG", True) is False
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env_bool("X_FLAG", False)


def test_it_names_the_variable_of_a_bad_integer(monkeypatch):
    monkeypatch.setenv("X_NUM", "ten")
    with pytest.raises(ImproperlyConfigured, match="X_NUM"):
        env_int("X_NUM", 1)


@pytest.mark.parametrize("raw", ["soon", "nan", "inf", "-1"])
def test_it_names_the_variable_of_a_bad_or_too_small_number(monkeypatch, raw):
    monkeypatch.setenv("X_SECONDS", raw)
    with pytest.raises(ImproperlyConfigured, match=f"X_SECONDS .*{raw}"):
        env_float("X_SECONDS", 1.0, minimum=0.0)
    monkeypatch.setenv("X_SECONDS", "0.25")
    assert env_float("X_SECONDS", 1.0, minimum=0.0) == 0.25


def test_it_splits_lists_and_reads_secret_files(monkeypatch, tmp_path):
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert env_list("X_LIST") == ["a", "b", "c"]
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert env_secret("X_SECRET") == "s3cret"


def _import_settings(env: dict[str, str], var_dir=None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "SECRET_KEY_FILE", "DEBUG"}}
    if var_dir is not None:
        clean["SYMPHONY_VAR_DIR"] = str(var_dir)
    return subprocess.run(
        [sys.executable, "-c", "import symphony.settings"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off(tmp_path):
    result = _import_settings({"DEBUG": "false"}, var_dir=tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert f"{tmp_path}/secret_key" in result.stderr


def test_manage_py_finds_the_key_make_run_generated(tmp_path, settings):
    """`make run` writes var/secret_key and exports SECRET_KEY_FILE for its own processes; a command
    typed later in another shell (create_api_key, run_agent) finds the same key without it."""
    (tmp_path / "secret_key").write_text("k" * 60 + "\n")
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "SECRET_KEY_FILE", "DEBUG"}}
    script = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**clean, "SYMPHONY_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "symphony.settings"},
        capture_output=True,
        text=True,
        check=False,
    )
    command = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "--help"],
        env={**clean, "SYMPHONY_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        cwd=settings.BASE_DIR,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "k" * 60
    assert command.returncode == 0, command.stderr
    assert "--rate-limit" in command.stdout


def test_it_refuses_a_short_secret_key_in_production():
    result = _import_settings({"DEBUG": "false", "SECRET_KEY": "short"})
    assert result.returncode != 0
    assert "at least 32 characters" in result.stderr


def test_it_starts_with_a_real_secret_key():
    result = _import_settings({"DEBUG": "false", "SECRET_KEY": "x" * 50})
    assert result.returncode == 0, result.stderr
