"""Races on PostgreSQL: two super admins stepping down at once must leave one of them; a change to a
user deleted meanwhile is a clear 409, not a 500."""

import json
import threading

import pytest
from django.db import connection

from accounts import services
from accounts.exceptions import LastSuperAdmin
from accounts.models import User
from tests.races import behind_a_held_transaction

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


def test_it_answers_409_when_the_user_is_deleted_while_a_change_waits(client, user_factory, key_for):
    headers = key_for(user_factory(roles=["super_admin"]))
    bob = user_factory(username="bob")

    def rename():
        body = json.dumps({"first_name": "Robert"})
        return client.patch("/api/v1/users/bob/", body, content_type="application/json", headers=headers)

    response, waited = behind_a_held_transaction(
        lambda: services.user_delete(actor=None, user=User.objects.get(pk=bob.pk)), rename
    )
    assert waited, "the change never waited for the deletion's lock"
    assert response.status_code == 409, response.json()
    assert response.json()["error"]["code"] == "deleted_concurrently"
    assert not User.objects.filter(pk=bob.pk).exists()
