"""Logins, logouts and failed logins through the admin become audit events."""

import pytest

from accounts.tests.factories import PASSWORD
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_it_records_login_and_logout(client, user_factory):
    user = user_factory(is_staff=True)
    response = client.post(
        "/admin/login/", {"username": user.username, "password": PASSWORD}, REMOTE_ADDR="198.51.100.7"
    )
    assert response.status_code == 302
    login = AuditEvent.objects.get(event_type="auth.login")
    assert login.actor == user
    assert login.ip_address == "198.51.100.7"
    client.post("/admin/logout/")
    assert AuditEvent.objects.get(event_type="auth.logout").actor_name == user.username


def test_it_records_a_failed_login_without_the_password(client, user_factory):
    user = user_factory(is_staff=True)
    response = client.post("/admin/login/", {"username": user.username, "password": "wrong-guess-123"})
    assert response.status_code == 200
    event = AuditEvent.objects.get(event_type="auth.failed")
    assert event.outcome == "failure"
    assert event.details == {"username": user.username, "method": "password"}
    assert "wrong-guess-123" not in str(AuditEvent.objects.values().get())
