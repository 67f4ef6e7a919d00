"""Claims that wait for work: ``POST /api/v1/agent/claim/`` with ``wait_seconds`` (long poll).

Why this shape: an idle agent used to ask every second; with ``wait_seconds`` its claim is held until a
task it could claim arrives (then claimed and answered at once) or the time runs out (an empty answer).
A held claim must not hold a sync gunicorn worker, so it is served like the task streams: by the ASGI
process (``uvicorn symphony.asgi:application``), where ``agents/urls.py`` routes the claim path to
``agent_claim`` below and nginx (and the chart's ingress) send ``/api/v1/agent/claim/`` there. One
waiting claim costs a coroutine and one idle OS thread (Django's ASGI handler runs a request's sync
middleware in a thread of its own for the request's lifetime; see ``agents/streams.py``), no
database connection: the database is read on the stream thread pool only to claim.
gunicorn still answers the same path (``make run`` without nginx, a client that did not switch): it
never waits, and says so with ``X-Claim-Wait-Seconds: 0`` so the client polls at its own pace.

What wakes a waiting claim (``ClaimHub``, one per process, shared by all its waiting claims):

- **PostgreSQL**: the streams' own ``LISTEN symphony_task`` connection (``streams.hub``). Every
  service that makes a task pending (submission, a retryable failure, an expired lease, a retry,
  children, workflow steps unblocked, an orchestra started, a member added, a parked task resumed)
  sends a "pending" payload in its transaction (agents/services/notify.py: at most one ``pg_notify``
  statement per transaction), naming the project, the orchestra (or target agent), how many tasks
  and, when known, the capabilities they need. The hub wakes that many waiting claims that could take
  them, oldest first (not every waiter: no thundering herd); a woken claim that finds nothing (another
  process was faster) waits on. After the listening connection was lost every waiter is woken once.
- **Safety net and SQLite**: one poller per process, while claims wait, looks for pending tasks
  updated since its last look (``task_pending_updated_idx``) and orchestras started since, in two
  queries whatever the number of waiters: every ``SYMPHONY_STREAM_POLL_SECONDS`` on SQLite (which
  has no notifications; it sees other processes' writes through the shared file), every
  ``SYMPHONY_STREAM_RECHECK_SECONDS`` on PostgreSQL (a lost notification costs latency, not work).

A client that disconnects cancels its view (Django's ASGI handler): the waiter is removed at once.
Authentication, the agent-key check, rate limiting and the error shape are the sync API's own: the
request goes through ``AgentProtocolViewSet``'s ``initial()`` and the same serializer before waiting.
Each try after a wait runs authentication and the agent-key check again, as a new request would
(``as_if_new``): a key revoked while its claim waited (its agent deleted, its owner deactivated) gets
the 401 of its next request, and the task that woke it stays queued for another agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import Gauge
from rest_framework.exceptions import MethodNotAllowed

from accounts.authentication import as_if_new
from agents import services, streams
from agents.models import Agent, Orchestra, Task
from agents.serializers import ClaimSerializer
from agents.views import AgentProtocolViewSet, _calling_agent, claim_response
from symphony.serializers import validated_body

log = structlog.get_logger(__name__)

#: The answer header: how long the server was prepared to hold this claim (0: it did not wait).
WAIT_HEADER = "X-Claim-Wait-Seconds"

CLAIMS_WAITING = Gauge(
    "symphony_claims_waiting", "Claims waiting for work in this ASGI process.", multiprocess_mode="livesum"
)

#: Rows read per poll (pending tasks updated since the last one); more simply wakes on the next poll.
POLL_LIMIT = 1000
#: A transaction that started before a poll may commit after it: look back this far (seen rows skipped).
POLL_OVERLAP = timedelta(seconds=2)


class Waiter:
    """One waiting claim: what it could take, and the event that wakes it."""

    __slots__ = ("agent_id", "capabilities", "event", "orchestra_ids", "parked", "project_id")

    def __init__(self, *, agent: Agent, orchestra_ids: set[int]) -> None:
        self.project_id = agent.project_id
        self.agent_id = agent.pk
        self.orchestra_ids = frozenset(orchestra_ids)
        self.capabilities = frozenset(agent.capabilities or [])
        self.event = asyncio.Event()
        self.parked = False

    def park(self) -> None:
        """Counted in ``symphony_claims_waiting`` from its first wait on: registered before its first
        try (so nothing slips between), it waits only once that try found nothing."""
        if not self.parked:
            self.parked = True
            CLAIMS_WAITING.inc()


class ClaimHub:
    """Per-process registry of waiting claims, woken by "tasks became pending" (notify or poll)."""

    def __init__(self) -> None:
        # Insertion-ordered per project: the oldest waiter is woken first.
        self._waiters: dict[int, dict[Waiter, None]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def count(self) -> int:
        return sum(len(waiters) for waiters in self._waiters.values())

    @contextlib.asynccontextmanager
    async def waiting(self, *, agent: Agent, orchestra_ids: set[int]) -> AsyncIterator[Waiter]:
        """Register a waiter (before the claim that found nothing is tried: nothing slips between)."""
        waiter = Waiter(agent=agent, orchestra_ids=orchestra_ids)
        self._waiters.setdefault(waiter.project_id, {})[waiter] = None
        try:
            self._ensure_running()
            yield waiter
        finally:
            if waiter.parked:
                CLAIMS_WAITING.dec()
            waiters = self._waiters.get(waiter.project_id)
            if waiters is not None:
                waiters.pop(waiter, None)
                if not waiters:
                    del self._waiters[waiter.project_id]

    def wake(
        self, *, project_id: int, orchestra_id: int | None = None, agent_id: int | None = None, count: int = 0,
        capabilities: frozenset[str] | None = None,
    ) -> int:  # fmt: skip
        """Wake up to ``count`` (0: all) waiters not yet woken that could claim such a task; return how many."""
        woken = 0
        for waiter in self._waiters.get(project_id, ()):
            if waiter.event.is_set():
                continue
            if agent_id is not None:
                if waiter.agent_id != agent_id:
                    continue
            elif orchestra_id is not None and orchestra_id not in waiter.orchestra_ids:
                continue
            if capabilities is not None and not capabilities <= waiter.capabilities:
                continue
            waiter.event.set()
            woken += 1
            if count and woken >= count:
                break
        return woken

    def wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.event.set()

    def deliver(self, payload: str | None) -> None:
        """A notification from ``streams.hub``: a pending payload (notify.py), or None (reconnected)."""
        if payload is None:
            self.wake_all()
            return
        try:
            body = json.loads(payload)
            capabilities = body.get("c")
            self.wake(
                project_id=int(body["p"]),
                orchestra_id=None if body.get("o") is None else int(body["o"]),
                agent_id=None if body.get("a") is None else int(body["a"]),
                count=int(body.get("n") or 0),
                capabilities=None if capabilities is None else frozenset(capabilities),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("claim_wait_bad_payload")

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if connection.vendor == "postgresql":
            streams.hub.add_listener(self.deliver)
            streams.hub.ensure_running()
        if self._poller is not None and not self._poller.done() and self._loop is loop:
            return
        self._loop = loop
        self._poller = loop.create_task(self._poll())

    async def _poll(self) -> None:
        postgres = connection.vendor == "postgresql"
        interval = settings.SYMPHONY_STREAM_RECHECK_SECONDS if postgres else settings.SYMPHONY_STREAM_POLL_SECONDS
        since = await _run(timezone.now)()
        seen: dict[int, datetime] = {}
        while True:
            await asyncio.sleep(interval)
            projects = list(self._waiters)
            if not projects:
                continue  # nobody waits: no query
            try:
                tasks, orchestras, since = await _run(_pending_changes)(projects, since)
            except DatabaseError:
                log.warning("claim_wait_poll_failed")
                continue
            for task_id, updated_at, project_id, orchestra_id, agent_id, capabilities in tasks:
                if seen.get(task_id) == updated_at:
                    continue  # woken for it on an earlier poll (the overlap)
                seen[task_id] = updated_at
                self.wake(project_id=project_id, orchestra_id=orchestra_id, agent_id=agent_id, count=1,
                          capabilities=frozenset(capabilities or []))  # fmt: skip
            for orchestra_id, project_id in orchestras:
                self.wake(project_id=project_id, orchestra_id=orchestra_id)
            horizon = since - POLL_OVERLAP
            seen = {task_id: at for task_id, at in seen.items() if at >= horizon}


def _pending_changes(projects: list[int], since: datetime) -> tuple[list[tuple], list[tuple], datetime]:
    now = timezone.now()
    after = since - POLL_OVERLAP
    tasks = list(
        Task.objects.filter(status=Task.Status.PENDING, updated_at__gte=after, project_id__in=projects)
        .order_by("updated_at")
        .values_list("id", "updated_at", "project_id", "orchestra_id", "target_agent_id", "required_capabilities")[
            :POLL_LIMIT
        ]
    )
    orchestras = list(
        Orchestra.objects.filter(state=Orchestra.State.RUNNING, updated_at__gte=after, project_id__in=projects)
        .values_list("id", "project_id")
    )  # fmt: skip
    return tasks, orchestras, now


hub = ClaimHub()


def _run(fn: Any) -> Any:
    """``fn`` (ORM code) on the stream thread pool; a pool thread's broken connection is closed."""

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DatabaseError:
            connection.close()
            raise

    return sync_to_async(call, thread_sensitive=False)


def _prepare(request: HttpRequest) -> tuple[HttpResponse | None, Any]:
    """(error response, None) or (None, (view, agent, claim arguments, wait, orchestra ids)) after the
    sync API's own checks: ``AgentProtocolViewSet.initial()`` (authentication, permission), the
    agent-bound key (403 otherwise, before any wait) and ``ClaimSerializer`` (400 naming the field)."""
    view = AgentProtocolViewSet(action_map={"post": "claim"}, action="claim")
    view.post = view.claim  # as ``as_view()`` binds it
    view.args, view.kwargs = (), {}
    view.request = view.initialize_request(request)
    view.headers, view.format_kwarg = dict(view.default_response_headers), None
    drf_request = view.request
    try:
        if request.method != "POST":
            raise MethodNotAllowed(request.method)
        view.initial(drf_request)
        agent = _calling_agent(drf_request)
        data = validated_body(ClaimSerializer, drf_request)
        wait = data.pop("wait_seconds", 0)
        orchestra_ids = set(Orchestra.objects.filter(agents=agent).values_list("id", flat=True)) if wait else set()
        return None, (view, agent, data, wait, orchestra_ids)
    except Exception as exc:  # noqa: BLE001 - handed to DRF's handler, which re-raises what it does not know
        return _render(view, view.handle_exception(exc)), None


def _render(view: AgentProtocolViewSet, response: Any) -> HttpResponse:
    return view.finalize_response(view.request, response).render()


def _check_again(view: AgentProtocolViewSet, request: HttpRequest) -> tuple[HttpResponse | None, Agent | None]:
    """(refusal, None) or (None, the agent read again): the request's checks once more, as a new
    request's would run them (``as_if_new``). While the claim waited its key may have been revoked,
    its agent deleted or its owner deactivated; a task must not be leased to it then."""
    view.request = view.initialize_request(as_if_new(request))
    try:
        view.initial(view.request)
        return None, _calling_agent(view.request)
    except Exception as exc:  # noqa: BLE001 - handed to DRF's handler, which re-raises what it does not know
        return _render(view, view.handle_exception(exc)), None


def _attempt(view: AgentProtocolViewSet, agent: Agent, data: dict[str, Any], headers: dict[str, str] | None,
             answer_empty: bool, waited: HttpRequest | None = None) -> HttpResponse | None:  # fmt: skip
    """Claim once: the answer, or None when nothing was claimable and ``answer_empty`` is false. After
    a wait (``waited``: the held request), the caller is checked again first."""
    if waited is not None:
        refusal, agent = _check_again(view, waited)
        if refusal is not None:
            return refusal
    try:
        tasks = services.task_claim(agent=agent, **data)
        if not tasks and not answer_empty:
            return None
        response = claim_response(agent, tasks, headers=headers)
    except Exception as exc:  # noqa: BLE001 - the sync view's error shape (503 for a database outage)
        response = view.handle_exception(exc)
    return _render(view, response)


def _empty(view: AgentProtocolViewSet, agent: Agent, headers: dict[str, str]) -> HttpResponse:
    return _render(view, claim_response(agent, [], headers=headers))


@csrf_exempt  # as DRF's views are: its SessionAuthentication checks CSRF itself (in ``initial()``)
async def agent_claim(request: HttpRequest) -> HttpResponse:
    """``POST /api/v1/agent/claim/`` on the ASGI process: the sync claim, and with ``wait_seconds`` the
    long poll (see the module docstring)."""
    error, prepared = await _run(_prepare)(request)
    if error is not None:
        return error
    view, agent, data, wait, orchestra_ids = prepared
    if not wait:
        return await _run(_attempt)(view, agent, data, None, True)
    headers = {WAIT_HEADER: str(wait)}
    await streams.release_request_connections()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    async with hub.waiting(agent=agent, orchestra_ids=orchestra_ids) as waiter:
        waited = None  # the first try follows the checks of _prepare at once; later ones follow a wait
        while True:
            waiter.event.clear()
            response = await _run(_attempt)(view, agent, data, headers, False, waited)
            waited = request
            if response is not None:
                return response
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            waiter.park()
            try:
                await asyncio.wait_for(waiter.event.wait(), remaining)
            except TimeoutError:
                break
    return await _run(_empty)(view, agent, headers)
