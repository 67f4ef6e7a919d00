"""The worker as its own distribution: build the wheel, install it in a fresh virtualenv without Django,
and run a task with it against a live server."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest
from symphony_agent import __version__

from agents.models import Task
from agents.tests.factories import TaskFactory
from tests.workers import ROOT, agent_env

DISTRIBUTION = ROOT / "clients" / "symphony-agent"
PIP = ["-m", "pip", "--disable-pip-version-check", "-q"]


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # Built from a copy: setuptools builds in the source folder, and a stale build/ there could leak in.
    source = tmp_path_factory.mktemp("source") / "symphony-agent"
    shutil.copytree(DISTRIBUTION, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, *PIP, "wheel", "--no-deps", "--wheel-dir", str(dist), str(source))
    [built] = dist.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel):
    """A fresh virtualenv (no system site-packages) with only the wheel and its dependencies."""
    path = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", str(path))
    run(str(path / "bin" / "python"), *PIP, "install", str(wheel))
    return path


@pytest.mark.slow
def test_the_wheel_holds_the_package_and_its_command_and_nothing_else(wheel):
    assert wheel.name == f"symphony_agent-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(f"symphony_agent-{__version__}.dist-info/METADATA").decode()
        entry_points = archive.read(f"symphony_agent-{__version__}.dist-info/entry_points.txt").decode()
    packages = {name.split("/")[0] for name in names}
    assert packages == {"symphony_agent", f"symphony_agent-{__version__}.dist-info"}
    assert "symphony_agent/examples/openai_chat.py" in names
    assert "symphony-agent = symphony_agent.cli:main" in entry_points
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert [r for r in requires if "extra ==" not in r] == ["Requires-Dist: requests<3,>=2.31"]


@pytest.mark.slow
def test_it_installs_without_django(venv):
    python = str(venv / "bin" / "python")
    found = run(python, "-c", "import importlib.util as u; print(u.find_spec('django'), u.find_spec('symphony_agent'))")
    assert found.stdout.startswith("None ModuleSpec(name='symphony_agent'")
    assert str(venv) in found.stdout  # the installed copy, not the source tree
    assert run(str(venv / "bin" / "symphony-agent"), "--version").stdout.strip() == f"symphony-agent {__version__}"


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_installed_worker_runs_a_task_against_a_live_server(venv, live_server, make_agent, orchestra, tmp_path):
    worker = make_agent(capabilities=["word_count"], orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra, kind="word_count", input={"text": "one two three"})
    key_file = tmp_path / "agent.key"
    key_file.write_text(worker.key + "\n")
    key_file.chmod(0o600)
    result = subprocess.run(
        [
            str(venv / "bin" / "symphony-agent"),
            "--url",
            live_server.url,
            "--key-file",
            str(key_file),
            "--demo",
            "--once",
        ],
        cwd=tmp_path,
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    task.refresh_from_db()
    assert (task.status, task.result) == ("succeeded", {"words": 3, "lines": 1, "characters": 13})
    assert f"[{worker.agent.name}]" in result.stderr
    assert Task.objects.get(pk=task.pk).attempts == 1
