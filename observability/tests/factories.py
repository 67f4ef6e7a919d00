"""Factories for observability tests: users (from settings.AUTH_USER_MODEL) and their API keys."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"obs-user-{n}")

    @factory.post_generation
    def role_names(self, create: bool, extracted: list[str] | None, **kwargs) -> None:
        if create and extracted:
            self.roles.set(self.roles.model.objects.filter(name__in=extracted))
