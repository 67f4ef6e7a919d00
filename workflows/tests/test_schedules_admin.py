"""The schedules admin: list with next firings, and the pause / resume / run-now actions."""

from __future__ import annotations

import pytest
from django.test import Client

from agents.models import Task
from agents.tests.factories import OrchestraFactory, UserFactory
from workflows.models import Schedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def schedule() -> Schedule:
    from workflows.scheduling.services import schedule_create

    return schedule_create(
        actor=UserFactory(), orchestra=OrchestraFactory(name="main"), name="hourly", cron="0 * * * *",
        timezone="UTC", task={"kind": "report", "input": {}}, enabled=True, overlap="skip",
    )  # fmt: skip


def test_it_lists_and_shows_next_firings(staff, schedule):
    r = staff.get("/admin/workflows/schedule/", {"enabled__exact": "1"})
    assert r.status_code == 200 and b"hourly" in r.content
    r = staff.get(f"/admin/workflows/schedule/{schedule.pk}/change/")
    assert r.status_code == 200 and b"Next firings" in r.content and b":00:00" in r.content


def test_its_actions_pause_resume_and_run_now(staff, schedule):
    url = "/admin/workflows/schedule/"
    staff.post(url, {"action": "pause", "_selected_action": [schedule.pk]})
    assert Schedule.objects.get().enabled is False
    staff.post(url, {"action": "resume", "_selected_action": [schedule.pk]})
    assert Schedule.objects.get().enabled is True
    r = staff.post(url, {"action": "run_now", "_selected_action": [schedule.pk]}, follow=True)
    assert Task.objects.count() == 1 and b"Fired 1 schedule" in r.content
    r = staff.post(url, {"action": "run_now", "_selected_action": [schedule.pk]}, follow=True)
    assert Task.objects.count() == 1 and b"unfinished" in r.content  # overlap=skip
