"""Run the ``symphony-agent`` command as a real process for tests, and read what it says as it says it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The console script that ``pip install`` made for the distribution (editable, in the project's venv).
AGENT_COMMAND = str(Path(sys.executable).with_name("symphony-agent"))


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Wait for a condition another process or thread brings about (not for time to pass)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout:.0f}s")


def agent_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without any SYMPHONY_AGENT_* setting of its own, plus ``extra``."""
    env = {
        name: value for name, value in os.environ.items() if not name.startswith(("SYMPHONY_AGENT_", "SYMPHONY_CHAT_"))
    }
    env.update(extra or {})
    return env


def run_agent_command(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 60.0):
    """Run ``symphony-agent ARGS`` to its end; return the CompletedProcess (text, stdout and stderr apart)."""
    return subprocess.run(
        [AGENT_COMMAND, *args], env=agent_env(env), cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout
    )


class AgentProcess:
    """A ``symphony-agent`` (or any worker command) running in the background; its output collected by line."""

    def __init__(self, command: list[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(
            command,
            cwd=cwd or ROOT,
            env=agent_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def matching(self, pattern: str) -> list[str]:
        return [line for line in self.lines if re.search(pattern, line)]

    def wait_for_lines(self, pattern: str, count: int = 1, timeout: float = 30.0) -> list[str]:
        return wait_for(lambda: len(self.matching(pattern)) >= count and self.matching(pattern), timeout, pattern)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for a clean exit (SIGKILL if it does not come)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.wait(timeout)
            raise
