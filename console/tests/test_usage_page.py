"""The usage page: tokens and cost over a period, per project, orchestra, agent and model, scoped to
the viewer's projects in a fixed number of queries; and an agent's own usage on its page."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.flow_models import UsageRecord

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _usage(side, *, model="gpt-4o", tokens=(100, 50), cost="0.50", ago=timedelta(hours=1), currency="USD", n=1):
    for _ in range(n):
        UsageRecord.objects.create(
            project=side.project, orchestra=side.orchestra, agent=side.busy, task=side.tasks["succeeded"][0],
            model=model, input_tokens=tokens[0], output_tokens=tokens[1], cost=Decimal(cost), currency=currency,
            source="completion", created_at=timezone.now() - ago,
        )  # fmt: skip


def _table(html: str, group: str) -> str:
    return html.split(f'id="usage-by-{group}"')[1].split("</table>")[0]


def test_it_sums_the_period_per_group_and_links_each_row_to_its_records(world):
    _usage(world.alpha, n=2)
    _usage(world.alpha, model="claude", tokens=(1000, 10), cost="2.00")
    _usage(world.alpha, cost="9.00", ago=timedelta(days=3))  # outside 24 h, inside 7 d
    _usage(world.beta, cost="1.25", currency="EUR")
    client = _client(world.root)
    html = client.get("/admin/console/usage/").content.decode()
    assert html.count('<svg class="console-chart"') == 3  # tokens, USD, EUR
    alpha = _table(html, "project").split("alpha")[1].split("</tr>")[0]
    assert ">1200<" in alpha and ">110<" in alpha and "3.0000 USD" in alpha
    assert "1.2500 EUR" in _table(html, "project")
    model = _table(html, "model")
    assert "claude" in model and "2.0000 USD" in model
    link = _table(html, "agent").split('href="')[1].split('"')[0].replace("&amp;", "&")
    assert link.startswith("/admin/agents/usagerecord/?agent__id__exact=")
    listed = client.get(link)
    assert listed.status_code == 200
    assert listed.content.decode().count('class="field-model"') == 3  # alpha-busy's USD records of 24 h
    week = client.get("/admin/console/usage/?period=7d").content.decode()
    assert "12.0000 USD" in _table(week, "project")
    assert 'id="usage-period-7d" class="selected"' in week


def test_it_shows_an_operator_only_its_projects_usage(world):
    _usage(world.alpha)
    _usage(world.beta, model="secret-model")
    client = _client(world.operator)
    html = client.get("/admin/console/usage/").content.decode()
    assert "alpha" in _table(html, "project") and "beta" not in _table(html, "project")
    assert "secret-model" not in html
    records = client.get("/admin/agents/usagerecord/").content.decode()
    assert "secret-model" not in records
    beta = client.get(f"/admin/agents/usagerecord/?project__id__exact={world.beta.project.pk}").content.decode()
    assert "secret-model" not in beta


def test_it_costs_the_same_number_of_queries_with_more_records(world):
    client = _client(world.operator)
    client.get("/admin/console/usage/")  # warm the permission caches
    counts = []
    for size in (1, 40):
        _usage(world.alpha, n=size, model=f"m{size}")
        _usage(world.alpha, n=size, ago=timedelta(hours=size % 20))
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/admin/console/usage/?period=30d").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert counts[1] <= 8  # session, user, five aggregates, and slack for one permission read


def test_it_refuses_an_unknown_period_naming_it(world):
    response = _client(world.root).get("/admin/console/usage/?period=1y")
    assert response.status_code == 400
    assert b"period" in response.content


def test_it_is_linked_from_the_dashboard_and_the_header(world):
    html = _client(world.viewer).get("/admin/").content.decode()
    assert 'href="/admin/console/usage/" id="dash-usage-link"' in html
    assert 'id="console-usage-link" href="/admin/console/usage/"' in html


def test_it_shows_an_agents_usage_of_the_last_day_and_in_all(world):
    _usage(world.alpha, tokens=(100, 50), cost="0.50")
    _usage(world.alpha, tokens=(1000, 0), cost="4.00", ago=timedelta(days=2))
    html = _client(world.operator).get(f"/admin/agents/agent/{world.alpha.busy.pk}/change/").content.decode()
    row = html.split('id="console-agent-usage"')[1].split("</table>")[0]
    assert ">150<" in row and "0.5000" in row  # last 24 h
    assert ">1150<" in row and "4.5000" in row  # in all
