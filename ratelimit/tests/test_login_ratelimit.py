"""Brute force against the admin login: limited per client IP and per username."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _small_limits(settings, clock, fast_passwords):
    settings.SYMPHONY_RATELIMIT_LOGIN_PER_IP = "5/m"
    settings.SYMPHONY_RATELIMIT_LOGIN_PER_USERNAME = "3/m"


def _attempt(client, username, ip="192.0.2.1", password="wrong"):  # noqa: S107
    return client.post("/admin/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_it_refuses_the_fourth_attempt_on_one_username_from_anywhere(client, user_with_role):
    user_with_role("victim", role="super_admin", is_staff=True)
    answers = [_attempt(client, "victim", ip=f"192.0.2.{i}") for i in range(1, 5)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[-1]["Retry-After"]) >= 1
    assert AuditEvent.objects.filter(event_type="security.rate_limit.exceeded").count() == 1


def test_it_refuses_one_address_trying_many_usernames(client):
    answers = [_attempt(client, f"user{i}") for i in range(6)]

    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert _attempt(client, "someone", ip="192.0.2.99").status_code == 200


def test_it_refuses_even_the_right_password_once_limited(client, user_with_role):
    user_with_role("dave", role="super_admin", is_staff=True)
    for _ in range(3):
        _attempt(client, "dave")

    assert _attempt(client, "dave", password="correct horse battery").status_code == 429
    assert "_auth_user_id" not in client.session


def test_it_does_not_count_looking_at_the_login_page(client):
    answers = [client.get("/admin/login/") for _ in range(8)]

    assert {a.status_code for a in answers} == {200}


def test_it_limits_the_browsable_api_login_too(client):
    answers = [
        client.post("/api-auth/login/", {"username": "victim", "password": "wrong"}, REMOTE_ADDR=f"192.0.2.{i}")
        for i in range(1, 5)
    ]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
