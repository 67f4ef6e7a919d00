"""HTTP client of the agent protocol (``/api/v1/agent/...`` and ``/api/v1/tasks/{id}/...``).

Each call is one try; the errors say what the caller should do next:

- ``KeyRejectedError``: the key is not (or no longer) good for this agent: stop, retrying cannot help;
- ``ServerUnavailableError``: not reachable, 429 or 5xx: retry later (``retry_after`` when the server said);
- ``LeaseLostError``: 409, this agent no longer holds the task: stop working on it, drop the result;
- ``ProtocolError``: any other refusal (4xx).

The worker owns the retrying (``Backoff``), so a stopping worker never sits in a sleep inside a call.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

import requests

from symphony_agent import __version__

log = logging.getLogger("symphony_agent")

#: A Retry-After longer than this is taken as this: a misconfigured proxy should not park a fleet for a day.
MAX_RETRY_AFTER = 600.0
#: The claim answer's header: how long the server was prepared to hold the claim (0: it did not wait).
WAIT_HEADER = "X-Claim-Wait-Seconds"
_KEY_RE = re.compile(r"^sym_([A-Za-z0-9]+)_")


class ProtocolError(Exception):
    """The server refused a call, or could not be reached."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after
        #: The server's own message (``error.message`` of its error shape), when it sent one.
        self.detail = detail


class LeaseLostError(ProtocolError):
    """409: this agent no longer holds the task (cancelled, lease expired and moved on, or finished)."""


class KeyRejectedError(ProtocolError):
    """401 (invalid, revoked, expired or malformed key) or 403 ``agent_key_required`` (a key bound to no
    agent): this key cannot run an agent, and no retry will change that."""


class ServerUnavailableError(ProtocolError):
    """The server did not answer, or answered 429 or 5xx: worth another try later."""

    @property
    def state(self) -> str:
        """What a log line calls this condition: one message per change of condition, not per try."""
        if self.status is None:
            return "unreachable"
        return "rate limited" if self.status == 429 else "unavailable"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class Backoff:
    """Exponential backoff with jitter: ``base * 2**n`` capped at ``cap``, each delay drawn from its upper half.

    A ``Retry-After`` from the server wins over the schedule (plus up to 10% jitter, so a fleet told the
    same time does not come back in the same instant). Not thread-safe: one per retrying loop.
    """

    def __init__(self, *, base: float = 0.5, cap: float = 60.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self, retry_after: float | None = None) -> float:
        self.failures += 1
        if retry_after is not None:
            return retry_after * (1 + 0.1 * self._rng.random())
        ceiling = min(self.cap, self.base * 2 ** (self.failures - 1))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def reset(self) -> None:
        self.failures = 0


class Reachability:
    """Says once when the server stops answering (or changes how it fails) and once when it is back.

    Each failed try is logged at debug level only, so an outage of an hour is two lines, not thousands.
    """

    def __init__(self) -> None:
        self.state = "ok"
        self._since = 0.0
        self._failures = 0
        self._lock = threading.Lock()

    def failed(self, exc: ServerUnavailableError) -> None:
        with self._lock:
            self._failures += 1
            if exc.state == self.state:
                log.debug("server still %s: %s", exc.state, exc)
                return
            if self.state == "ok":
                self._since = time.monotonic()
            self.state = exc.state
        log.warning("server %s (%s); retrying with backoff", exc.state, exc)

    def answered(self) -> None:
        with self._lock:
            if self.state == "ok":
                return
            self.state, failures = "ok", self._failures
            self._failures = 0
            down_for = time.monotonic() - self._since
        log.info("server answering again after %.1fs (%d failed calls)", down_for, failures)


def key_label(key: str) -> str:
    """The public part of a key, ``sym_<prefix>``, safe to log; never the secret."""
    match = _KEY_RE.match(key)
    return f"sym_{match.group(1)}" if match else "a malformed key"


class ProtocolClient:
    """One agent's connection to Symphony, authenticated with its agent-bound API key. Thread-safe."""

    def __init__(
        self, url: str, key: str, *, timeout: float = 10.0, user_agent: str | None = None, claim_url: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.base = self.url + "/api/v1/"
        #: Where claims go: the server's ASGI process answers waiting claims (``claim_url``, else ``url``).
        self.claim_base = (claim_url or url).rstrip("/") + "/api/v1/"
        self.timeout = timeout
        self.key_label = key_label(key)
        self.reachability = Reachability()
        self.session = requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Bearer {key}",
                "User-Agent": user_agent or f"symphony-agent/{__version__}",
                "Accept": "application/json",
            }
        )

    def heartbeat(self, *, status: str, metrics: dict[str, Any] | None = None, version: str | None = None) -> dict:
        """Report liveness; the answer names the agent and lists held tasks that were cancelled."""
        body: dict[str, Any] = {"status": status}
        if metrics is not None:
            body["metrics"] = metrics
        if version is not None:
            body["version"] = version
        return self._post("agent/heartbeat/", body)

    def claim(self, *, max_tasks: int = 1, lease_seconds: int | None = None) -> list[dict[str, Any]]:
        return self.claim_waiting(max_tasks=max_tasks, lease_seconds=lease_seconds)[0]

    def claim_waiting(
        self, *, max_tasks: int = 1, lease_seconds: int | None = None, wait_seconds: int = 0
    ) -> tuple[list[dict[str, Any]], bool]:
        """Claim; with ``wait_seconds``, the server holds the request until a task arrives or the time is
        up. Returns ``(tasks, waited)``: ``waited`` is False when the server answered without waiting
        (``X-Claim-Wait-Seconds: 0`` or absent: a sync worker, an older server), so the caller polls."""
        body: dict[str, Any] = {"max_tasks": max_tasks}
        if lease_seconds is not None:
            body["lease_seconds"] = lease_seconds
        if wait_seconds:
            body["wait_seconds"] = wait_seconds
        answer, headers = self._request(
            "agent/claim/", body, base=self.claim_base, timeout=self.timeout + wait_seconds
        )  # fmt: skip
        waited = bool(wait_seconds) and headers.get(WAIT_HEADER, "0") not in ("", "0")
        return answer["tasks"], waited

    def extend(self, task_id: int, *, attempt: int, lease_seconds: int | None = None) -> dict[str, Any]:
        body = {} if lease_seconds is None else {"lease_seconds": lease_seconds}
        return self.task_post(task_id, "extend", attempt=attempt, **body)

    def complete(
        self, task_id: int, *, attempt: int, result: Any, wait_for_children: bool = False,
        usage: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        body: dict[str, Any] = {"wait_for_children": True} if wait_for_children else {}
        if usage:
            body["usage"] = usage
        return self.task_post(task_id, "complete", attempt=attempt, result=result, **body)

    def complete_many(self, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Complete several held tasks in one request: each of ``results`` is ``{"task", "attempt", "result"}``
        (plus ``wait_for_children``/``usage``). Returns one answer per entry, in order, each with ``ok``
        and ``status_code`` (409 for an attempt that is over): one stale entry does not stop the others."""
        return self._post("agent/complete/", {"results": results})["results"]

    def fail(
        self, task_id: int, *, attempt: int, error: str, retryable: bool, usage: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"usage": usage} if usage else {}
        return self.task_post(task_id, "fail", attempt=attempt, error=error[:10000], retryable=retryable, **body)

    def task_post(self, task_id: int, action: str, *, attempt: int, **body: Any) -> dict[str, Any]:
        """``POST tasks/{id}/{action}/`` for one attempt of a task this agent holds.

        Every call about a held task goes through here, so each names the attempt it is about (the server
        answers 409 for an attempt that is over) and a new task call is one method above.
        """
        return self._post(f"tasks/{task_id}/{action}/", {"attempt": attempt, **body})

    def close(self) -> None:
        self.session.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request(path, body)[0]

    def _request(
        self, path: str, body: dict[str, Any], *, base: str | None = None, timeout: float | None = None
    ) -> tuple[dict[str, Any], Any]:
        try:
            response = self.session.post((base or self.base) + path, json=body, timeout=timeout or self.timeout)
        except requests.RequestException as exc:
            error = ServerUnavailableError(f"POST {path}: {exc.__class__.__name__}: {exc}")
            self.reachability.failed(error)
            raise error from exc
        if response.status_code == 429 or response.status_code >= 500:
            error = self._error(path, response, ServerUnavailableError)
            self.reachability.failed(error)
            raise error
        self.reachability.answered()
        if response.status_code < 400:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if not isinstance(answer, dict):  # a proxy's or another site's page, not Symphony
                raise ProtocolError(f"POST {path}: {response.status_code} with a body that is not a JSON object")
            return answer, response.headers
        cls = ProtocolError
        if response.status_code == 409:
            cls = LeaseLostError
        elif response.status_code == 401 or _error_code(response) == "agent_key_required":
            cls = KeyRejectedError
        raise self._error(path, response, cls)

    @staticmethod
    def _error(path: str, response: requests.Response, cls: type[ProtocolError]) -> ProtocolError:
        error = _error_object(response)
        detail = str(error.get("message") or "")
        message = f"POST {path}: {response.status_code} {detail or response.reason}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        code = error.get("code")
        return cls(message, status=response.status_code, code=code, retry_after=retry_after, detail=detail)


def _error_object(response: requests.Response) -> dict[str, Any]:
    """The ``error`` object of Symphony's one error shape, or {} for any other body (a proxy's HTML page)."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _error_code(response: requests.Response) -> str | None:
    return _error_object(response).get("code")
