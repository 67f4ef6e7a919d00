"""The default DRF permission class: every view action maps to one catalog code."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, permissions
from rest_framework.request import Request

#: Use as a ``required_perms`` value for actions any authenticated user may call (``me``).
AUTHENTICATED = "authenticated"
#: Use as a ``required_perms`` value for actions open to anonymous callers.
PUBLIC = "public"


def required_permission(request: Request, view: Any) -> str | None:
    """The catalog code a request needs: ``view.required_perms[view.action]`` on viewsets, else
    ``view.required_perms[request.method]``. None when the view does not list it (denied)."""
    required = getattr(view, "required_perms", None) or {}
    action = getattr(view, "action", None)
    if action is not None and action in required:
        return required[action]
    if request.method == "OPTIONS":
        return AUTHENTICATED
    return required.get(request.method)


def _method_supported(request: Request, view: Any) -> bool:
    method = request.method.lower()
    return method in getattr(view, "http_method_names", ()) and hasattr(view, method)


class HasRequiredPermission(permissions.BasePermission):
    """Grant a request when ``request.user.has_perm(code)`` for the view's required code.

    An action missing from ``required_perms`` is denied, so a new action is closed until someone
    decides who may call it (DRF's ``DjangoModelPermissions.perms_map`` idea). Unauthenticated
    requests get 401; authenticated ones without the permission get 403, and the denial is audited.
    """

    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not _method_supported(request, view):
            return True  # let DRF answer 405: nothing is served, and a 401/403 would misname the problem
        code = required_permission(request, view)
        if code == PUBLIC:
            return True
        if not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated()
        if code == AUTHENTICATED:
            return True
        if code is not None and request.user.has_perm(code):
            return True
        if code is not None and getattr(view, "project_scoped", False):
            from accounts.access import projects_with

            # Held in some project: the view's queryset shows only those projects' objects.
            if projects_with(request.user, code):
                return True
        self._audit_denial(request, view, code)
        if code is not None:
            self.message = f"Permission '{code}' is required."
        return False

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        if not getattr(view, "project_scoped", False):
            return True
        code = required_permission(request, view)
        if code in (None, PUBLIC, AUTHENTICATED) or request.user.has_perm(code, obj):
            return True
        self._audit_denial(request, view, code)
        self.message = f"Permission '{code}' is required."
        return False

    @staticmethod
    def _audit_denial(request: Request, view: Any, code: str | None) -> None:
        import audit

        audit.record(
            "authz.permission.denied",
            actor=request.user,
            outcome="denied",
            action=str(getattr(view, "action", None) or request.method)[:64],
            details={"permission": code, "path": request.path, "method": request.method},
        )
