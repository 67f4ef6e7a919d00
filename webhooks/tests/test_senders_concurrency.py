"""Several senders at once on PostgreSQL: SKIP LOCKED and the lease mean no delivery is taken twice."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from audit import hooks
from webhooks import sender
from webhooks.models import Delivery
from webhooks.services import webhook_create


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_claims_never_share_a_delivery(project_factory) -> None:
    project = project_factory(slug="alpha")
    webhook_create(actor=None, project=project, url="http://127.0.0.1:9/", events=["*"])
    with transaction.atomic():
        for n in range(200):
            hooks.emit("task.succeeded", project_id=project.pk, data={"n": n})
    taken: list[list[int]] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        try:
            barrier.wait()
            mine: list[int] = []
            while batch := sender.deliveries_claim(limit=7):
                mine += [d.pk for d in batch]
            taken.append(mine)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [pk for mine in taken for pk in mine]
    assert len(every) == len(set(every)) == Delivery.objects.count() == 200
