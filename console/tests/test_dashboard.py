"""The admin index as a dashboard, through the real stack: numbers per viewer's projects, links to the
lists behind them, the JSON the page polls, and a query count that does not grow with the data."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _num(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*><span class="num"[^>]*>([^<]*)<', html)
    assert match, element_id
    return match.group(1)


def test_it_shows_a_superuser_every_projects_numbers(world):
    html = _client(world.root).get("/admin/").content.decode()
    assert _num(html, "dash-tasks-pending") == "8"  # 3 alpha + 5 beta
    assert _num(html, "dash-tasks-running") == "3"
    assert _num(html, "dash-tasks-waiting") == "1"
    assert _num(html, "dash-tasks-failed") == "3"  # the three-hour-old failures are not counted
    assert _num(html, "dash-agents-busy") == "2"  # the silent "busy" agents count as offline
    assert _num(html, "dash-agents-offline") == "2"
    assert _num(html, "dash-agents-online") == "4"
    assert _num(html, "dash-reclaimed") == "2"
    assert "alpha-band" in html and "beta-band" in html


def test_it_shows_a_project_operator_only_its_projects_numbers(world):
    html = _client(world.operator).get("/admin/").content.decode()
    assert _num(html, "dash-tasks-pending") == "3"
    assert _num(html, "dash-tasks-running") == "2"
    assert _num(html, "dash-tasks-failed") == "2"
    assert _num(html, "dash-reclaimed") == "1"
    assert _num(html, "dash-agents-offline") == "1"
    assert "beta-band" not in html


def test_its_numbers_link_to_the_filtered_list_showing_the_same_rows(world):
    client = _client(world.operator)
    html = client.get("/admin/").content.decode()
    link = re.search(r'id="dash-tasks-pending" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    listing = client.get(link)
    assert listing.status_code == 200
    shown = set(re.findall(r"/admin/agents/task/(\d+)/change/", listing.content.decode()))
    assert shown == {str(t.pk) for t in world.alpha.tasks["pending"]}
    failed = re.search(r'id="dash-tasks-failed" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    shown = set(re.findall(r"/admin/agents/task/(\d+)/change/", client.get(failed).content.decode()))
    assert shown == {str(t.pk) for t in world.alpha.tasks["failed"]}
    busy = re.search(r'id="dash-agents-busy" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    page = client.get(busy).content.decode()
    assert "alpha-busy" in page and "alpha-gone" not in page and "beta-busy" not in page


def test_it_serves_its_numbers_as_json_for_the_poll(world):
    body = _client(world.operator).get("/admin/console/dashboard.json").json()
    assert body["numbers"]["tasks"]["totals"]["pending"] == 3
    assert body["numbers"]["throughput"]["hour"]["succeeded"] == 2
    assert body["numbers"]["throughput"]["hour"]["failed"] == 2
    assert 'id="dash-tasks-pending"' in body["html"]


def test_it_refuses_the_json_to_anonymous_callers(world):
    response = Client().get("/admin/console/dashboard.json")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_it_shows_a_user_without_fleet_permissions_an_empty_dashboard(world):
    from console.tests.conftest import staff

    nobody = staff("nobody")
    html = _client(nobody).get("/admin/").content.decode()
    assert "You can read no project" in html
    assert "dash-tasks-pending" not in html


def test_it_costs_the_same_queries_with_more_data(world, django_assert_num_queries, settings):
    from agents.tests.factories import TaskFactory
    from console.dashboard import dashboard_numbers

    settings.SYMPHONY_CONSOLE_CHART_CACHE_SECONDS = 0
    dashboard_numbers(viewer=world.operator)  # warms the permission cache
    with django_assert_num_queries(7) as first:
        dashboard_numbers(viewer=world.operator)
    for _ in range(30):
        TaskFactory(orchestra=world.alpha.orchestra, status="failed", finished_at=world.now)
    with django_assert_num_queries(len(first.captured_queries)):
        dashboard_numbers(viewer=world.operator)
