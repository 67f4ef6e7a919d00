"""Factories for audit tests. Events go through ``audit.record()``: only it builds a valid chain."""

from __future__ import annotations

import factory
from django.apps import apps

import audit
from accounts.tests import factories as accounts_factories
from audit.services import audit_seal


class UserFactory(accounts_factories.UserFactory):
    """The accounts factory (one username sequence for every test's users), without a password hash."""

    class Meta:
        django_get_or_create = ("username",)

    password = "!unusable"  # tests log in with force_login; hashing a password costs ~0.3 s per user

    @factory.post_generation
    def codes(self, create: bool, extracted: list[str] | None, **kwargs):
        """``UserFactory(codes=["audit:read"])`` grants those catalog permissions directly."""
        if create and extracted:
            permission = apps.get_model("accounts", "Permission")
            # get_or_create: a transactional test's flush may have wiped the seeded catalog.
            self.extra_permissions.set([permission.objects.get_or_create(code=code)[0] for code in extracted])


class AuditEventFactory(factory.Factory):
    """``AuditEventFactory()`` appends a real event to the chain through ``audit.record()``."""

    class Meta:
        model = dict

    event_type = "resource.updated"
    actor = None
    outcome = "success"
    resource_type = "agents.agent"
    resource_id = factory.Sequence(str)
    action = "update"
    details = factory.LazyFunction(dict)

    @classmethod
    def _create(cls, model_class, event_type, **kwargs):
        # Sealed at once, as after a commit: tests run inside a transaction that never commits.
        event = audit.record(event_type, **kwargs)
        audit_seal()
        event.refresh_from_db()
        return event

    @classmethod
    def _build(cls, model_class, *args, **kwargs):
        raise NotImplementedError("audit events only exist once recorded: use create()")
