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


class PermissionRequired(exceptions.PermissionDenied):
    """403 ``permission_denied`` that says what was missing: ``details`` is ``{"required": [codes],
    "project": slug or null, "limited_by": "roles" | "api_key_scopes" | "api_key_project"}``. The
    project is the one of an object the caller can see, or the caller's key's; never another."""

    def __init__(self, code: str, *, project: str | None, limited_by: str) -> None:
        super().__init__(f"Permission '{code}' is required.")
        self.extra_details = {"required": [code], "project": project, "limited_by": limited_by}


def _project_slug(project_id: int | None) -> str | None:
    if project_id is None:
        return None
    from accounts.models import Project

    return Project.objects.filter(pk=project_id).values_list("slug", flat=True).first()


def _lookup_kwarg(view: Any) -> str | None:
    return getattr(view, "lookup_url_kwarg", None) or getattr(view, "lookup_field", None)


def _method_supported(request: Request, view: Any) -> bool:
    method = request.method.lower()
    return method in getattr(view, "http_method_names", ()) and hasattr(view, method)


class ObjectFirstMixin:
    """For viewsets whose queryset is scoped to what the caller may see: a request for an object
    that the caller may not act on is answered only after the object is looked up, so an object
    out of sight is a 404 (as if missing) and one in sight a 403 naming its project."""

    object_first = True

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        code = getattr(request, "_denial_pending", None)
        if code is None:
            return
        obj = self.get_object()  # 404 when out of sight; project-scoped views deny in its project
        from accounts.access import denial_reason
        from accounts.backends import object_project_id

        project_id = object_project_id(obj)
        permission = HasRequiredPermission()
        permission._deny(
            request,
            self,
            code,
            project=_project_slug(project_id),
            limited_by=denial_reason(request.user, code, project_id),
        )


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
        scoped = getattr(view, "project_scoped", False)
        if code is not None and scoped:
            from accounts.access import projects_with

            # Held in some project: the view's queryset shows only those projects' objects.
            if projects_with(request.user, code):
                return True
        if code is None:
            self._audit_denial(request, view, code)
            return False
        if getattr(view, "object_first", False) and _lookup_kwarg(view) in (getattr(view, "kwargs", None) or {}):
            # An object URL: look the object up first (ObjectFirstMixin), so another project's
            # object (or one the caller cannot list) answers 404 like a missing one, not 403.
            request._denial_pending = code
            return True
        from accounts.access import denial_reason

        key_project = getattr(request.user, "_api_key_project_id", None)
        reason = denial_reason(request.user, code, in_any_project=scoped)
        self._deny(request, view, code, project=_project_slug(key_project), limited_by=reason)

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        if not getattr(view, "project_scoped", False):
            return True
        code = required_permission(request, view)
        from accounts.access import denial_reason
        from accounts.backends import object_project_id

        if object_project_id(obj) is None:
            return True  # not owned by a project (an audit event): the scoped queryset decided
        if code in (None, PUBLIC, AUTHENTICATED) or request.user.has_perm(code, obj):
            return True

        # The caller sees ``obj`` (it came through the scoped queryset), so naming its project is safe.
        project_id = object_project_id(obj)
        reason = denial_reason(request.user, code, project_id)
        self._deny(request, view, code, project=_project_slug(project_id), limited_by=reason)

    def _deny(self, request: Request, view: Any, code: str, *, project: str | None, limited_by: str) -> None:
        denied = PermissionRequired(code, project=project, limited_by=limited_by)
        self._audit_denial(request, view, code, denied.extra_details)
        raise denied

    @staticmethod
    def _audit_denial(request: Request, view: Any, code: str | None, why: dict[str, Any] | None = None) -> None:
        import audit

        details = {"permission": code, "path": request.path, "method": request.method}
        if why:
            details.update(project=why["project"], limited_by=why["limited_by"])
        audit.record(
            "authz.permission.denied",
            actor=request.user,
            outcome="denied",
            action=str(getattr(view, "action", None) or request.method)[:64],
            project=why["project"] if why else None,
            details=details,
        )
