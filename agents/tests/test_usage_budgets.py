"""LLM usage reported on completion, failure and events, its aggregates and metrics, and budgets that stop dispatch."""

from __future__ import annotations

from decimal import Decimal

import pytest
import time_machine
from django.test import Client

from agents import services
from agents.flow_models import UsageRecord
from agents.models import Task, TaskEvent
from audit.models import AuditEvent

GPT = {"model": "gpt-4o", "input_tokens": 1200, "output_tokens": 300, "cost": "0.0123", "currency": "USD"}


@pytest.fixture
def running(orchestra):
    orchestra.state = "running"
    orchestra.save()
    return orchestra


def _claimed(worker, submitter, orchestra):
    services.task_submit(submitter=submitter, orchestra=orchestra, kind="echo")
    (task,) = worker.api.post("/api/v1/agent/claim/", {}).json()["tasks"]
    return task


@pytest.mark.django_db
def test_completion_and_failure_report_usage_that_the_usage_api_sums_exactly(admin_api, make_agent, running):
    worker = make_agent(orchestra=running, name="w1")
    task = _claimed(worker, admin_api.user, running)
    r = worker.api.post(f"/api/v1/tasks/{task['id']}/complete/", {"attempt": 1, "usage": [GPT, GPT]})
    assert r.status_code == 200, r.content
    task = _claimed(worker, admin_api.user, running)
    claude = {"model": "claude", "input_tokens": 10, "output_tokens": 5, "cost": "0.1", "currency": "EUR"}
    r = worker.api.post(f"/api/v1/tasks/{task['id']}/fail/", {"attempt": 1, "error": "x", "usage": [claude]})
    assert r.status_code == 200, r.content

    by_model = admin_api.get("/api/v1/usage/", {"group_by": "model"}).json()["results"]
    assert by_model == [
        {"key": "claude", "currency": "EUR", "input_tokens": 10, "output_tokens": 5, "cost": "0.1000000000",
         "records": 1},
        {"key": "gpt-4o", "currency": "USD", "input_tokens": 2400, "output_tokens": 600, "cost": "0.0246000000",
         "records": 2},
    ]  # fmt: skip
    by_agent = admin_api.get("/api/v1/usage/", {"group_by": "agent"}).json()["results"]
    assert {(row["key"], row["currency"]) for row in by_agent} == {("w1", "EUR"), ("w1", "USD")}
    by_day = admin_api.get("/api/v1/usage/", {"group_by": "day"}).json()["results"]
    assert len({row["key"] for row in by_day}) == 1
    later = admin_api.get("/api/v1/usage/", {"since": "2999-01-01T00:00:00Z"}).json()["results"]
    assert later == []
    assert {r.source for r in UsageRecord.objects.all()} == {"completion", "failure"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({**GPT, "temperature": 1}, "0.temperature"),
        ({**GPT, "input_tokens": -1}, "0.input_tokens"),
        ({**GPT, "output_tokens": -5}, "0.output_tokens"),
        ({**GPT, "cost": 0.0123}, "0.cost"),
        ({**GPT, "cost": "-0.01"}, "0.cost"),
        ({**GPT, "cost": "1e3"}, "0.cost"),
        ({**GPT, "currency": "usd"}, "0.currency"),
        ({**GPT, "model": ""}, "0.model"),
    ],
)
def test_bad_usage_gets_400_naming_the_field_and_nothing_is_written(admin_api, make_agent, running, entry, field):
    worker = make_agent(orchestra=running)
    task = _claimed(worker, admin_api.user, running)
    r = worker.api.post(f"/api/v1/tasks/{task['id']}/complete/", {"attempt": 1, "usage": [entry]})
    assert r.status_code == 400
    assert field in r.json()["error"]["details"]["usage"]
    assert Task.objects.get(pk=task["id"]).status == "running"
    assert not UsageRecord.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field"),
    [({"group_by": "colour"}, "group_by"), ({"since": "yesterday"}, "since"), ({"bogus": "1"}, "bogus")],
)
def test_bad_usage_queries_get_400_naming_the_parameter(admin_api, params, field):
    r = admin_api.get("/api/v1/usage/", params)
    assert r.status_code == 400
    assert field in r.json()["error"]["details"]


@pytest.mark.django_db
def test_usage_shows_in_prometheus_by_model(admin_api, make_agent, running, django_capture_on_commit_callbacks):
    worker = make_agent(orchestra=running)
    task = _claimed(worker, admin_api.user, running)
    model = {**GPT, "model": "metrics-model-x"}
    with django_capture_on_commit_callbacks(execute=True):
        worker.api.post(f"/api/v1/tasks/{task['id']}/complete/", {"attempt": 1, "usage": [model]})
    body = Client().get("/metrics").content.decode()
    tokens = [line for line in body.splitlines() if line.startswith("symphony_llm_tokens_total{")]
    assert any('model="metrics-model-x"' in line and 'direction="input"' in line for line in tokens)
    cost = [line for line in body.splitlines() if line.startswith("symphony_llm_cost_total{")]
    assert any('model="metrics-model-x"' in line and 'currency="USD"' in line for line in cost)


@pytest.mark.django_db
def test_usage_reported_with_events_is_counted_once_and_charged_before_the_task_ends(admin_api, make_agent, running):
    worker = make_agent(orchestra=running, name="streamer")
    task = _claimed(worker, admin_api.user, running)
    url = f"/api/v1/tasks/{task['id']}/events/"
    r = worker.api.post(url, {"attempt": 1, "type": "output", "data": {"text": "Hel"}, "usage": [GPT]})
    assert r.status_code == 201, r.content
    assert [e["type"] for e in r.json()] == ["output"]
    r = worker.api.post(url, {"attempt": 1, "usage": [GPT]})  # usage alone appends no event
    assert r.status_code == 201 and r.json() == []
    assert worker.api.post(url, {"attempt": 1, "usage": [{**GPT, "cost": "-1"}]}).status_code == 400
    assert worker.api.post(url, {"attempt": 2, "usage": [GPT]}).status_code == 409  # not the holder's attempt

    (group,) = admin_api.get("/api/v1/usage/", {"group_by": "model"}).json()["results"]
    assert (group["key"], group["input_tokens"], group["cost"], group["records"]) == ("gpt-4o", 2400, "0.0246000000", 2)
    assert set(UsageRecord.objects.values_list("source", flat=True)) == {"event"}
    assert list(TaskEvent.objects.filter(task_id=task["id"]).values_list("seq", flat=True)) == [1]


@pytest.mark.django_db
def test_a_spent_budget_stops_claims_and_submissions_until_the_period_resets(admin_api, make_agent, running):
    with time_machine.travel("2026-03-10 12:00:00Z", tick=False):
        r = admin_api.post("/api/v1/budgets/", {"orchestra": running.pk, "limit": "0.05", "period": "day"})
        assert r.status_code == 201, r.content
        budget = r.json()
        worker = make_agent(orchestra=running)
        for cost in ("0.03", "0.01", "0.02"):  # 60 %, 80 %, 120 %
            task = _claimed(worker, admin_api.user, running)
            usage = [{"model": "m", "cost": cost}]
            assert (
                worker.api.post(f"/api/v1/tasks/{task['id']}/complete/", {"attempt": 1, "usage": usage}).status_code
                == 200
            )
        events = AuditEvent.objects.filter(event_type__startswith="budget.").order_by("id")
        assert [(e.event_type, e.details["percent"]) for e in events.exclude(event_type="budget.created")] == [
            ("budget.threshold_crossed", 80),
            ("budget.exhausted", 100),
        ]
        assert admin_api.get(f"/api/v1/budgets/{budget['id']}/").json()["is_exhausted"] is True

        queued = Task.objects.create(orchestra=running, kind="echo", submitter=admin_api.user)
        assert worker.api.post("/api/v1/agent/claim/", {}).json()["tasks"] == []
        r = admin_api.post("/api/v1/tasks/", {"orchestra": running.pk, "kind": "echo"})
        assert r.status_code == 429
        error = r.json()["error"]
        assert error["code"] == "budget_exhausted"
        assert error["details"]["reset_at"] == "2026-03-11T00:00:00+00:00"
        assert int(r.headers["Retry-After"]) == 12 * 3600

    with time_machine.travel("2026-03-11 00:00:01Z", tick=False):
        (task,) = worker.api.post("/api/v1/agent/claim/", {}).json()["tasks"]
        assert task["id"] == queued.pk
        assert admin_api.post("/api/v1/tasks/", {"orchestra": running.pk, "kind": "echo"}).status_code == 201


@pytest.mark.django_db
def test_a_budget_counts_what_was_already_spent_and_refuses_float_limits(admin_api, make_agent, running):
    worker = make_agent(orchestra=running)
    task = _claimed(worker, admin_api.user, running)
    worker.api.post(f"/api/v1/tasks/{task['id']}/complete/", {"attempt": 1, "usage": [{**GPT, "cost": "2.5"}]})
    r = admin_api.post("/api/v1/budgets/", {"orchestra": running.pk, "limit": 10.5})
    assert r.status_code == 400 and "limit" in r.json()["error"]["details"]
    r = admin_api.post("/api/v1/budgets/", {"orchestra": running.pk, "limit": "10", "period": "month"})
    assert Decimal(r.json()["spent"]) == Decimal("2.5")


@pytest.mark.django_db
def test_changing_a_budgets_period_recounts_what_was_spent_in_it(admin_api, make_agent, running):
    # Found by schemathesis (negative_data_rejection enabled): PATCH {"period": ...} was a 500.
    worker = make_agent(orchestra=running)
    task = _claimed(worker, admin_api.user, running)
    worker.api.post(f"/api/v1/tasks/{task['id']}/complete/", {"attempt": 1, "usage": [{**GPT, "cost": "2.5"}]})
    budget = admin_api.post("/api/v1/budgets/", {"orchestra": running.pk, "limit": "10", "period": "month"}).json()

    r = admin_api.patch(f"/api/v1/budgets/{budget['id']}/", {"period": "day"})

    assert r.status_code == 200
    assert r.json()["period"] == "day"
    assert Decimal(r.json()["spent"]) == Decimal("2.5")


@pytest.mark.django_db
def test_a_project_budget_stops_every_orchestra_of_that_project_only(admin_api, make_agent, running, project_factory):
    other = project_factory(slug="other")
    r = admin_api.post("/api/v1/budgets/", {"project": "default", "limit": "0.01", "period": "month"})
    assert r.status_code == 201 and r.json()["project"] == "default"
    worker = make_agent(orchestra=running)
    task = _claimed(worker, admin_api.user, running)
    worker.api.post(f"/api/v1/tasks/{task['id']}/complete/", {"attempt": 1, "usage": [GPT]})
    r = admin_api.post("/api/v1/tasks/", {"orchestra": running.pk, "kind": "echo"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exhausted"
    from agents.tests.factories import OrchestraFactory

    elsewhere = OrchestraFactory(state="running", project=other, name="elsewhere")
    assert admin_api.post("/api/v1/tasks/", {"orchestra": elsewhere.pk, "kind": "echo"}).status_code == 201
    by_project = admin_api.get("/api/v1/usage/", {"group_by": "project"}).json()["results"]
    assert [(row["key"], row["cost"]) for row in by_project] == [("default", "0.0123000000")]
    assert admin_api.get("/api/v1/usage/", {"project": "other"}).json()["results"] == []


@pytest.mark.django_db
def test_a_member_of_one_project_sees_and_sets_only_its_limits_and_budgets(admin_api, make_api, project_factory):
    from accounts.models import Role, RoleBinding

    alpha, beta = project_factory(slug="alpha"), project_factory(slug="beta")
    for slug in ("alpha", "beta"):
        assert admin_api.post("/api/v1/budgets/", {"project": slug, "limit": "5"}).status_code == 201
        r = admin_api.post("/api/v1/concurrency-limits/", {"project": slug, "key": "k", "max_running": 1})
        assert r.status_code == 201
    from agents.tests.factories import UserFactory

    user = UserFactory()
    RoleBinding.objects.create(user=user, role=Role.objects.get(name="operator"), project=alpha)
    member = make_api(user=user)
    assert [b["project"] for b in member.get("/api/v1/budgets/").json()["results"]] == ["alpha"]
    assert [x["project"] for x in member.get("/api/v1/concurrency-limits/").json()["results"]] == ["alpha"]
    beta_budget = admin_api.get("/api/v1/budgets/", {"project": "beta"}).json()["results"][0]["id"]
    assert member.get(f"/api/v1/budgets/{beta_budget}/").status_code == 404
    r = member.post("/api/v1/budgets/", {"project": "beta", "limit": "1"})
    assert r.status_code == 400 and "project" in r.json()["error"]["details"]
    assert member.post("/api/v1/budgets/", {"project": "alpha", "limit": "1"}).status_code == 201
    assert beta.budgets.count() == 1


@pytest.mark.django_db
def test_the_submission_check_written_as_sql_picks_the_orms_budget(admin_api, running, project_factory):
    import datetime as dt

    from agents.exceptions import BudgetExhausted
    from agents.flow_models import Budget
    from agents.models import Orchestra
    from agents.services.usage import _covering, exhausted_budgets

    def exhausted_covering(*, project_id: int, orchestra_id: int | None):
        """What the submission's SQL check means, in the ORM: the spent budgets covering the
        destination, the one to report first."""
        return (
            exhausted_budgets()
            .filter(_covering(project_id=project_id, orchestra_id=orchestra_id))
            .order_by("period", "id")
        )

    other = Orchestra.objects.create(name="other", project=running.project, state=Orchestra.State.RUNNING)
    elsewhere = project_factory()
    cases = []

    def check(orchestra) -> int | None:
        expected = exhausted_covering(project_id=orchestra.project_id, orchestra_id=orchestra.pk).first()
        try:
            services.budget_check(project_id=orchestra.project_id, orchestra=orchestra)
        except BudgetExhausted as exc:
            cases.append(exc.budget.pk)
            assert expected is not None and exc.budget.pk == expected.pk
            return exc.budget.pk
        assert expected is None
        return None

    with time_machine.travel("2026-03-10 12:00:00Z", tick=False):

        def budget(**fields) -> Budget:
            fields.setdefault("project", running.project)
            fields.setdefault("period", "day")
            fields.setdefault("period_start", dt.date(2026, 3, 10))
            return Budget.objects.create(created_by=admin_api.user, **fields)

        budget(limit=Decimal("5"), spent=Decimal("4.99"))  # not spent
        budget(limit=Decimal("5"), spent=Decimal("9"), period_start=dt.date(2026, 3, 9))  # yesterday's
        budget(limit=Decimal("5"), spent=Decimal("9"), project=elsewhere)  # another project's
        budget(limit=Decimal("5"), spent=Decimal("9"), orchestra=other)  # another orchestra's
        assert check(running) is None
        monthly = budget(limit=Decimal("1"), spent=Decimal("1"), orchestra=running, period="month",
                         period_start=dt.date(2026, 3, 1))  # fmt: skip
        assert check(running) == monthly.pk
        assert check(other) == Budget.objects.get(orchestra=other).pk
        daily = budget(limit=Decimal("1"), spent=Decimal("2"))  # the project's own, a day: reported first
        assert check(running) == daily.pk
    assert len(cases) == 3
