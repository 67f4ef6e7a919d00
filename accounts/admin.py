"""The operator console for identity: users, roles, the permission catalog and API keys.

Every write goes through ``accounts.services``, so the admin obeys the same rules as the API (no
escalation, protected system roles, the last super admin) and records the same audit events. The
rules run first in the form's ``clean()`` as a dry run (the service inside a savepoint that is
rolled back), so a refusal lands on the field instead of after "saved".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accounts import selectors, services
from accounts.access import access_explain
from accounts.backends import uncached_permissions, user_codes
from accounts.exceptions import EscalationRefused, IdentityConflict
from accounts.models import ApiKey, Permission, Project, Role, RoleBinding, User
from observability import context

# The RBAC is roles: Django's groups would be a second, ignored permission system.
if admin.site.is_registered(Group):
    admin.site.unregister(Group)


class _DryRun(Exception):
    """Raised to roll back a service run made only to validate."""


def dry_run(form: forms.BaseForm, service: Callable[..., Any], **kwargs: Any) -> None:
    """Run ``service`` in a savepoint that is always rolled back; put its refusals on form fields
    (``form.field_aliases`` maps the services' field names to the form's).

    Nothing of it outlives the rollback: its on-commit work (audit seals and counts, cache
    invalidation) is discarded with the savepoint, and the permission cache is neither read, filled
    nor invalidated meanwhile (``uncached_permissions``).
    """
    aliases = getattr(form, "field_aliases", {})
    try:
        with uncached_permissions(), transaction.atomic():
            service(**kwargs)
            raise _DryRun
    except _DryRun:
        pass
    except ValidationError as exc:
        errors = exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}
        for field, messages_ in errors.items():
            field = aliases.get(field, field)
            form.add_error(field if field in form.fields else None, messages_)
    except (EscalationRefused, IdentityConflict) as exc:
        field = aliases.get(exc.field, exc.field)
        form.add_error(field if field in form.fields else None, str(exc.detail))


def _with_request(form_class: type[forms.BaseForm], request: HttpRequest) -> type[forms.BaseForm]:
    """A subclass of ``form_class`` that knows the request (the actor for the services)."""
    return type(form_class.__name__, (form_class,), {"request": request})


def _codes_html(codes: list[str]) -> SafeString:
    if not codes:
        return format_html("<em>{}</em>", "none")
    return format_html_join(", ", "<code>{}</code>", ((code,) for code in sorted(codes)))


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, QuerySet) else value


class ServiceAdminMixin:
    """Saves through services; ``save_related`` must not write the m2m fields a service already set."""

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> type[forms.BaseForm]:
        return _with_request(super().get_form(request, obj, **kwargs), request)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        try:
            with transaction.atomic():
                return super().delete_view(request, object_id, extra_context)
        except (EscalationRefused, IdentityConflict) as exc:
            self.message_user(request, str(exc.detail), messages.ERROR)
            opts = self.model._meta
            return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[object_id]))

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # bulk delete would bypass the per-object rules
        return actions

    @staticmethod
    def adopt(obj: Any, saved: Any) -> None:
        """Make the admin's unsaved ``obj`` stand for the row a service created."""
        for field in saved._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False
        obj._state.db = saved._state.db


# --- users ------------------------------------------------------------------------------------------

USER_FIELDS = (
    "username",
    "email",
    "first_name",
    "last_name",
    "is_active",
    "is_staff",
    "is_superuser",
    "roles",
    "extra_permissions",
)


class UserAdminChangeForm(UserChangeForm):
    request: HttpRequest
    field_aliases = {"roles": "manual_roles"}

    # Not the model field: ``User.roles`` goes through RoleBinding, and this form edits only the
    # manual bindings (the single sign-on sync owns the others).
    manual_roles = forms.ModelMultipleChoiceField(
        queryset=Role.objects.all(),
        required=False,
        label="Roles",
        widget=FilteredSelectMultiple("roles", is_stacked=False),
        help_text="Granted manually. Roles synced from single sign-on are shown apart and change at each SSO login.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            manual = self.instance.role_bindings.filter(source=RoleBinding.Source.MANUAL, project__isnull=True)
            self.initial["manual_roles"] = list(manual.values_list("role_id", flat=True))

    def service_changes(self) -> dict[str, Any]:
        renamed = {"manual_roles": "roles"}
        changes = {
            renamed.get(f, f): _as_list(self.cleaned_data[f])
            for f in self.changed_data
            if renamed.get(f, f) in USER_FIELDS and f in self.cleaned_data
        }
        if "roles" in changes and self.instance.pk is not None:
            # The field edits global roles; the user's project bindings stay as they are.
            in_projects = self.instance.role_bindings.filter(
                source=RoleBinding.Source.MANUAL, project__isnull=False
            ).select_related("role", "project")
            changes["roles"] = [*changes["roles"], *((b.role, b.project) for b in in_projects)]
        return changes

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        changes = self.service_changes()
        if changes:
            dry_run(self, services.user_update, actor=self.request.user, user=self.instance, **changes)
        return cleaned


class UserAdminCreationForm(AdminUserCreationForm):
    request: HttpRequest

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("username"):
            dry_run(self, services.user_create, actor=self.request.user, username=cleaned["username"])
        return cleaned


class AccessCheckForm(forms.Form):
    permission = forms.ModelChoiceField(queryset=Permission.objects.order_by("code"), to_field_name="code")
    project = forms.ModelChoiceField(
        queryset=Project.objects.order_by("slug"),
        to_field_name="slug",
        required=False,
        empty_label="(globally)",
        help_text="Empty: whether the user holds the permission globally.",
    )


class UserAdminPasswordChangeForm(AdminPasswordChangeForm):
    def save(self, commit: bool = True) -> User:
        request = context.get_current_request()
        actor = getattr(request, "user", None)
        password = self.cleaned_data["password1"] if self.cleaned_data.get("set_usable_password", True) else ""
        saved = services.user_set_password(actor=actor, user=self.user, password=password)
        # The view calls update_session_auth_hash(request, form.user): give it the new hash, or an
        # operator changing their own password would be logged out.
        self.user.password = saved.password
        return self.user


@admin.register(User)
class UserAdmin(ServiceAdminMixin, DjangoUserAdmin):
    form = UserAdminChangeForm
    add_form = UserAdminCreationForm
    change_password_form = UserAdminPasswordChangeForm
    list_display = ["username", "email", "role_names", "is_active", "is_staff", "is_superuser", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser", "roles"]
    search_fields = ["username", "email", "first_name", "last_name"]
    ordering = ["username"]
    filter_horizontal = ["extra_permissions"]
    readonly_fields = ["sso_roles", "effective_permissions", "check_access", "last_login", "date_joined"]
    fieldsets = [
        (None, {"fields": ["username", "password"]}),
        ("Personal info", {"fields": ["first_name", "last_name", "email"]}),
        (
            "Access",
            {"fields": ["is_active", "is_staff", "is_superuser", "manual_roles", "sso_roles", "extra_permissions"]},
        ),
        ("Effective permissions", {"fields": ["effective_permissions", "check_access"]}),
        ("Important dates", {"fields": ["last_login", "date_joined"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).prefetch_related("roles")

    @admin.display(description="Roles")
    def role_names(self, obj: User) -> str:
        return ", ".join(sorted({role.name for role in obj.roles.all()})) or "-"

    @admin.display(description="Roles from single sign-on")
    def sso_roles(self, obj: User) -> SafeString:
        if obj.pk is None:
            return format_html("<em>{}</em>", "none")
        names = obj.role_bindings.filter(source=RoleBinding.Source.SSO).values_list("role__name", flat=True)
        return _codes_html(list(names))

    @admin.display(description="Effective permissions")
    def effective_permissions(self, obj: User) -> SafeString:
        if obj.pk is None:
            return format_html("<em>{}</em>", "saved users only")
        return _codes_html(list(user_codes(obj)))

    @admin.display(description="Check access")
    def check_access(self, obj: User) -> SafeString:
        if obj.pk is None:
            return format_html("<em>{}</em>", "saved users only")
        url = reverse("admin:accounts_user_check_access", args=[obj.pk])
        return format_html('<a href="{}">Check a permission, globally or in a project</a>', url)

    def get_urls(self) -> list[Any]:
        check = path(
            "<path:object_id>/check-access/",
            self.admin_site.admin_view(self.check_access_view),
            name="accounts_user_check_access",
        )
        return [check, *super().get_urls()]

    def check_access_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Whether the user holds a permission (in a project) and through which binding."""
        user = self.get_object(request, unquote(object_id))
        if user is None or not self.has_view_permission(request, user):
            raise PermissionDenied
        form = AccessCheckForm(request.GET or None)
        answer = None
        if form.is_valid():
            project = form.cleaned_data["project"]
            answer = access_explain(user, form.cleaned_data["permission"].code, project)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Check access: {user.get_username()}",
            "subject": user,
            "form": form,
            "answer": answer,
            "opts": self.opts,
        }
        return TemplateResponse(request, "admin/accounts/user/check_access.html", context)

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        if change:
            services.user_update(actor=request.user, user=obj, **form.service_changes())
            return
        usable = form.cleaned_data.get("set_usable_password", True)
        user = services.user_create(
            actor=request.user,
            username=form.cleaned_data["username"],
            password=form.cleaned_data.get("password1") if usable else None,
        )
        self.adopt(obj, user)

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        services.user_delete(actor=request.user, user=obj)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        user = self.get_object(request, unquote(id))
        if user is not None:
            try:
                services.user_require_manageable(actor=request.user, user=user)
            except EscalationRefused as exc:
                raise PermissionDenied(str(exc.detail)) from None
        return super().user_change_password(request, id, form_url)


# --- roles ------------------------------------------------------------------------------------------


class RoleAdminForm(forms.ModelForm):
    request: HttpRequest

    class Meta:
        model = Role
        fields = ["name", "description", "permissions", "parents"]

    def service_kwargs(self) -> dict[str, Any]:
        names = ["name", "description", "permissions", "parents"]
        if self.instance.pk is None:
            return {f: _as_list(self.cleaned_data[f]) for f in names if f in self.cleaned_data}
        return {f: _as_list(self.cleaned_data[f]) for f in self.changed_data if f in names and f in self.cleaned_data}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        kwargs = self.service_kwargs()
        if self.instance.pk is None:
            dry_run(self, services.role_create, actor=self.request.user, **kwargs)
        elif kwargs:
            dry_run(self, services.role_update, actor=self.request.user, role=self.instance, **kwargs)
        return cleaned


@admin.register(Role)
class RoleAdmin(ServiceAdminMixin, admin.ModelAdmin):
    form = RoleAdminForm
    list_display = ["name", "description", "is_system", "permission_count", "user_count"]
    list_filter = ["is_system", "permissions"]
    search_fields = ["name", "description"]
    ordering = ["name"]
    filter_horizontal = ["permissions", "parents"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Role]:
        return (
            super()
            .get_queryset(request)
            .annotate(n_permissions=Count("permissions", distinct=True), n_users=Count("users", distinct=True))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Role | None = None) -> list[str]:
        fields = ["is_system", "effective_permissions"]
        return ["name", *fields] if obj is not None and obj.is_system else fields

    @admin.display(description="Permissions", ordering="n_permissions")
    def permission_count(self, obj: Role) -> int:
        return obj.n_permissions

    @admin.display(description="Users", ordering="n_users")
    def user_count(self, obj: Role) -> int:
        return obj.n_users

    @admin.display(description="Effective permissions (own and inherited)")
    def effective_permissions(self, obj: Role) -> SafeString:
        if obj.pk is None:
            return format_html("<em>{}</em>", "saved roles only")
        return _codes_html(selectors.role_effective_map().get(obj.pk, []))

    def has_delete_permission(self, request: HttpRequest, obj: Role | None = None) -> bool:
        if obj is not None and obj.is_system:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Role, form: Any, change: bool) -> None:
        kwargs = form.service_kwargs()
        if change:
            services.role_update(actor=request.user, role=obj, **kwargs)
        else:
            self.adopt(obj, services.role_create(actor=request.user, **kwargs))

    def delete_model(self, request: HttpRequest, obj: Role) -> None:
        services.role_delete(actor=request.user, role=obj)


# --- the permission catalog -------------------------------------------------------------------------


@admin.register(Permission)
class PermissionAdmin(admin.ModelAdmin):
    """Read-only: the catalog is code (accounts/catalog.py) seeded by migrations."""

    list_display = ["code", "description"]
    search_fields = ["code", "description"]
    ordering = ["code"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- API keys ---------------------------------------------------------------------------------------


class ApiKeyAddForm(forms.ModelForm):
    request: HttpRequest

    class Meta:
        model = ApiKey
        fields = ["name", "owner", "scopes", "expires_at", "rate_limit"]
        help_texts = {"scopes": "Leave empty for every permission the owner holds (checked again at each request)."}

    def service_kwargs(self) -> dict[str, Any]:
        scopes = self.cleaned_data.get("scopes")
        return {
            "owner": self.cleaned_data["owner"],
            "name": self.cleaned_data["name"],
            "scopes": [p.code for p in scopes] if scopes else None,
            "expires_at": self.cleaned_data.get("expires_at"),
            "rate_limit": self.cleaned_data.get("rate_limit") or "",
            "actor": self.request.user,
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.errors:
            dry_run(self, services.api_key_create, **self.service_kwargs())
        return cleaned


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("active", "Active"),
            ("rotated", "Rotated (in grace period)"),
            ("expired", "Expired"),
            ("revoked", "Revoked"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        now = timezone.now()
        value = self.value()
        if value == "active":
            return queryset.active().filter(rotated_at__isnull=True)
        if value == "rotated":
            return queryset.active().filter(rotated_at__isnull=False)
        if value == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if value == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """The raw key is shown once, in the message after creation or rotation; the hash never."""

    add_form = ApiKeyAddForm
    list_display = ["name", "prefix", "owner", "is_usable", "expires_at", "revoked_at", "last_used_at", "created_at"]
    list_filter = [ApiKeyStatusFilter, "created_at"]
    search_fields = ["name", "prefix", "owner__username"]
    list_select_related = ["owner"]
    ordering = ["-created_at"]
    autocomplete_fields = ["owner"]
    filter_horizontal = ["scopes"]
    exclude = ["key_hash"]
    actions = ["revoke_keys", "rotate_keys"]
    readonly_fields = [
        "name",
        "prefix",
        "owner",
        "scope_codes",
        "rate_limit",
        "expires_at",
        "revoked_at",
        "rotated_at",
        "rotated_to",
        "last_used_at",
        "created_at",
    ]

    def get_form(self, request: HttpRequest, obj: ApiKey | None = None, **kwargs: Any) -> type[forms.BaseForm]:
        if obj is None:
            kwargs["form"] = self.add_form
        return _with_request(super().get_form(request, obj, **kwargs), request)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        return list(ApiKeyAddForm.Meta.fields) if obj is None else self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        return [] if obj is None else self.readonly_fields

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if lookup.startswith("key_hash"):
            return False  # never let a URL probe the stored hashes
        return super().lookup_allowed(lookup, value, request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the key's history stays in the audit trail

    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        # An existing key is read-only (revoke or rotate it from the list, which needs the change
        # permission): its page is a view page, with no Save to claim a change that never happened.
        return obj is None and super().has_change_permission(request)

    @admin.display(description="Usable", boolean=True)
    def is_usable(self, obj: ApiKey) -> bool:
        return not obj.is_revoked and not obj.is_expired

    @admin.display(description="Scopes")
    def scope_codes(self, obj: ApiKey) -> SafeString:
        return _codes_html([p.code for p in obj.scopes.all()])

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            return  # nothing is editable on an existing key
        key, raw = services.api_key_create(**form.service_kwargs())
        ServiceAdminMixin.adopt(obj, key)
        self.message_user(
            request,
            format_html(
                "API key for {}: <code class='api-key'>{}</code> Copy it now: it is not stored and will not be "
                "shown again.",
                key.owner.get_username(),
                raw,
            ),
            messages.SUCCESS,
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """The service set the scopes already."""

    @admin.action(permissions=["change"], description="Revoke selected API keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        done, refused = 0, []
        with transaction.atomic():
            for key in queryset.select_related("owner"):
                try:
                    services.api_key_revoke(actor=request.user, key=key)
                    done += 1
                except (EscalationRefused, IdentityConflict) as exc:
                    refused.append(f"{key.prefix}: {exc.detail}")
        self.message_user(request, f"Revoked {done} API key(s).", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Not revoked: {'; '.join(refused)}", messages.WARNING)

    @admin.action(permissions=["change"], description="Rotate selected API keys (old keys keep a grace period)")
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        rotated, refused = [], []
        with transaction.atomic():
            for key in queryset.select_related("owner"):
                try:
                    new, raw = services.api_key_rotate(actor=request.user, key=key)
                    rotated.append((key.prefix, new.owner.get_username(), raw))
                except (EscalationRefused, IdentityConflict) as exc:
                    refused.append(f"{key.prefix}: {exc.detail}")
        self.message_user(request, f"Rotated {len(rotated)} API key(s).", messages.SUCCESS)
        for old_prefix, owner, raw in rotated:
            self.message_user(
                request,
                format_html(
                    "New key replacing {} (owner {}): <code class='api-key'>{}</code> Copy it now: it will not be "
                    "shown again.",
                    old_prefix,
                    owner,
                    raw,
                ),
                messages.SUCCESS,
            )
        if refused:
            self.message_user(request, f"Not rotated: {'; '.join(refused)}", messages.WARNING)
