"""config/gunicorn.conf.py read as gunicorn reads it: settings from the environment, and its hooks."""

from __future__ import annotations

import multiprocessing
import os
import runpy
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

CONFIG = Path(__file__).resolve().parents[2] / "config" / "gunicorn.conf.py"
KNOBS = (
    "PORT",
    "GUNICORN_BIND",
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "GUNICORN_ACCESSLOG",
    "GUNICORN_CONTROL_SOCKET",
    "PROMETHEUS_MULTIPROC_DIR",
    "SYMPHONY_OWNED_PROMETHEUS_DIR",
)


@pytest.fixture
def load_config(monkeypatch):
    for name in KNOBS:
        monkeypatch.setenv(name, "")  # recorded, so whatever the config sets is undone after the test
        monkeypatch.delenv(name)
    monkeypatch.setenv("SYMPHONY_GUNICORN", "1")  # what the config sets; undone after the test
    made: list[str] = []

    def load(**env: str) -> dict:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        config = runpy.run_path(str(CONFIG))
        if os.environ.get("SYMPHONY_OWNED_PROMETHEUS_DIR"):
            made.append(os.environ["SYMPHONY_OWNED_PROMETHEUS_DIR"])
        return config

    yield load
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


def test_it_defaults_to_one_sync_worker_per_cpu(load_config):
    config = load_config()

    assert config["bind"] == "0.0.0.0:8000"
    assert config["workers"] == multiprocessing.cpu_count()
    assert config["threads"] == 1
    assert config["worker_class"] == "sync"
    assert config["worker_tmp_dir"] == "/dev/shm"
    assert config["preload_app"] is False


def test_it_reads_bind_and_concurrency_from_the_environment(load_config):
    config = load_config(PORT="9000", WEB_CONCURRENCY="3", GUNICORN_THREADS="4")
    assert (config["bind"], config["workers"], config["threads"]) == ("0.0.0.0:9000", 3, 4)

    assert load_config(GUNICORN_BIND="127.0.0.1:18400")["bind"] == "127.0.0.1:18400"


def test_it_refuses_a_non_numeric_worker_count(load_config):
    with pytest.raises(SystemExit, match="WEB_CONCURRENCY"):
        load_config(WEB_CONCURRENCY="many")


def test_it_silences_gunicorns_access_log_unless_asked(load_config):
    assert load_config()["logconfig_dict"]["loggers"]["gunicorn.access"]["level"] == "CRITICAL"

    config = load_config(GUNICORN_ACCESSLOG="-")

    assert config["logconfig_dict"]["loggers"]["gunicorn.access"]["level"] == "INFO"
    assert config["logconfig_dict"]["formatters"]["structlog"]["()"] == "observability.logs.make_formatter"


def test_it_empties_the_multiprocess_folder_on_start(load_config, tmp_path):
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "leftover").mkdir()
    config = load_config(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))

    config["on_starting"](SimpleNamespace())

    assert list(tmp_path.iterdir()) == []


def test_it_drops_a_dead_workers_live_gauges(load_config, tmp_path):
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"")
    (tmp_path / "counter_4242.db").write_bytes(b"")
    config = load_config(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))

    config["child_exit"](SimpleNamespace(), SimpleNamespace(pid=4242))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db"]


def test_it_makes_its_own_multiprocess_folder_when_none_is_set_and_removes_it_on_exit(load_config):
    config = load_config()
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

    assert folder.is_dir()
    assert os.environ["SYMPHONY_OWNED_PROMETHEUS_DIR"] == str(folder)
    (folder / "counter_1.db").write_bytes(b"")
    config["on_exit"](SimpleNamespace())
    assert not folder.exists()


def test_it_keeps_its_folder_across_a_reload(load_config):
    load_config()
    first = os.environ["PROMETHEUS_MULTIPROC_DIR"]

    load_config()  # gunicorn runs the config again on SIGHUP, in the same master

    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == first


def test_it_leaves_a_folder_the_operator_named_in_place(load_config, tmp_path):
    config = load_config(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))

    config["on_exit"](SimpleNamespace())

    assert tmp_path.is_dir()
    assert "SYMPHONY_OWNED_PROMETHEUS_DIR" not in os.environ


def _as_gunicorn_reads_it(config: dict):
    """The settings gunicorn takes from the module, through its own validators."""
    from gunicorn.config import Config

    cfg = Config()
    for name, value in config.items():
        if name in cfg.settings:
            cfg.set(name, value)
    return cfg


def test_it_turns_the_control_socket_off_unless_given_a_path(load_config, tmp_path):
    # gunicorn's default, $HOME/.gunicorn/, is read-only in the image and shared by every server of a user.
    assert _as_gunicorn_reads_it(load_config()).control_socket_disable is True

    cfg = _as_gunicorn_reads_it(load_config(GUNICORN_CONTROL_SOCKET=str(tmp_path / "gunicorn.ctl")))

    assert cfg.control_socket_disable is False
    assert cfg.control_socket == str(tmp_path / "gunicorn.ctl")
