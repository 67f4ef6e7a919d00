"""Writes on identity: roles, users, their grants, and API keys.

Every service is keyword-only, atomic, audited inside its transaction, and refuses escalation: an
actor never grants a role, permission, key scope or superuser status beyond what they hold now
(through an API key: what the key may do). ``actor=None`` means the system itself (migrations,
``ensure_admin``) and is never refused. Effective-permission caches are dropped when the change
commits (and once right away, so nothing recomputed mid-transaction survives the commit).
"""

from accounts.exceptions import EscalationRefused
from accounts.services.api_keys import api_key_create, api_key_revoke, api_key_rotate
from accounts.services.common import held_codes, role_effective_codes, user_require_manageable
from accounts.services.grants import permission_grant, permission_revoke, role_grant, role_revoke
from accounts.services.projects import project_create, project_delete, project_update
from accounts.services.roles import role_create, role_delete, role_update
from accounts.services.sso import sso_login, sso_role_bindings_sync
from accounts.services.users import user_create, user_delete, user_set_password, user_update

__all__ = [
    "EscalationRefused",
    "api_key_create",
    "api_key_revoke",
    "api_key_rotate",
    "held_codes",
    "permission_grant",
    "permission_revoke",
    "project_create",
    "project_delete",
    "project_update",
    "role_create",
    "role_delete",
    "role_effective_codes",
    "role_grant",
    "role_revoke",
    "role_update",
    "sso_login",
    "sso_role_bindings_sync",
    "user_create",
    "user_delete",
    "user_require_manageable",
    "user_set_password",
    "user_update",
]
