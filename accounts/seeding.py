"""Keep the permission catalog and the system roles present.

The data migration seeds them once; this runs after every ``migrate`` (and after the flush that ends
each transactional test, which emits ``post_migrate``), and only creates what is missing: roles an
operator has edited are left as they are.
"""

from __future__ import annotations

from typing import Any

from accounts import catalog


def ensure_catalog(*, apps: Any = None, using: str = "default", **_: Any) -> None:
    """Create missing catalog permissions and missing system roles (with their default permissions)."""
    if apps is None:
        from django.apps import apps
    Permission = apps.get_model("accounts", "Permission")
    Role = apps.get_model("accounts", "Role")
    by_code = {p.code: p for p in Permission.objects.using(using).all()}
    for code, description in catalog.PERMISSIONS.items():
        if code not in by_code:
            by_code[code] = Permission.objects.using(using).create(code=code, description=description)
    existing = set(Role.objects.using(using).filter(name__in=catalog.SYSTEM_ROLES).values_list("name", flat=True))
    for name, (description, codes) in catalog.SYSTEM_ROLES.items():
        if name not in existing:
            role = Role.objects.using(using).create(name=name, description=description, is_system=True)
            role.permissions.set([by_code[code] for code in codes])
