"""Fair claiming: within one priority, claims take turns between fairness keys (default: the submitter)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from agents import services
from agents.models import Task, TaskAttempt
from agents.tests.factories import OrchestraFactory


def _agents(make_agent, orchestra, n: int):
    return [make_agent(orchestra=orchestra) for _ in range(n)]


def _claim_round_robin(agents, claims: int) -> list[int]:
    """``claims`` claims of one task each, the agents taking turns; the claimed ids in claim order."""
    order = []
    for i in range(claims):
        tasks = agents[i % len(agents)].api.post("/api/v1/agent/claim/", {"max_tasks": 1}).json()["tasks"]
        order.extend(t["id"] for t in tasks)
    return order


@pytest.mark.django_db
def test_ten_tasks_queued_behind_10000_of_another_submitter_start_within_40_claims(make_api, make_agent):
    orchestra = OrchestraFactory(state="running")
    busy, late = make_api("operator"), make_api("operator")
    # The first submission goes through the service; the other 9,999 get the turns it would give them
    # (one more each, as the claim-order test below checks through the API), in one insert for speed.
    first, _ = services.task_submit(submitter=busy.user, orchestra=orchestra, kind="echo", input={"n": 0})
    Task.objects.bulk_create(
        Task(orchestra=orchestra, kind="echo", input={"n": n}, submitter=busy.user, fairness_key=first.fairness_key,
             fair_seq=first.fair_seq + n)
        for n in range(1, 10_000)
    )  # fmt: skip
    # Some of the busy submitter's work already ran: the late one joins at the current turn.
    agents = _agents(make_agent, orchestra, 8)
    warmup = _claim_round_robin(agents, 100)
    assert len(warmup) == 100 and first.pk in warmup
    late_ids = [
        late.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo"}).json()["id"] for _ in range(10)
    ]

    first_40 = _claim_round_robin(agents, 40)

    assert len(first_40) == 40
    assert set(late_ids) <= set(first_40)
    assert TaskAttempt.objects.values("agent").distinct().count() == 8
    assert set(late_ids).isdisjoint(warmup)


@pytest.mark.django_db
def test_claims_alternate_between_submitters_and_priorities_still_come_first(make_api, make_agent):
    orchestra = OrchestraFactory(state="running")
    a, b = make_api("operator"), make_api("operator")
    a_ids = [a.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo"}).json()["id"] for _ in range(4)]
    b_ids = [b.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo"}).json()["id"] for _ in range(4)]
    urgent = b.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo", "priority": "urgent"}).json()["id"]
    order = _claim_round_robin(_agents(make_agent, orchestra, 2), 9)
    assert order[0] == urgent
    assert order[1:] == [x for pair in zip(a_ids, b_ids, strict=True) for x in pair]


@pytest.mark.django_db
def test_an_explicit_fairness_key_groups_tasks_of_several_submitters(make_api, make_agent):
    orchestra = OrchestraFactory(state="running")
    a, b = make_api("operator"), make_api("operator")
    body = {"orchestra": orchestra.pk, "kind": "echo", "fairness_key": "customer:42"}
    first = [a.post("/api/v1/tasks/", body).json()["id"] for _ in range(2)]
    second = [b.post("/api/v1/tasks/", body).json()["id"] for _ in range(2)]
    other = a.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo", "fairness_key": "customer:7"})
    assert other.json()["fairness_key"] == "customer:7"
    order = _claim_round_robin(_agents(make_agent, orchestra, 1), 5)
    # customer:42 is one queue however many submitters feed it: customer:7 gets the second turn.
    assert order == [first[0], other.json()["id"], first[1], second[0], second[1]]


@pytest.mark.django_db
def test_it_refuses_a_bad_fairness_or_concurrency_key(make_api):
    orchestra = OrchestraFactory(state="running")
    api = make_api("operator")
    for field in ("fairness_key", "concurrency_key"):
        r = api.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo", field: "no spaces"})
        assert r.status_code == 400 and field in r.json()["error"]["details"]
    assert not Task.objects.exists()


@pytest.mark.django_db
@override_settings(SYMPHONY_TASK_FAIRNESS=False)
def test_with_fairness_off_claims_are_oldest_first(make_api, make_agent):
    orchestra = OrchestraFactory(state="running")
    a, b = make_api("operator"), make_api("operator")
    ids = [a.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo"}).json()["id"] for _ in range(3)]
    ids += [b.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo"}).json()["id"] for _ in range(2)]
    assert _claim_round_robin(_agents(make_agent, orchestra, 1), 5) == ids


def fair_seq_next_orm(*, fairness_key: str, priority: int) -> int:
    """What ``flow.fair_seq_next``'s SQL means, in the ORM."""
    from django.db.models import Max, Min

    pending = Task.objects.filter(status=Task.Status.PENDING, priority=priority)
    last = pending.filter(fairness_key=fairness_key).aggregate(m=Max("fair_seq"))["m"]
    if last is not None:
        return last + 1
    head = pending.aggregate(m=Min("fair_seq"))["m"]
    return head if head is not None else 1


@pytest.mark.django_db
def test_the_next_turn_written_as_sql_is_the_orms(make_api):
    from agents.services.flow import fair_seq_next

    orchestra = OrchestraFactory(state="running")
    submitter = make_api("operator").user

    def agree(key: str, priority: int) -> int:
        turn = fair_seq_next(fairness_key=key, priority=priority)
        assert turn == fair_seq_next_orm(fairness_key=key, priority=priority)
        return turn

    assert agree("a", Task.Priority.NORMAL) == 1  # an empty queue starts at turn 1
    normal, high = Task.Priority.NORMAL, Task.Priority.HIGH
    rows = [("a", 4, "pending", normal), ("a", 9, "cancelled", normal), ("b", 7, "pending", normal),
            ("a", 30, "pending", high)]  # fmt: skip
    for key, seq, status, priority in rows:
        Task.objects.create(orchestra=orchestra, kind="echo", submitter=submitter, fairness_key=key, fair_seq=seq,
                            status=status, priority=priority)  # fmt: skip
    assert agree("a", Task.Priority.NORMAL) == 5  # one past the key's last pending turn (not the cancelled one)
    assert agree("c", Task.Priority.NORMAL) == 4  # a new key joins at the lowest pending turn
    assert agree("a", Task.Priority.HIGH) == 31  # per priority
    assert agree("c", Task.Priority.URGENT) == 1
