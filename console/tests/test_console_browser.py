"""The operator console in Debian's Chromium: the dashboard's numbers per user, a task page that turns
to succeeded while open, approving from the inbox, and no CSP violation on any of these pages."""

from __future__ import annotations

import json
import urllib.request

import pytest
from playwright.sync_api import expect

from agents.models import Agent, Task
from console.tests.conftest import PASSWORD, build_world, staff
from workflows.models import Approval
from workflows.services import workflow_submit

# live_server serves from another thread, which SQLite's in-memory test database cannot share safely.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def _watch_csp(page) -> list[str]:
    """Collect CSP violations (console errors and securitypolicyviolation events) and page errors."""
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    return problems


def _login(page, live_server, username: str, next_url: str = "/admin/") -> None:
    page.goto(f"{live_server.url}/admin/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


def _num(page, element_id: str) -> int:
    return int(page.text_content(f"#{element_id} .num"))


@pytest.fixture
def world(fast_passwords):
    world = build_world()
    world.root = staff("root", superuser=True)
    world.operator = staff("alpha-op", role="operator", project=world.alpha.project)
    world.viewer = staff("alpha-viewer", role="viewer", project=world.alpha.project)
    return world


def test_the_dashboard_shows_each_user_the_numbers_of_its_projects(live_server, page, world):
    problems = _watch_csp(page)
    for user, projects in ((world.root, None), (world.operator, [world.alpha.project]),
                           (world.viewer, [world.alpha.project])):  # fmt: skip
        tasks = Task.objects.all() if projects is None else Task.objects.filter(project__in=projects)
        page.context.clear_cookies()
        _login(page, live_server, user.username)
        assert _num(page, "dash-tasks-pending") == tasks.filter(status="pending").count()
        assert _num(page, "dash-tasks-running") == tasks.filter(status="running").count()
        assert _num(page, "dash-tasks-waiting") == tasks.filter(status="waiting_approval").count()
        agents = Agent.objects.all() if projects is None else Agent.objects.filter(project__in=projects)
        assert _num(page, "dash-agents-busy") == agents.with_status("busy", Agent.heartbeat_cutoff()).count()
        assert page.locator("svg.console-chart").count() == 2
        page.click("#dash-tasks-pending")
        page.wait_for_selector("#result_list")
        shown = page.locator("#result_list tbody tr").count()
        assert shown == tasks.filter(status="pending").count()
    task = world.alpha.tasks["pending"][0]
    page.goto(f"{live_server.url}/admin/agents/task/{task.pk}/change/")  # still the viewer
    page.wait_for_selector("#console-task-status")
    assert page.locator("#console-cancel").count() == 0
    assert page.locator("input[name=_save]").count() == 0
    assert problems == []


def test_the_dashboard_updates_without_a_reload(live_server, page, world):
    problems = _watch_csp(page)
    _login(page, live_server, "root")
    before = _num(page, "dash-tasks-pending")
    Task.objects.filter(pk=world.beta.tasks["pending"][0].pk).update(status="cancelled")
    expect(page.locator("#dash-tasks-pending .num")).to_have_text(str(before - 1), timeout=3000)
    assert problems == []


def _agent_call(live_server, key: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(  # noqa: S310 - the test's own server
        f"{live_server.url}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the test's own server
        return json.loads(response.read())


def test_a_task_finished_by_a_worker_shows_succeeded_on_its_open_page(live_server, page, world):
    from agents import services

    agent, key = services.agent_create(owner=world.root, name="worker-1", capabilities=[])
    Agent.objects.filter(pk=agent.pk).update(project=world.alpha.project)
    world.alpha.orchestra.agents.add(agent)
    Task.objects.filter(project=world.alpha.project, status="pending").exclude(
        pk=world.alpha.tasks["pending"][0].pk
    ).update(status="cancelled")
    task = world.alpha.tasks["pending"][0]
    problems = _watch_csp(page)
    _login(page, live_server, "alpha-op", f"/admin/agents/task/{task.pk}/change/")
    assert page.text_content("#console-task-status") == "pending"
    _agent_call(live_server, key, "/api/v1/agent/heartbeat/", {"status": "idle"})
    claimed = _agent_call(live_server, key, "/api/v1/agent/claim/", {"max_tasks": 1})["tasks"]
    assert [t["id"] for t in claimed] == [task.pk]
    # Playwright's string predicates are eval()ed in the page, which the CSP forbids: poll with expect.
    expect(page.locator("#console-task-status")).to_have_text("running", timeout=3000)
    _agent_call(live_server, key, f"/api/v1/tasks/{task.pk}/complete/", {"attempt": claimed[0]["attempt"], "result": 1})
    expect(page.locator("#console-task-status")).to_have_text("succeeded", timeout=3000)
    assert "worker-1" in page.text_content("#console-attempts")
    page.goto(f"{live_server.url}/admin/agents/task/?project__id__exact={world.alpha.project.pk}")
    running = world.alpha.tasks["running"][0]
    cell = page.locator(f"#result_list tr:has(a[href^='/admin/agents/task/{running.pk}/change/']) td.field-status")
    expect(cell).to_have_text("running")
    Task.objects.filter(pk=running.pk).update(status="failed", agent=None, lease_expires_at=None)
    expect(cell).to_have_text("failed", timeout=3000)
    assert problems == []


def test_an_operator_approves_from_the_inbox_and_the_workflow_moves_on(live_server, page, world):
    steps = [
        {"key": "review", "type": "approval", "approvers": "orchestra:control", "question": "Ship 1.2?"},
        {"key": "deploy", "kind": "echo", "depends_on": ["review"]},
    ]
    run, _ = workflow_submit(submitter=world.root, orchestra=world.alpha.orchestra, name="release", steps=steps)
    approval = Approval.objects.get(run=run)
    problems = _watch_csp(page)
    _login(page, live_server, "alpha-op")
    assert _num(page, "dash-approvals") == 1
    page.click("#dash-approvals")
    page.wait_for_selector(f"#approval-{approval.pk}")
    assert "Ship 1.2?" in page.text_content(f"#approval-{approval.pk}")
    page.fill(f"#comment-{approval.pk}", "go")
    page.click(f"#approval-{approval.pk} button[value=approve]")
    page.wait_for_selector("#approvals-empty")
    assert f"Approval #{approval.pk} approved." in page.text_content(".messagelist")
    assert Approval.objects.get(pk=approval.pk).status == "approved"
    assert Task.objects.get(workflow=run.pk, step_key="deploy").status == "pending"
    page.goto(f"{live_server.url}/admin/workflows/workflowrun/{run.pk}/change/")
    page.wait_for_selector("#console-dag svg")
    assert page.locator("#console-dag a.step").count() == 2
    page.goto(f"{live_server.url}/admin/agents/agent/{world.alpha.busy.pk}/change/")
    page.wait_for_selector("#console-agent-current")
    page.goto(f"{live_server.url}/admin/no-such-page/")
    page.goto(f"{live_server.url}/no-such-page/")
    page.wait_for_selector("#error-404")
    assert problems == []


def test_an_operator_submits_a_task_and_a_workflow_from_the_lists(live_server, page, world):
    problems = _watch_csp(page)
    _login(page, live_server, "alpha-op", "/admin/agents/task/")
    page.click("#console-submit-task")
    page.select_option("#id_orchestra", str(world.alpha.orchestra.pk))
    page.fill("#id_kind", "echo")
    page.fill("#id_input", '{"text": ')
    page.click("#console-submit")
    expect(page.locator("#row-input .errorlist")).to_contain_text("Not valid JSON")
    page.fill("#id_input", '{"text": "hello"}')
    page.click("#console-submit")
    page.wait_for_selector("#console-task-status")
    task = Task.objects.latest("id")
    assert task.input == {"text": "hello"} and task.submitter == world.operator
    assert f"Task #{task.pk} submitted." in page.text_content(".messagelist")
    page.goto(f"{live_server.url}/admin/workflows/workflowrun/")
    page.click("#console-submit-workflow")
    page.select_option("#id_orchestra", str(world.alpha.orchestra.pk))
    page.fill("#id_name", "nightly")
    page.fill("#id_steps", '[{"key": "a", "kind": "echo"}, {"key": "b", "kind": "echo", "depends_on": ["a"]}]')
    page.click("#console-submit")
    page.wait_for_selector("#console-dag svg")
    assert page.locator("#console-dag a.step").count() == 2
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert problems == []


def test_the_usage_page_fits_the_screen_and_follows_the_period(live_server, page, world):
    from decimal import Decimal

    from django.utils import timezone

    from agents.flow_models import UsageRecord

    for side, cost in ((world.alpha, "0.75"), (world.beta, "3.00")):
        UsageRecord.objects.create(
            project=side.project, orchestra=side.orchestra, agent=side.busy, model="gpt-4o", input_tokens=1200,
            output_tokens=300, cost=Decimal(cost), source="completion", created_at=timezone.now(),
        )  # fmt: skip
    problems = _watch_csp(page)
    _login(page, live_server, "alpha-viewer")
    page.click("#dash-usage-link")
    page.wait_for_selector("#usage-charts svg.console-chart")
    assert "0.7500 USD" in page.text_content("#usage-by-project") and "beta" not in page.text_content("#content")
    page.click("#usage-period-30d")
    expect(page.locator("#usage-period-30d")).to_have_class("selected")
    assert page.locator("#content-main button, #content-main input[type=submit]").count() == 0
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    page.click("#usage-by-model tbody a")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 1
    page.goto(f"{live_server.url}/admin/agents/agent/{world.alpha.busy.pk}/change/")
    assert "1500" in page.text_content("#console-agent-usage")
    assert problems == []


def test_a_task_submitted_over_the_api_is_announced_on_the_open_list(live_server, page, world):
    from accounts.services import api_key_create

    _, key = api_key_create(owner=world.operator, name="op-key", scopes=None, project=None)
    problems = _watch_csp(page)
    _login(page, live_server, "alpha-op", "/admin/agents/task/")
    shown = page.locator("#result_list tbody tr").count()
    assert page.locator("#console-new-tasks").count() == 0
    assert page.evaluate("document.querySelector('#changelist .results').scrollWidth") <= page.evaluate(
        "document.querySelector('#changelist .results').clientWidth"
    )
    created = _agent_call(live_server, key, "/api/v1/tasks/",
                          {"orchestra": world.alpha.orchestra.pk, "kind": "echo", "input": {"n": 1}})  # fmt: skip
    expect(page.locator("#console-new-tasks")).to_have_text("1 new task: show", timeout=3000)
    assert page.locator("#result_list tbody tr").count() == shown  # nothing reloaded by itself
    page.click("#console-new-tasks a")
    expect(page.locator(f"#result_list a[href^='/admin/agents/task/{created['id']}/change/']")).to_have_count(1)
    expect(page.locator("#console-new-tasks")).to_have_count(0)
    assert problems == []
