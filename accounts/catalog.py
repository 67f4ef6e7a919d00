"""The permission catalog (codes ``resource:action``), the seeded system roles, and the mapping
between catalog codes and Django model permissions that lets the admin obey the same roles."""

PERMISSIONS: dict[str, str] = {
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

ALL = sorted(PERMISSIONS)

SYSTEM_ROLES: dict[str, tuple[str, list[str]]] = {
    "super_admin": ("Every permission.", ALL),
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

# Django model permission -> the catalog code that grants it. The admin asks Django's model
# permissions; the API asks catalog codes; the RBAC backend answers both from the same roles.
DJANGO_PERMISSIONS: dict[str, str] = {
    "accounts.view_user": "user:read",
    "accounts.add_user": "user:create",
    "accounts.change_user": "user:update",
    "accounts.delete_user": "user:delete",
    "accounts.view_role": "user:read",
    "accounts.add_role": "system:admin",
    "accounts.change_role": "system:admin",
    "accounts.delete_role": "system:admin",
    "accounts.view_permission": "user:read",
    "accounts.view_apikey": "user:read",
    "accounts.add_apikey": "user:update",
    "accounts.change_apikey": "user:update",
    "accounts.delete_apikey": "user:update",
    "audit.view_auditevent": "audit:read",
    "audit.export_auditevent": "audit:export",
    "agents.view_agent": "agent:read",
    "agents.add_agent": "agent:create",
    "agents.change_agent": "agent:update",
    "agents.delete_agent": "agent:delete",
    "agents.view_orchestra": "orchestra:read",
    "agents.add_orchestra": "orchestra:create",
    "agents.change_orchestra": "orchestra:update",
    "agents.delete_orchestra": "orchestra:delete",
    "agents.view_task": "agent:read",
    "agents.add_task": "agent:execute",
    "agents.change_task": "agent:execute",
    "agents.delete_task": "agent:delete",
    "workflows.view_workflowrun": "agent:read",
    "workflows.change_workflowrun": "agent:execute",
    "workflows.view_approval": "agent:read",
    "webhooks.view_webhook": "system:monitor",
    "webhooks.add_webhook": "system:config",
    "webhooks.change_webhook": "system:config",
    "webhooks.delete_webhook": "system:config",
    "webhooks.view_delivery": "system:monitor",
    "webhooks.change_delivery": "system:config",
}


def expand(codes: set[str]) -> set[str]:
    """Catalog codes plus every Django model permission they grant."""
    granted = set(codes)
    granted.update(django_perm for django_perm, code in DJANGO_PERMISSIONS.items() if code in codes)
    return granted
