import pytest

from accounts import catalog
from accounts.models import Permission, Role
from accounts.seeding import ensure_catalog


@pytest.mark.django_db
def test_it_recreates_a_missing_catalog_and_system_roles():
    Role.objects.filter(name="viewer").delete()
    Permission.objects.filter(code="audit:export").delete()

    ensure_catalog()

    assert set(Permission.objects.values_list("code", flat=True)) == set(catalog.PERMISSIONS)
    viewer = Role.objects.get(name="viewer")
    assert viewer.is_system
    assert sorted(viewer.permissions.values_list("code", flat=True)) == sorted(catalog.SYSTEM_ROLES["viewer"][1])


@pytest.mark.django_db
def test_it_leaves_an_edited_system_role_alone():
    operator = Role.objects.get(name="operator")
    operator.permissions.remove(Permission.objects.get(code="agent:execute"))

    ensure_catalog()

    assert "agent:execute" not in set(operator.permissions.values_list("code", flat=True))


def test_it_runs_after_every_migrate():
    from django.db.models.signals import post_migrate

    assert any("ensure_catalog" in str(receiver) for receiver in post_migrate.receivers)
