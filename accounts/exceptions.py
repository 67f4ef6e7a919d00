"""Domain errors of identity and access; each maps to one HTTP status and a stable code."""

from __future__ import annotations

from rest_framework import exceptions, status


class EscalationRefused(exceptions.PermissionDenied):
    """Granting a role, permission, key scope or superuser status the actor does not hold (403).

    ``field`` names the input that asked for it, so the API and admin forms can point at it.
    """

    default_code = "escalation_refused"
    default_detail = "You cannot grant a permission you do not hold yourself."

    def __init__(self, detail: str | None = None, *, field: str = "non_field_errors") -> None:
        super().__init__(detail)
        self.field = field
        self.extra_details = {field: [str(self.detail)]}


class IdentityConflict(exceptions.APIException):
    """A change the current state forbids (409). Subclasses name the rule in ``default_code``."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The change conflicts with the current state."

    def __init__(self, detail: str | None = None, *, field: str = "non_field_errors") -> None:
        super().__init__(detail)
        self.field = field
        self.extra_details = {field: [str(self.detail)]}


class LastSuperAdmin(IdentityConflict):
    default_code = "last_super_admin"
    default_detail = "The last active super admin cannot be demoted, deactivated or deleted."


class ProjectNotEmpty(IdentityConflict):
    default_code = "project_not_empty"
    default_detail = "A project that still owns objects cannot be deleted."


class SystemRoleProtected(IdentityConflict):
    default_code = "system_role_protected"
    default_detail = "System roles cannot be deleted or renamed."


class ApiKeyStateConflict(IdentityConflict):
    default_code = "api_key_state_conflict"
    default_detail = "This API key cannot change from its current state."


class DeletedConcurrently(IdentityConflict):
    """The row being changed was deleted by another request in the meantime (409)."""

    default_code = "deleted_concurrently"
    default_detail = "This object was deleted by another request; nothing was changed."


class PermissionCacheUnavailable(exceptions.APIException):
    """An identity change (roles, grants, users, keys) while the shared cache cannot be invalidated
    (503 with ``Retry-After``). Committing it would let entries cached before it stay trusted."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "cache_unavailable"
    default_detail = "Identity changes are refused while the shared cache is unreachable; try again shortly."
    wait = 5  # DRF's handler turns it into Retry-After
