"""Factories for observability tests: users (from settings.AUTH_USER_MODEL) and their API keys."""

from __future__ import annotations

import factory

from accounts.tests import factories as accounts_factories


class UserFactory(accounts_factories.UserFactory):
    """The accounts factory (one username sequence for every test's users), without a password hash."""

    class Meta:
        django_get_or_create = ("username",)

    password = ""

    @factory.post_generation
    def role_names(self, create: bool, extracted: list[str] | None, **kwargs) -> None:
        if create and extracted:
            self.roles.set(self.roles.model.objects.filter(name__in=extracted))
