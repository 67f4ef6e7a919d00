"""factory_boy factories for identity rows."""

from __future__ import annotations

import factory

from accounts import keys
from accounts.models import ApiKey, Permission, Project, Role, User

PASSWORD = "correct-horse-battery-staple-42"


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.LazyAttribute(lambda p: p.slug.replace("-", " ").title())


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def roles(self, create: bool, extracted: list[str] | None, **kwargs: object) -> None:
        if create and extracted:
            self.roles.set(Role.objects.filter(name__in=extracted))

    @factory.post_generation
    def extra_permissions(self, create: bool, extracted: list[str] | None, **kwargs: object) -> None:
        if create and extracted:
            self.extra_permissions.set(Permission.objects.filter(code__in=extracted))


class RoleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Role
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"custom-{n}")
    description = "A custom role."

    @factory.post_generation
    def permissions(self, create: bool, extracted: list[str] | None, **kwargs: object) -> None:
        if create and extracted:
            self.permissions.set(Permission.objects.filter(code__in=extracted))

    @factory.post_generation
    def parents(self, create: bool, extracted: list[str] | None, **kwargs: object) -> None:
        if create and extracted:
            self.parents.set(Role.objects.filter(name__in=extracted))


class ApiKeyFactory(factory.django.DjangoModelFactory):
    """A key row; the raw key is on ``.raw`` (the factory's only way to know it)."""

    class Meta:
        model = ApiKey
        skip_postgeneration_save = True

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"key-{n}")

    @classmethod
    def _create(cls, model_class: type[ApiKey], *args: object, **kwargs: object) -> ApiKey:
        prefix, raw = keys.generate()
        key = model_class.objects.create(*args, prefix=prefix, key_hash=keys.hash_key(raw), **kwargs)
        key.raw = raw
        return key

    @factory.post_generation
    def scopes(self, create: bool, extracted: list[str] | None, **kwargs: object) -> None:
        if create and extracted:
            self.scopes.set(Permission.objects.filter(code__in=extracted))
