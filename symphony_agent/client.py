"""HTTP client of the agent protocol (``/api/v1/agent/...`` and ``/api/v1/tasks/{id}/...``)."""

from __future__ import annotations

import logging
import time
from typing import Any

import requests

log = logging.getLogger("symphony_agent")


class ProtocolError(Exception):
    """The server refused a call (4xx other than 409) or could not be reached after retries."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class LeaseLostError(ProtocolError):
    """409: this agent no longer holds the task (lease expired and moved on, cancelled, or finished)."""


class ProtocolClient:
    """One agent's connection to Symphony, authenticated with its agent-bound API key.

    Calls that report work (complete, fail) retry on connection errors and 5xx answers with backoff,
    so a result is not lost to a server restart; a 4xx answer is final.
    """

    def __init__(self, url: str, key: str, *, timeout: float = 10.0, user_agent: str = "symphony-agent/0.1") -> None:
        self.base = url.rstrip("/") + "/api/v1/"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Bearer {key}", "User-Agent": user_agent, "Accept": "application/json"}
        )

    def heartbeat(self, *, status: str, metrics: dict[str, Any] | None = None, version: str | None = None) -> dict:
        body: dict[str, Any] = {"status": status}
        if metrics is not None:
            body["metrics"] = metrics
        if version is not None:
            body["version"] = version
        return self._post("agent/heartbeat/", body)

    def claim(self, *, max_tasks: int = 1, lease_seconds: int | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"max_tasks": max_tasks}
        if lease_seconds is not None:
            body["lease_seconds"] = lease_seconds
        return self._post("agent/claim/", body)["tasks"]

    def extend(self, task_id: int, *, attempt: int, lease_seconds: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"attempt": attempt}
        if lease_seconds is not None:
            body["lease_seconds"] = lease_seconds
        return self._post(f"tasks/{task_id}/extend/", body)

    def complete(self, task_id: int, *, attempt: int, result: Any) -> dict[str, Any]:
        return self._post(f"tasks/{task_id}/complete/", {"attempt": attempt, "result": result}, retries=5)

    def fail(self, task_id: int, *, attempt: int, error: str, retryable: bool) -> dict[str, Any]:
        body = {"attempt": attempt, "error": error[:10000], "retryable": retryable}
        return self._post(f"tasks/{task_id}/fail/", body, retries=5)

    def _post(self, path: str, body: dict[str, Any], *, retries: int = 0) -> dict[str, Any]:
        delay = 0.5
        for attempt in range(retries + 1):
            try:
                response = self.session.post(self.base + path, json=body, timeout=self.timeout)
            except requests.RequestException as exc:
                if attempt == retries:
                    raise ProtocolError(f"POST {path}: {exc.__class__.__name__}: {exc}") from exc
            else:
                if response.status_code < 400:
                    return response.json()
                if response.status_code < 500 or attempt == retries:
                    raise self._error(path, response)
            log.warning("symphony call failed, retrying in %.1fs: POST %s", delay, path)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _error(path: str, response: requests.Response) -> ProtocolError:
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = {}
        message = f"POST {path}: {response.status_code} {error.get('message') or response.reason}"
        cls = LeaseLostError if response.status_code == 409 else ProtocolError
        return cls(message, status=response.status_code, code=error.get("code"))
