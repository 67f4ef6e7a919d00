"""Agents, orchestras and tasks.

The database enforces the invariants of dispatch (see ``Task.Meta.constraints``): a running task always
has a holder and a lease, a task is addressed to an orchestra or to one agent, attempts never exceed
their maximum, an attempt number is never given twice, and an idempotency key is unique per submitter.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import default_project_id
from agents.managers import AgentQuerySet, OrchestraQuerySet, TaskQuerySet

CAPABILITY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
MAX_CAPABILITIES = 64
KIND_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


def validate_capabilities(value: object) -> None:
    """A list of at most 64 distinct short names (lower-case letters, digits, ``_ . : -``)."""
    if not isinstance(value, list):
        raise ValidationError("Capabilities must be a list of short names.", code="invalid")
    if len(value) > MAX_CAPABILITIES:
        raise ValidationError(f"At most {MAX_CAPABILITIES} capabilities are allowed.", code="too_many")
    for item in value:
        if not isinstance(item, str) or not CAPABILITY_PATTERN.match(item):
            raise ValidationError(
                f"{item!r} is not a capability name: use 1-64 lower-case letters, digits, '_', '.', ':' or '-'.",
                code="invalid",
            )
    if len(set(value)) != len(value):
        raise ValidationError("Capabilities must not repeat.", code="duplicate")


#: Text no database stores: NUL (PostgreSQL text and jsonb refuse it) and lone UTF-16 surrogates (not
#: encodable as UTF-8: psycopg fails, while SQLite stores the escape and every later answer rendering the
#: row fails). The API's JSON parser refuses both already; this guards the other ways in (admin forms).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def validate_storable_json(value: object) -> None:
    """Refuse JSON holding a NUL or a lone surrogate in any string or key."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts = [item]
        elif isinstance(item, dict):
            texts = list(item)
            stack.extend(item.values())
        else:
            texts = []
            if isinstance(item, list):
                stack.extend(item)
        if any(_UNSTORABLE.search(text) for text in texts):
            raise ValidationError(
                "JSON text may not contain NUL characters or lone UTF-16 surrogates (\\ud800-\\udfff).",
                code="unstorable",
            )


def normalize_capabilities(value: list[str]) -> list[str]:
    """Sorted and de-duplicated, so equal sets compare equal and read the same in the admin."""
    return sorted(set(value))


def validate_kind(value: str) -> None:
    if not KIND_PATTERN.match(value or ""):
        raise ValidationError(
            "Kind must be 1-100 letters, digits, '_', '.', ':' or '-', starting with a letter or digit.",
            code="invalid",
        )


FLOW_KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@+=-]{0,199}$")


def validate_flow_key(value: str) -> None:
    """Concurrency and fairness keys: printable identifiers such as ``openai:gpt-4o`` or ``customer:42``."""
    if value and not FLOW_KEY_PATTERN.match(value):
        raise ValidationError(
            "A key is 1-200 letters, digits or '_.:/@+=-', starting with a letter or digit.", code="invalid"
        )


class Agent(models.Model):
    """A worker that claims and runs tasks, authenticated by its agent-bound API key."""

    class Type(models.TextChoices):
        REPOSITORY_MANAGER = "repository_manager"
        WEBSITE_MANAGER = "website_manager"
        CODE_REVIEWER = "code_reviewer"
        TESTER = "tester"
        DEPLOYER = "deployer"
        MONITOR = "monitor"
        RESEARCHER = "researcher"
        COORDINATOR = "coordinator"
        CUSTOM = "custom"

    class Status(models.TextChoices):
        ACTIVE = "active"
        IDLE = "idle"
        BUSY = "busy"
        ERROR = "error"
        OFFLINE = "offline"

    class TrustLevel(models.TextChoices):
        UNTRUSTED = "untrusted"
        LOW = "low"
        MEDIUM = "medium"
        HIGH = "high"
        VERIFIED = "verified"

    name = models.CharField(max_length=100, help_text="Name of the agent, unique in its project.")
    project = models.ForeignKey(
        "accounts.Project",
        on_delete=models.PROTECT,
        default=default_project_id,
        related_name="agents",
        help_text="The project the agent belongs to; it claims only this project's tasks.",
    )
    type = models.CharField(
        max_length=32, choices=Type.choices, default=Type.CUSTOM, help_text="What the agent is for."
    )
    capabilities = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_capabilities],
        help_text="Short names of what the agent can do; a task is offered only if it has all required ones.",
    )
    status = models.CharField(
        max_length=16,
        choices=Status.choices,
        default=Status.OFFLINE,
        help_text="Last status the agent reported; shown as offline when its heartbeat is too old.",
    )
    trust_level = models.CharField(
        max_length=16,
        choices=TrustLevel.choices,
        default=TrustLevel.UNTRUSTED,
        help_text="How far the agent is trusted.",
    )
    version = models.CharField(max_length=64, blank=True, help_text="Version the agent reports.")
    metadata = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_storable_json],
        help_text="Free-form JSON object (last metrics included).",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agents", help_text="Who registered it."
    )
    api_key = models.OneToOneField(
        "accounts.ApiKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="agent",
        help_text="The agent-bound API key the agent authenticates with.",
    )
    last_heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="When the agent last reported in.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AgentQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="agent_unique_name_per_project"),
            models.CheckConstraint(
                condition=Q(status__in=["active", "idle", "busy", "error", "offline"]), name="agent_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(trust_level__in=["untrusted", "low", "medium", "high", "verified"]),
                name="agent_trust_level_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def heartbeat_cutoff() -> datetime:
        return timezone.now() - timedelta(seconds=settings.SYMPHONY_AGENT_HEARTBEAT_TIMEOUT)

    @property
    def is_online(self) -> bool:
        return self.last_heartbeat_at is not None and self.last_heartbeat_at >= self.heartbeat_cutoff()

    # The three properties below are what AgentSerializer shows of related rows. The API's list page
    # reads the same values in bulk instead (``selectors.agent_list_rows``, ``agent_orchestra_ids``).

    @property
    def owner_username(self) -> str:
        """The owner's username."""
        return self.owner.username

    @property
    def api_key_prefix(self) -> str | None:
        """The public prefix of the agent's bound key, or None."""
        return self.api_key.prefix if self.api_key_id else None

    @property
    def orchestra_ids(self) -> list[int]:
        """Ids of the orchestras this agent belongs to, ordered by orchestra name."""
        return [orchestra.pk for orchestra in self.orchestras.all()]

    @property
    def effective_status(self) -> str:
        """The reported status, or offline when the last heartbeat is older than the timeout."""
        return self.status if self.is_online else self.Status.OFFLINE


class Orchestra(models.Model):
    """A named ensemble of agents with a lifecycle; only running orchestras dispatch tasks."""

    class State(models.TextChoices):
        DRAFT = "draft"
        RUNNING = "running"
        PAUSED = "paused"
        STOPPED = "stopped"

    name = models.CharField(max_length=100, help_text="Name of the orchestra, unique in its project.")
    project = models.ForeignKey(
        "accounts.Project",
        on_delete=models.PROTECT,
        default=default_project_id,
        related_name="orchestras",
        help_text="The project the orchestra belongs to; its members and tasks are of the same project.",
    )
    description = models.TextField(blank=True, max_length=2000)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.DRAFT, help_text="Only running orchestras dispatch tasks."
    )
    agents = models.ManyToManyField(Agent, blank=True, related_name="orchestras", help_text="Member agents.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrchestraQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="orchestra_unique_name_per_project"),
            models.CheckConstraint(
                condition=Q(state__in=["draft", "running", "paused", "stopped"]), name="orchestra_state_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Task(models.Model):
    """A unit of work: submitted into an orchestra (or to one agent), claimed under a lease, finished once."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        # Not claimable: a workflow step whose dependencies have not all succeeded yet,
        BLOCKED = "blocked"
        # a task parked until a human decides (an approval step, or a holder that asked mid-task),
        WAITING_APPROVAL = "waiting_approval"
        # a parent that completed with wait_for_children until every child has finished.
        WAITING = "waiting"

    class Priority(models.IntegerChoices):
        # Stored as an integer so the claim query orders by it; the API speaks the labels.
        LOW = 0, "low"
        NORMAL = 1, "normal"
        HIGH = 2, "high"
        URGENT = 3, "urgent"

    CANCELLABLE = (Status.PENDING, Status.RUNNING, Status.BLOCKED, Status.WAITING_APPROVAL, Status.WAITING)
    RETRYABLE = (Status.FAILED, Status.CANCELLED)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=100, validators=[validate_kind], help_text="Which handler runs the task.")
    project = models.ForeignKey(
        "accounts.Project",
        on_delete=models.PROTECT,
        default=default_project_id,
        related_name="tasks",
        help_text="The project of the task: always its orchestra's (or its target agent's) project.",
    )
    input = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_storable_json],
        help_text="JSON input given to the handler (size-limited).",
    )
    required_capabilities = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_capabilities],
        help_text="Only agents holding every one of these capabilities are offered the task.",
    )
    priority = models.PositiveSmallIntegerField(
        choices=Priority.choices, default=Priority.NORMAL, help_text="Higher priorities are claimed first."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(
        default=0, help_text="Claims counted against max_attempts (each claim is one; a retry starts again at 0)."
    )
    last_attempt = models.PositiveIntegerField(
        default=0,
        help_text="Number of the latest attempt: the lease token of its holder. Never reused for this task, "
        "retries included.",
    )
    max_attempts = models.PositiveSmallIntegerField(default=3, help_text="After this many attempts the task fails.")
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="The holder must extend, complete or fail the task before this time."
    )
    result = models.JSONField(
        null=True, blank=True, validators=[validate_storable_json], help_text="What the handler returned."
    )
    error = models.TextField(blank=True, help_text="Why the last attempt failed.")
    idempotency_key = models.CharField(
        max_length=200, blank=True, default="", help_text="Same key from the same submitter returns the same task."
    )
    traceparent = models.CharField(max_length=55, blank=True, help_text="W3C traceparent of the submission.")
    submitter = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="submitted_tasks"
    )
    orchestra = models.ForeignKey(
        Orchestra, on_delete=models.CASCADE, null=True, blank=True, related_name="tasks",
        help_text="The orchestra whose running members may claim the task.",
    )  # fmt: skip
    target_agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, null=True, blank=True, related_name="addressed_tasks",
        help_text="The one agent the task is addressed to (agents/{id}/execute/).",
    )  # fmt: skip
    agent = models.ForeignKey(
        Agent, on_delete=models.SET_NULL, null=True, blank=True, related_name="held_tasks",
        help_text="The agent holding (or that last held) the task.",
    )  # fmt: skip
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True, help_text="First claim.")
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="Latest claim.")
    finished_at = models.DateTimeField(null=True, blank=True)
    # Generic fields the orchestration layer (the workflows app) builds on; dispatch knows only these.
    workflow = models.PositiveBigIntegerField(
        null=True, blank=True, db_index=True, help_text="Id of the workflow run this task is a step (or child) of."
    )
    step_key = models.CharField(max_length=100, blank=True, default="", help_text="The step's key in its workflow.")
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children",
        help_text="The task whose holder created this one (a child task).",
    )  # fmt: skip
    waiting_on = models.PositiveIntegerField(
        default=0,
        help_text="How many dependencies (blocked step) or children (waiting parent) are still unfinished.",
    )
    resume_context = models.JSONField(
        null=True, blank=True, help_text="Given to the next claim, e.g. the decision on an approval the task asked for."
    )
    # Flow control (agents/services/flow.py): concurrency limits per key, round robin between fairness keys.
    concurrency_key = models.CharField(
        max_length=200, blank=True, default="", validators=[validate_flow_key],
        help_text="Tasks sharing this key count against its concurrency limit (e.g. openai:gpt-4o).",
    )  # fmt: skip
    fairness_key = models.CharField(
        max_length=200, blank=True, default="", validators=[validate_flow_key],
        help_text="Within one priority, claims take turns between fairness keys (default: user:<submitter id>).",
    )  # fmt: skip
    fair_seq = models.BigIntegerField(
        default=0, help_text="Turn of this task within its fairness key: claims order by it after the priority."
    )

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    status__in=[
                        "pending",
                        "running",
                        "succeeded",
                        "failed",
                        "cancelled",
                        "blocked",
                        "waiting_approval",
                        "waiting",
                    ]
                ),
                name="task_status_valid",
            ),
            models.CheckConstraint(condition=Q(priority__lte=3), name="task_priority_valid"),
            models.CheckConstraint(
                condition=Q(max_attempts__gte=1) & Q(max_attempts__lte=100), name="task_max_attempts_range"
            ),
            models.CheckConstraint(condition=Q(attempts__lte=models.F("max_attempts")), name="task_attempts_le_max"),
            models.CheckConstraint(
                condition=Q(orchestra__isnull=False) | Q(target_agent__isnull=False), name="task_has_destination"
            ),
            # A running task always has a holder and a lease: this is what lets a dead agent's work come back.
            models.CheckConstraint(
                condition=~Q(status="running") | (Q(agent__isnull=False) & Q(lease_expires_at__isnull=False)),
                name="task_running_has_lease",
            ),
            models.CheckConstraint(
                condition=~Q(status="pending") | Q(lease_expires_at__isnull=True), name="task_pending_has_no_lease"
            ),
            models.UniqueConstraint(
                fields=["submitter", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="task_idempotency_key_unique_per_submitter",
            ),
        ]
        indexes = [
            # The claim query: pending tasks, highest priority first, then the fairness turn, then oldest.
            models.Index(
                models.F("priority").desc(),
                "fair_seq",
                "created_at",
                "id",
                condition=Q(status="pending"),
                name="task_fair_claim_idx",
            ),
            # Submission: the last turn a fairness key holds at a priority.
            models.Index(
                fields=["fairness_key", "priority", "fair_seq"], condition=Q(status="pending"), name="task_fair_key_idx"
            ),
            # Claims with concurrency limits: how many tasks of a key are running.
            models.Index(
                fields=["project", "concurrency_key"], condition=Q(status="running"), name="task_running_key_idx"
            ),
            # The reaper: running tasks by lease expiry.
            models.Index(fields=["lease_expires_at"], condition=Q(status="running"), name="task_lease_idx"),
            models.Index(fields=["status", "created_at"], name="task_status_created_idx"),
            # Waiting claims' poller (agents/claim_wait.py): pending tasks changed since its last look.
            models.Index(fields=["updated_at"], condition=Q(status="pending"), name="task_pending_updated_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"

    @property
    def priority_label(self) -> str:
        return self.Priority(self.priority).label


class TaskAttempt(models.Model):
    """One claim of a task by one agent: who ran which attempt, and how it ended.

    It is what tells a late holder (409: its lease moved on) from an agent that never held the task (403).
    """

    class Outcome(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        EXPIRED = "expired"
        CANCELLED = "cancelled"
        PARKED = "parked"  # the holder asked for a human decision and released the lease

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="attempt_set")
    number = models.PositiveIntegerField()
    agent = models.ForeignKey(Agent, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    claimed_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)

    class Meta:
        ordering = ["task", "id"]
        constraints = [
            # The attempt number is the lease token: a number given twice would let a stale holder
            # report over a newer attempt.
            models.UniqueConstraint(fields=["task", "number"], name="task_attempt_number_unique"),
        ]

    def __str__(self) -> str:
        return f"task {self.task_id} attempt {self.number}"


class TaskEvent(models.Model):
    """One progress report, log line or piece of partial output a task's holder posted.

    Append-only and numbered per task (``seq`` from 1): a stream's ``Last-Event-ID`` is the last
    ``seq`` it saw. Kept after the task ends, for ``SYMPHONY_TASK_EVENT_RETENTION_DAYS``
    (``manage.py purge_task_events``).
    """

    class Type(models.TextChoices):
        PROGRESS = "progress"
        OUTPUT = "output"
        LOG = "log"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField(help_text="Position in the task's events, from 1.")
    type = models.CharField(max_length=16, choices=Type.choices)
    data = models.JSONField(default=dict, blank=True)
    attempt = models.PositiveIntegerField(help_text="The attempt whose holder posted the event.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["task", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["task", "seq"], name="task_event_seq_unique"),
            models.CheckConstraint(condition=Q(type__in=["progress", "output", "log"]), name="task_event_type_valid"),
        ]
        indexes = [models.Index(fields=["created_at"], name="task_event_created_idx")]

    def __str__(self) -> str:
        return f"task {self.task_id} event {self.seq}"


from agents.flow_models import Budget, ConcurrencyLimit, UsageRecord  # noqa: E402,F401 - registered with the agents app
