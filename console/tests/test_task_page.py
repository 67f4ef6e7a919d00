"""A task's page as a timeline, with Cancel and Retry buttons for those allowed, and the POSTs behind
them refused to everyone else (viewers, other projects, forged requests without the CSRF token)."""

from __future__ import annotations

import pytest
from django.test import Client

from agents.models import Task
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _client(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def _page(client: Client, task: Task) -> str:
    response = client.get(f"/admin/agents/task/{task.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def test_it_shows_the_timeline_and_an_operator_the_cancel_button(world, settings):
    settings.SYMPHONY_TRACE_URL_TEMPLATE = "https://jaeger.example/trace/{trace_id}"
    task = world.alpha.tasks["running"][0]
    Task.objects.filter(pk=task.pk).update(traceparent=f"00-{'ab' * 16}-{'cd' * 8}-01")
    html = _page(_client(world.operator), task)
    assert 'id="console-task-status" class="badge running">running<' in html
    assert "submitted by <b>submitter</b>" in html
    assert f'href="https://jaeger.example/trace/{"ab" * 16}"' in html
    assert "alpha-busy" in html  # the attempt's agent
    assert 'id="console-cancel"' in html
    assert 'id="console-retry"' not in html
    assert 'name="_save"' not in html


def test_it_shows_a_viewer_no_buttons_and_refuses_its_forged_post(world):
    task = world.alpha.tasks["pending"][0]
    client = _client(world.viewer)
    html = _page(client, task)
    assert "console-task-buttons" not in html
    assert 'name="_save"' not in html
    response = client.post(f"/admin/console/tasks/{task.pk}/cancel/")
    assert response.status_code == 403
    assert Task.objects.get(pk=task.pk).status == "pending"
    assert not AuditEvent.objects.filter(event_type="task.cancelled").exists()


def test_it_refuses_a_post_without_the_csrf_token(world):
    task = world.alpha.tasks["pending"][0]
    response = _client(world.operator, enforce_csrf_checks=True).post(f"/admin/console/tasks/{task.pk}/cancel/")
    assert response.status_code == 403
    assert Task.objects.get(pk=task.pk).status == "pending"


def test_it_cancels_and_retries_through_the_services(world):
    task = world.alpha.tasks["pending"][0]
    client = _client(world.operator)
    response = client.post(f"/admin/console/tasks/{task.pk}/cancel/")
    assert response.status_code == 302
    assert Task.objects.get(pk=task.pk).status == "cancelled"
    assert AuditEvent.objects.filter(event_type="task.cancelled", actor_name="alpha-op").count() == 1
    html = client.get(response["Location"]).content.decode()
    assert f"Task #{task.pk} cancelled." in html
    assert 'id="console-retry"' in html
    client.post(f"/admin/console/tasks/{task.pk}/retry/")
    assert Task.objects.get(pk=task.pk).status == "pending"


def test_it_explains_a_refused_transition_on_the_page(world):
    task = world.alpha.tasks["succeeded"][0]
    client = _client(world.operator)
    response = client.post(f"/admin/console/tasks/{task.pk}/cancel/", follow=True)
    assert "was not changed: Only unfinished tasks can be cancelled" in response.content.decode()
    assert Task.objects.get(pk=task.pk).status == "succeeded"


def test_it_answers_404_for_another_projects_task(world):
    task = world.beta.tasks["pending"][0]
    client = _client(world.operator)
    assert client.get(f"/admin/console/tasks/{task.pk}.json").status_code == 404
    assert client.post(f"/admin/console/tasks/{task.pk}/cancel/").status_code == 404
    assert Task.objects.get(pk=task.pk).status == "pending"


def test_it_serves_the_task_status_as_json(world):
    task = world.alpha.tasks["running"][0]
    body = _client(world.viewer).get(f"/admin/console/tasks/{task.pk}.json").json()
    assert body["status"] == "running"
    assert 'id="console-task-status"' in body["html"]


def test_it_lists_an_agents_current_and_recent_tasks(world):
    html = _client(world.operator).get(f"/admin/agents/agent/{world.alpha.busy.pk}/change/").content.decode()
    current = html.split('id="console-agent-current"')[1].split("</table>")[0]
    for task in world.alpha.tasks["running"]:
        assert f"#{task.pk}<" in current
    assert 'id="console-heartbeat-age"' in html


def test_it_styles_the_404_page(world, client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert 'id="error-404"' in response.content.decode()
    assert "console/favicon.svg" in response.content.decode()


def test_it_answers_the_task_lists_status_poll_for_visible_tasks_only(world):
    mine, theirs = world.alpha.tasks["running"][0], world.beta.tasks["pending"][0]
    client = _client(world.viewer)
    body = client.get(f"/admin/console/tasks/statuses.json?ids={mine.pk},{theirs.pk}").json()
    assert body == {"statuses": {str(mine.pk): "running"}}
    response = client.get("/admin/console/tasks/statuses.json?ids=1,x")
    assert response.status_code == 400
    assert "ids" in response.json()["error"]["message"]
    listing = client.get("/admin/agents/task/").content.decode()
    assert 'data-poll-url="/admin/console/tasks/statuses.json"' in listing


def test_it_styles_the_403_page(world):
    response = _client(world.viewer).get("/admin/agents/agent/add/")
    assert response.status_code == 403
    assert 'id="error-403"' in response.content.decode()


def _new(client: Client, after: int, filters: str = ""):
    from urllib.parse import urlencode

    query = urlencode({"ids": "", "after": after, "filters": filters})
    return client.get(f"/admin/console/tasks/statuses.json?{query}")


def test_the_list_poll_counts_newer_tasks_matching_the_lists_filters(world):
    from agents.tests.factories import TaskFactory

    newest = Task.objects.order_by("-pk").first().pk
    client = _client(world.operator)
    assert _new(client, newest).json()["new"] == 0
    TaskFactory(orchestra=world.alpha.orchestra, kind="echo")
    TaskFactory(orchestra=world.alpha.orchestra, kind="sum", status="failed")
    TaskFactory(orchestra=world.beta.orchestra, kind="echo")  # another project: never counted
    assert _new(client, newest).json()["new"] == 2
    assert _new(client, newest, "status__exact=pending").json()["new"] == 1
    assert _new(client, newest, f"orchestra__id__exact={world.alpha.orchestra.pk}&kind=sum&o=-8").json()["new"] == 1
    assert _new(client, newest, f"project__id__exact={world.beta.project.pk}").json()["new"] == 0
    assert _new(client, newest, "q=echo").json()["new"] is None  # a search: not applied, not announced
    assert _new(client, newest, "p=2").json()["new"] is None
    assert _new(client, newest, "orchestra__id__exact=abc").json()["new"] is None
    response = _new(client, "x")
    assert response.status_code == 400 and "after" in response.json()["error"]["message"]
