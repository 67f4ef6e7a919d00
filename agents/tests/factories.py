"""factory_boy factories for the agents tests. Agents are made through ``agent_create`` (with their key)."""

from __future__ import annotations

import factory

from accounts.tests import factories as accounts_factories
from agents.models import Orchestra, Task


class UserFactory(accounts_factories.UserFactory):
    """The accounts factory (one username sequence for every test's users), without a password hash."""

    class Meta:
        django_get_or_create = ("username",)

    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    password = ""

    @factory.post_generation
    def roles(self, create: bool, extracted: list[str] | None, **kwargs: object) -> None:
        if create and extracted:
            from accounts.models import Role

            self.roles.add(*Role.objects.filter(name__in=extracted))


class OrchestraFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Orchestra
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"orchestra-{n}")
    state = Orchestra.State.RUNNING

    @factory.post_generation
    def agents(self, create: bool, extracted: list | None, **kwargs: object) -> None:
        if create and extracted:
            self.agents.add(*extracted)


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    kind = "echo"
    input = factory.LazyFunction(lambda: {"text": "hello"})
    orchestra = factory.SubFactory(OrchestraFactory)
    # A task's project is its orchestra's (or its target agent's), as task_submit makes it.
    project = factory.LazyAttribute(lambda t: (t.orchestra or t.target_agent).project)
    submitter = factory.SubFactory(UserFactory)
