"""Races on PostgreSQL: two super admins stepping down at once must leave one of them."""

import threading

import pytest
from django.db import connection

from accounts import services
from accounts.exceptions import LastSuperAdmin
from accounts.models import User

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_it_keeps_one_super_admin_when_the_last_two_step_down_together(user_factory):
    admins = [user_factory(roles=["super_admin"]) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def step_down(user: User) -> None:
        try:
            barrier.wait()
            services.role_revoke(actor=user, user=User.objects.get(pk=user.pk), role="super_admin")
            outcomes.append("demoted")
        except LastSuperAdmin:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=step_down, args=(user,)) for user in admins]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["demoted", "refused"]
    assert User.objects.filter(roles__name="super_admin").count() == 1
