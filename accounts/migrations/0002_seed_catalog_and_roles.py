"""Seed the 22 catalog permissions and the seven system roles.

The catalog is copied here rather than imported, so this migration keeps meaning what it meant when
it was written even after accounts/catalog.py changes (later changes get their own migration).
"""

from django.db import migrations

PERMISSIONS = {
    "agent:create": "Register new agents.",
    "agent:read": "View agents, their status and their tasks.",
    "agent:update": "Change agents' settings and capabilities.",
    "agent:delete": "Remove agents.",
    "agent:execute": "Submit, cancel and retry tasks for agents.",
    "orchestra:create": "Create orchestras.",
    "orchestra:read": "View orchestras and their members.",
    "orchestra:update": "Change orchestras and their membership.",
    "orchestra:delete": "Delete orchestras.",
    "orchestra:control": "Start, pause, resume and stop orchestras.",
    "trust:read": "View agents' trust levels.",
    "trust:verify": "Raise an agent's trust level to verified.",
    "trust:manage": "Set any trust level on any agent.",
    "system:config": "Change system configuration.",
    "system:monitor": "View health details and metrics.",
    "system:admin": "Administer the platform: roles and system settings.",
    "user:create": "Create users.",
    "user:read": "View users, their roles and all API keys.",
    "user:update": "Change users, their roles and permissions.",
    "user:delete": "Delete users.",
    "audit:read": "Search the audit trail.",
    "audit:export": "Export the audit trail.",
}

ROLES = {
    "super_admin": ("Every permission.", sorted(PERMISSIONS)),
    "admin": (
        "Administers agents, orchestras and users; reads the audit trail.",
        [
            "agent:create",
            "agent:read",
            "agent:update",
            "agent:delete",
            "orchestra:create",
            "orchestra:read",
            "orchestra:update",
            "orchestra:delete",
            "orchestra:control",
            "trust:read",
            "trust:verify",
            "system:config",
            "system:monitor",
            "user:create",
            "user:read",
            "user:update",
            "audit:read",
        ],
    ),
    "operator": (
        "Runs the fleet: agents, orchestras and tasks.",
        [
            "agent:create",
            "agent:read",
            "agent:update",
            "agent:execute",
            "orchestra:read",
            "orchestra:update",
            "orchestra:control",
            "trust:read",
            "trust:verify",
            "system:monitor",
        ],
    ),
    "developer": (
        "Builds and tests agents.",
        [
            "agent:create",
            "agent:read",
            "agent:update",
            "agent:execute",
            "orchestra:read",
            "trust:read",
            "system:monitor",
        ],
    ),
    "analyst": (
        "Reads the fleet and the audit trail.",
        ["agent:read", "orchestra:read", "trust:read", "system:monitor", "audit:read", "audit:export"],
    ),
    "viewer": ("Reads the fleet.", ["agent:read", "orchestra:read", "trust:read", "system:monitor"]),
    "guest": ("Sees agents and system status.", ["agent:read", "system:monitor"]),
}


def seed(apps, schema_editor):
    Permission = apps.get_model("accounts", "Permission")
    Role = apps.get_model("accounts", "Role")
    by_code = {}
    for code, description in PERMISSIONS.items():
        by_code[code], _ = Permission.objects.update_or_create(code=code, defaults={"description": description})
    for name, (description, codes) in ROLES.items():
        role, _ = Role.objects.update_or_create(name=name, defaults={"description": description, "is_system": True})
        role.permissions.set([by_code[code] for code in codes])


def unseed(apps, schema_editor):
    apps.get_model("accounts", "Role").objects.filter(name__in=ROLES).delete()
    apps.get_model("accounts", "Permission").objects.filter(code__in=PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
