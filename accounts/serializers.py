"""Serializers: separate input (validation) and output (representation) shapes.

Permission codes and role names are the identifiers in every payload.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import ApiKey, Permission, Project, Role, RoleBinding, User
from accounts.validators import validate_rate_limit
from symphony.serializers import InputSerializer, SharedFields


def _codes(**kwargs: Any) -> serializers.SlugRelatedField:
    kwargs.setdefault("help_text", "Permission codes.")
    return serializers.SlugRelatedField(slug_field="code", queryset=Permission.objects.all(), many=True, **kwargs)


def _role_names(**kwargs: Any) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        slug_field="name", queryset=Role.objects.all(), many=True, help_text="Role names.", **kwargs
    )


# --- output -----------------------------------------------------------------------------------------


class PermissionSerializer(serializers.ModelSerializer):
    resource = serializers.CharField(read_only=True)
    action = serializers.CharField(read_only=True)

    class Meta:
        model = Permission
        fields = ["code", "description", "resource", "action"]
        read_only_fields = fields


class RoleSerializer(serializers.ModelSerializer):
    permissions = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    parents = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    effective_permissions = serializers.SerializerMethodField(help_text="Own and inherited codes, sorted.")

    class Meta:
        model = Role
        fields = [
            "name",
            "description",
            "permissions",
            "parents",
            "effective_permissions",
            "is_system",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_effective_permissions(self, role: Role) -> list[str]:
        effective = self.context.get("effective")
        if effective is None or role.pk not in effective:
            from accounts.selectors import role_effective_map

            effective = self.context["effective"] = role_effective_map()
        return effective.get(role.pk, [])


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["slug", "name", "description", "is_active", "created_at"]
        read_only_fields = fields


class UserSerializer(serializers.ModelSerializer):
    # A plain string: users may have no email, and "" is not a valid "format: email" value.
    email = serializers.CharField(read_only=True)
    roles = serializers.SerializerMethodField(
        help_text="Roles granted manually (what `roles` in a write sets): `role` globally, `role@project` in a project."
    )
    sso_roles = serializers.SerializerMethodField(
        help_text="Roles synced from single sign-on at the user's last SSO login (read-only)."
    )
    extra_permissions = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "is_active",
            "is_staff",
            "is_superuser",
            "roles",
            "sso_roles",
            "extra_permissions",
            "date_joined",
            "last_login",
        ]
        read_only_fields = fields

    @staticmethod
    def _role_names(user: User, source: str) -> list[str]:
        return sorted(
            f"{b.role.name}@{b.project.slug}" if b.project_id else b.role.name
            for b in user.role_bindings.all()
            if b.source == source
        )

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_roles(self, user: User) -> list[str]:
        return self._role_names(user, RoleBinding.Source.MANUAL)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_sso_roles(self, user: User) -> list[str]:
        return self._role_names(user, RoleBinding.Source.SSO)


class ApiKeySerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    scopes = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    rotated_to = serializers.SlugRelatedField(
        slug_field="prefix", read_only=True, allow_null=True, help_text="Prefix of the key that replaced this one."
    )
    is_active = serializers.SerializerMethodField(help_text="Not revoked and not expired.")

    class Meta:
        model = ApiKey
        fields = [
            "prefix",
            "name",
            "owner",
            "scopes",
            "rate_limit",
            "expires_at",
            "revoked_at",
            "rotated_at",
            "rotated_to",
            "last_used_at",
            "created_at",
            "is_active",
        ]
        read_only_fields = fields

    def get_is_active(self, key: ApiKey) -> bool:
        return not key.is_revoked and not key.is_expired


class ApiKeyCreatedSerializer(ApiKeySerializer):
    api_key = serializers.CharField(
        read_only=True, help_text="The raw key, sym_<prefix>_<secret>. Shown in this response only, never again."
    )

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "api_key"]
        read_only_fields = fields


class MeApiKeySerializer(serializers.Serializer):
    prefix = serializers.CharField()
    name = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField(), source="scopes_codes")


class MeProjectSerializer(serializers.Serializer):
    project = serializers.CharField(help_text="The project's slug.")
    roles = serializers.ListField(child=serializers.CharField(), help_text="Roles bound in this project.")
    permissions = serializers.ListField(
        child=serializers.CharField(), help_text="Effective codes in this project (global ones included), sorted."
    )


class MeSerializer(SharedFields, serializers.Serializer):
    username = serializers.CharField()
    email = serializers.CharField()
    is_superuser = serializers.BooleanField()
    roles = serializers.ListField(
        child=serializers.CharField(), help_text="Names of the roles held directly and globally."
    )
    projects = MeProjectSerializer(many=True, help_text="Projects where a role is bound, by slug.")
    permissions = serializers.ListField(
        child=serializers.CharField(), help_text="Effective codes, sorted (through an API key: scopes ∩ owner's)."
    )
    api_key = MeApiKeySerializer(allow_null=True, help_text="The key this request used, or null.")


# --- input ------------------------------------------------------------------------------------------


class RoleInputSerializer(InputSerializer):
    name = serializers.SlugField(max_length=64)
    description = serializers.CharField(max_length=255, required=False, allow_blank=True)
    permissions = _codes(required=False)
    parents = _role_names(required=False)


class UserInputSerializer(InputSerializer):
    username = serializers.CharField(max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True)
    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Write-only. Empty makes the password unusable (API keys only).",
    )
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    roles = serializers.ListField(
        child=serializers.CharField(max_length=130),
        required=False,
        help_text="The manual role bindings: `role` globally, `role@project` in that project (by slug).",
    )
    extra_permissions = _codes(required=False)
    is_active = serializers.BooleanField(required=False)
    is_staff = serializers.BooleanField(required=False)
    is_superuser = serializers.BooleanField(required=False)


class ProjectInputSerializer(InputSerializer):
    slug = serializers.SlugField(max_length=64, help_text="Lower-case identifier; cannot change later.")
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)

    def validate_slug(self, value: str) -> str:
        if value != value.lower():
            raise serializers.ValidationError("Use lower-case letters, digits, - and _.")
        return value


class ApiKeyCreateSerializer(InputSerializer):
    name = serializers.CharField(max_length=100)
    scopes = _codes(
        required=False,
        help_text="Codes the key may use; omitted means all the owner holds (through an API key: all of that key's).",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    rate_limit = serializers.CharField(
        max_length=32,
        required=False,
        allow_blank=True,
        validators=[validate_rate_limit],
        help_text=(
            "A preset (strict, moderate, lenient) or a rate such as 100/m or 100/15m; empty means the default "
            "limit, omitted too (through an API key: that key's limit)."
        ),
    )
    owner = serializers.SlugRelatedField(
        slug_field="username",
        queryset=User.objects.all(),
        required=False,
        help_text="Username of the owner (default: you). Another owner needs user:update.",
    )


class AccessCheckQuerySerializer(InputSerializer):
    user = serializers.SlugRelatedField(slug_field="username", queryset=User.objects.all(), help_text="Username.")
    permission = serializers.SlugRelatedField(
        slug_field="code", queryset=Permission.objects.all(), help_text="A catalog code, e.g. agent:execute."
    )
    project = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Project.objects.all(),
        required=False,
        allow_null=True,
        help_text="A project's slug; omitted: globally.",
    )


class AccessGrantSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["role", "extra_permission", "superuser"])
    role = serializers.CharField(allow_null=True, help_text="The role bound to the user (kind role).")
    project = serializers.CharField(allow_null=True, help_text="The binding's project; null: a global binding.")
    source = serializers.CharField(allow_null=True, help_text="manual or sso (kind role).")
    inherited_from = serializers.CharField(
        allow_null=True, help_text="The ancestor role holding the code, when inherited."
    )


class AccessCheckSerializer(serializers.Serializer):
    user = serializers.CharField()
    permission = serializers.CharField()
    project = serializers.CharField(allow_null=True)
    allowed = serializers.BooleanField()
    is_active = serializers.BooleanField()
    through = AccessGrantSerializer(many=True, help_text="Every grant that gives the code; empty when denied.")
