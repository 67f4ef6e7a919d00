"""The identity API under /api/v1/: me, permissions, roles, users, api-keys.

Views validate with an input serializer, call a service, and answer with an output serializer.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import audit
from accounts import selectors, services
from accounts.access import access_explain
from accounts.backends import codes_in_project, user_project_role_names, user_role_names
from accounts.exceptions import EscalationRefused
from accounts.filters import ApiKeyFilter, PermissionFilter, RoleFilter, UserFilter
from accounts.models import ApiKey, Permission, Project, Role, User
from accounts.permissions import AUTHENTICATED, ObjectFirstMixin
from accounts.serializers import (
    AccessCheckQuerySerializer,
    AccessCheckSerializer,
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    MeSerializer,
    PermissionSerializer,
    ProjectInputSerializer,
    ProjectSerializer,
    RoleInputSerializer,
    RoleSerializer,
    UserInputSerializer,
    UserSerializer,
)
from symphony.serializers import validate_no_body

_WRITES = ("POST", "PUT", "PATCH")


class AuditRefusalsMixin:
    """Record escalation attempts. The service rolled its own work back, and requests are not
    atomic, so this event commits although the request answers 403."""

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, EscalationRefused):
            audit.record(
                "authz.permission.denied",
                outcome="denied",
                action=str(getattr(self, "action", "") or self.request.method)[:64],
                details={"reason": "escalation_refused", "field": exc.field, "message": str(exc.detail)},
            )
        return super().handle_exception(exc)


class InputSerializerMixin:
    """Answer with the output serializer, but let the browsable API render forms from the input one
    (it asks ``get_serializer()`` with a cloned POST/PUT request). The schema is explicit on writes."""

    input_serializer_class: type

    def get_serializer_class(self) -> type:
        request = getattr(self, "request", None)
        if (
            request is not None
            and request.method in _WRITES
            and self.action in ("create", "update", "partial_update", "list", "retrieve")
        ):
            return self.input_serializer_class
        return self.serializer_class


class MeView(APIView):
    """Who am I: username, roles, effective permissions, and the API key in use (or null)."""

    required_perms = {"GET": AUTHENTICATED}

    @extend_schema(responses=MeSerializer)
    def get(self, request: Request) -> Response:
        user = request.user
        key = _acting_key(request)
        data = {
            "username": user.get_username(),
            "email": user.email,
            "is_superuser": user.is_superuser,
            "roles": user_role_names(user),
            "projects": _me_projects(user),
            "permissions": sorted(services.held_codes(user)),
            "api_key": None if key is None else {"prefix": key.prefix, "name": key.name, "scopes": key.scopes_codes},
        }
        # Every value is already what MeSerializer would render (strings, a bool, lists of strings), so
        # the answer is built directly: the serializer copied each of the caller's codes one field call
        # at a time, a tenth of this read's CPU. It still documents the answer in the schema, and a
        # test holds the two equal.
        return Response(data)


def _me_projects(user: User) -> list[dict[str, Any]]:
    """The caller's project bindings with the codes usable there (through the key: its scopes, and
    its project only). Read from the permission cache: no query when warm."""
    scopes = getattr(user, "_api_key_scopes", None)
    key_project = getattr(user, "_api_key_project_id", None)
    answer = []
    for slug, (project_id, roles) in user_project_role_names(user).items():
        if key_project is not None and project_id != key_project:
            continue
        codes = codes_in_project(user, project_id)
        answer.append(
            {"project": slug, "roles": roles, "permissions": sorted(codes & scopes if scopes is not None else codes)}
        )
    return answer


class AccessCheckView(APIView):
    """Whether a user holds a permission (in a project, or globally) and through which binding:
    role (and project), role inherited from a parent role, extra permission, or superuser."""

    required_perms = {"GET": "user:read"}

    @extend_schema(parameters=[AccessCheckQuerySerializer], responses=AccessCheckSerializer)
    def get(self, request: Request) -> Response:
        query = AccessCheckQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        user, code, project = (query.validated_data.get(f) for f in ("user", "permission", "project"))
        answer = access_explain(user, code.code, project)
        data = {"user": user.username, "permission": code.code, "project": getattr(project, "slug", None), **answer}
        return Response(AccessCheckSerializer(data).data)


class ProjectViewSet(ObjectFirstMixin, InputSerializerMixin, viewsets.ModelViewSet):
    """Projects, by slug. Everyone signed in lists the projects they may act in; creating,
    changing and deleting them needs system:admin (globally)."""

    queryset = Project.objects.order_by("slug")
    serializer_class = ProjectSerializer
    input_serializer_class = ProjectInputSerializer
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    search_fields = ["slug", "name"]
    ordering_fields = ["slug", "name", "created_at"]
    filterset_fields = ["is_active"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    required_perms = {
        "list": AUTHENTICATED,
        "retrieve": AUTHENTICATED,
        "create": "system:admin",
        "update": "system:admin",
        "partial_update": "system:admin",
        "destroy": "system:admin",
    }

    def get_queryset(self) -> QuerySet[Project]:
        return selectors.project_list(viewer=self.request.user)

    @extend_schema(request=ProjectInputSerializer, responses={201: ProjectSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = services.project_create(actor=request.user, **_valid(ProjectInputSerializer, request))
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ProjectInputSerializer, responses=ProjectSerializer)
    def update(self, request: Request, *args: Any, partial: bool = False, **kwargs: Any) -> Response:
        project = self.get_object()
        data = _valid(ProjectInputSerializer, request, partial=partial)
        if data.pop("slug", project.slug) != project.slug:
            raise DjangoValidationError({"slug": ["A project's slug cannot be changed."]})
        project = services.project_update(actor=request.user, project=project, **data)
        return Response(ProjectSerializer(project).data)

    @extend_schema(request=ProjectInputSerializer, responses=ProjectSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.project_delete(actor=request.user, project=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class PermissionViewSet(viewsets.ReadOnlyModelViewSet):
    """The permission catalog. Everyone signed in may read it (to ask for roles and key scopes)."""

    queryset = Permission.objects.order_by("code")
    serializer_class = PermissionSerializer
    lookup_field = "code"
    lookup_value_regex = r"[a-z_]+:[a-z_]+"
    filterset_class = PermissionFilter
    search_fields = ["code", "description"]
    ordering_fields = ["code"]
    required_perms = {"list": AUTHENTICATED, "retrieve": AUTHENTICATED}

    def get_queryset(self) -> QuerySet[Permission]:
        return selectors.permission_list()


class RoleViewSet(AuditRefusalsMixin, InputSerializerMixin, viewsets.ModelViewSet):
    """Roles, by name. Reading needs user:read; changing them needs system:admin."""

    queryset = Role.objects.order_by("name")
    serializer_class = RoleSerializer
    input_serializer_class = RoleInputSerializer
    lookup_field = "name"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    filterset_class = RoleFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    required_perms = {
        "list": "user:read",
        "retrieve": "user:read",
        "create": "system:admin",
        "update": "system:admin",
        "partial_update": "system:admin",
        "destroy": "system:admin",
    }

    def get_queryset(self) -> QuerySet[Role]:
        return selectors.role_list()

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "effective": selectors.role_effective_map()}

    @extend_schema(request=RoleInputSerializer, responses={201: RoleSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _valid(RoleInputSerializer, request)
        role = services.role_create(actor=request.user, **data)
        return Response(self._out(role), status=status.HTTP_201_CREATED)

    @extend_schema(request=RoleInputSerializer, responses=RoleSerializer)
    def update(self, request: Request, *args: Any, partial: bool = False, **kwargs: Any) -> Response:
        data = _valid(RoleInputSerializer, request, partial=partial)
        role = services.role_update(actor=request.user, role=self.get_object(), **data)
        return Response(self._out(role))

    @extend_schema(request=RoleInputSerializer, responses=RoleSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.role_delete(actor=request.user, role=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _out(self, role: Role) -> dict[str, Any]:
        role = selectors.role_list().get(pk=role.pk)
        return RoleSerializer(role, context=self.get_serializer_context()).data


class UserViewSet(AuditRefusalsMixin, InputSerializerMixin, viewsets.ModelViewSet):
    """Users, by username, with their roles and extra permissions."""

    queryset = User.objects.order_by("username")
    serializer_class = UserSerializer
    input_serializer_class = UserInputSerializer
    lookup_field = "username"
    lookup_value_regex = r"[\w.@+-]+"
    filterset_class = UserFilter
    search_fields = ["username", "email", "first_name", "last_name"]
    ordering_fields = ["username", "email", "date_joined", "last_login"]
    required_perms = {
        "list": "user:read",
        "retrieve": "user:read",
        "create": "user:create",
        "update": "user:update",
        "partial_update": "user:update",
        "destroy": "user:delete",
    }

    def get_queryset(self) -> QuerySet[User]:
        return selectors.user_list()

    @extend_schema(request=UserInputSerializer, responses={201: UserSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _valid(UserInputSerializer, request)
        user = services.user_create(actor=request.user, **data)
        return Response(self._out(user), status=status.HTTP_201_CREATED)

    @extend_schema(request=UserInputSerializer, responses=UserSerializer)
    def update(self, request: Request, *args: Any, partial: bool = False, **kwargs: Any) -> Response:
        data = _valid(UserInputSerializer, request, partial=partial)
        user = services.user_update(actor=request.user, user=self.get_object(), **data)
        return Response(self._out(user))

    @extend_schema(request=UserInputSerializer, responses=UserSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.user_delete(actor=request.user, user=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _out(self, user: User) -> dict[str, Any]:
        return UserSerializer(selectors.user_list().get(pk=user.pk)).data


class ApiKeyViewSet(
    AuditRefusalsMixin, InputSerializerMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """API keys, by prefix: your own, or everyone's with user:read. Never the secret, except once
    in the response that creates it (or rotates it)."""

    queryset = ApiKey.objects.order_by("-created_at")
    serializer_class = ApiKeySerializer
    input_serializer_class = ApiKeyCreateSerializer
    lookup_field = "prefix"
    lookup_value_regex = r"[a-z0-9]{12}"
    filterset_class = ApiKeyFilter
    search_fields = ["name", "prefix", "owner__username"]
    ordering_fields = ["name", "created_at", "last_used_at", "expires_at"]
    required_perms = {
        "list": AUTHENTICATED,
        "retrieve": AUTHENTICATED,
        "create": AUTHENTICATED,
        "rotate": AUTHENTICATED,
        "revoke": AUTHENTICATED,
    }

    def get_queryset(self) -> QuerySet[ApiKey]:
        return selectors.api_key_list(viewer=self.request.user)

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request: Request) -> Response:
        data = _valid(ApiKeyCreateSerializer, request)
        scopes = data.get("scopes")
        key, raw = services.api_key_create(
            owner=data.get("owner") or request.user,
            name=data["name"],
            scopes=[p.code for p in scopes] if scopes is not None else None,
            expires_at=data.get("expires_at"),
            rate_limit=data.get("rate_limit"),
            actor=request.user,
            acting_key=_acting_key(request),
        )
        return Response(self._created(key, raw), status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={201: ApiKeyCreatedSerializer})
    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, prefix: str | None = None) -> Response:
        """Replace the key; the old one keeps working for the grace period. The new key is in `api_key`."""
        validate_no_body(request)
        new, raw = services.api_key_rotate(actor=request.user, key=self.get_object(), acting_key=_acting_key(request))
        return Response(self._created(new, raw), status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, prefix: str | None = None) -> Response:
        """Revoke the key at once."""
        validate_no_body(request)
        key = services.api_key_revoke(actor=request.user, key=self.get_object(), acting_key=_acting_key(request))
        return Response(ApiKeySerializer(selectors.api_key_list(viewer=request.user).get(pk=key.pk)).data)

    @staticmethod
    def _created(key: ApiKey, raw: str) -> dict[str, Any]:
        key = ApiKey.objects.select_related("owner", "rotated_to").prefetch_related("scopes").get(pk=key.pk)
        key.api_key = raw
        return ApiKeyCreatedSerializer(key).data


def _acting_key(request: Request) -> ApiKey | None:
    """The API key the request authenticated with, or None (a session)."""
    return request.auth if isinstance(request.auth, ApiKey) else None


def _valid(serializer_class: type, request: Request, *, partial: bool = False) -> dict[str, Any]:
    serializer = serializer_class(data=request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
