"""Identity: users, the permission catalog, roles, projects, role bindings, SSO identities and API keys."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, _user_has_module_perms, _user_has_perm
from django.db import models
from django.utils import timezone

from accounts.validators import validate_rate_limit


class Permission(models.Model):
    """A catalog permission, ``resource:action`` (e.g. ``agent:create``). Seeded by migration."""

    code = models.CharField(max_length=64, unique=True, help_text="resource:action, e.g. agent:create")
    description = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    @property
    def resource(self) -> str:
        return self.code.split(":", 1)[0]

    @property
    def action(self) -> str:
        return self.code.split(":", 1)[-1]


class Role(models.Model):
    """A named set of permissions. A role inherits every permission of its parents (no cycles)."""

    name = models.SlugField(max_length=64, unique=True, help_text="Lower-case identifier, e.g. operator.")
    description = models.CharField(max_length=255, blank=True)
    permissions = models.ManyToManyField(Permission, blank=True, related_name="roles")
    parents = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="children", help_text="Roles this role inherits from."
    )
    is_system = models.BooleanField(default=False, help_text="Seeded roles cannot be deleted or renamed.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


#: The project that existing rows moved to, and where objects created without a project go.
DEFAULT_PROJECT_SLUG = "default"


class Project(models.Model):
    """A team's space: it owns orchestras, agents, tasks and what hangs off them.

    The slug never changes once created: audit events keep it as text (so history outlives the
    project), and scoping of the audit trail matches on it.
    """

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(
        max_length=64, unique=True, help_text="Lower-case identifier used in the API (?project=alpha); never changes."
    )
    description = models.TextField(blank=True, max_length=2000)
    is_active = models.BooleanField(
        default=True, help_text="Inactive projects keep their objects but dispatch nothing new."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


def default_project_id() -> int:
    """The id of the ``default`` project (created when missing): the default of every project FK."""
    project, _ = Project.objects.get_or_create(slug=DEFAULT_PROJECT_SLUG, defaults={"name": "Default"})
    return project.pk


class User(AbstractUser):
    """A person or service account. Holds several roles plus extra per-user permissions."""

    roles = models.ManyToManyField(Role, blank=True, related_name="users", through="RoleBinding")
    extra_permissions = models.ManyToManyField(
        Permission, blank=True, related_name="users", help_text="Permissions held beyond those of the user's roles."
    )

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"

    def has_perm(self, perm: str, obj: object = None) -> bool:
        # Django lets an active superuser do anything; a superuser acting through an API key is
        # still bound by the key's scopes (the backend intersects them).
        if getattr(self, "_api_key_scopes", None) is not None:
            return _user_has_perm(self, perm, obj)
        return super().has_perm(perm, obj)

    def has_module_perms(self, app_label: str) -> bool:
        if getattr(self, "_api_key_scopes", None) is not None:
            return _user_has_module_perms(self, app_label)
        return super().has_module_perms(app_label)


class RoleBinding(models.Model):
    """A user holding a role, and where that came from.

    A binding without a project is global (the role holds in every project); one with a project
    holds in that project only.

    ``manual`` bindings are granted by people (admin, API, commands); ``sso`` bindings are written
    only by the single sign-on sync, which replaces them at every login and never touches manual
    ones. A user may hold the same role both ways: leaving the provider's group then keeps the
    manual grant.
    """

    class Source(models.TextChoices):
        MANUAL = "manual", "granted manually"
        SSO = "sso", "synced from single sign-on"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="role_bindings")
    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="bindings")
    project = models.ForeignKey(
        Project,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="role_bindings",
        help_text="The project the role holds in; empty: every project (a global binding).",
    )
    source = models.CharField(
        max_length=16,
        choices=Source.choices,
        default=Source.MANUAL,
        help_text="manual: granted by a person; sso: replaced by the single sign-on sync at every login.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["user_id", "role_id", "project_id", "source"]
        constraints = [
            # Two partial constraints, because NULLs are distinct in a unique index.
            models.UniqueConstraint(
                fields=["user", "role", "source"],
                condition=models.Q(project__isnull=True),
                name="rolebinding_unique_global",
            ),
            models.UniqueConstraint(
                fields=["user", "role", "project", "source"],
                condition=models.Q(project__isnull=False),
                name="rolebinding_unique_in_project",
            ),
        ]

    def __str__(self) -> str:
        where = f"@{self.project_id}" if self.project_id else ""
        return f"{self.user_id}:{self.role_id}{where} ({self.source})"


class SsoIdentity(models.Model):
    """The link between a user and an account at an OpenID Connect provider (issuer + subject).

    Users are matched by this pair only, never by username or email, which a provider may let
    people choose.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="sso_identities")
    issuer = models.CharField(max_length=255, help_text="The provider's issuer URL (the iss claim).")
    subject = models.CharField(max_length=255, help_text="The user's id at the provider (the sub claim).")
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "SSO identity"
        verbose_name_plural = "SSO identities"
        ordering = ["issuer", "subject"]
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="ssoidentity_unique_issuer_subject"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} @ {self.issuer}"


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> ApiKeyQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    """An API key. Only the SHA-256 of the whole key is stored; the key is shown once at creation.

    The key acts with ``scopes`` ∩ its owner's current permissions, checked at request time, and
    only inside ``project`` when it has one.
    """

    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, help_text="Public part of the key, used to look it up.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False, help_text="SHA-256 of the whole key.")
    scopes = models.ManyToManyField(Permission, blank=True, related_name="api_keys")
    project = models.ForeignKey(
        Project,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="api_keys",
        help_text="Restricts the key to this project; empty: the owner's projects. Agent keys always have one.",
    )
    rate_limit = models.CharField(
        max_length=32,
        blank=True,
        validators=[validate_rate_limit],
        help_text="Per-key rate limit: a preset (strict, moderate, lenient) or a rate such as 100/m or 100/15m; "
        "empty uses the default.",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    rotated_to = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rotated_from",
        help_text="The key that replaced this one; this one works until expires_at (the grace period).",
    )
    rotated_at = models.DateTimeField(
        null=True, blank=True, help_text="When this key was replaced by rotation (it works until expires_at)."
    )
    last_used_at = models.DateTimeField(null=True, blank=True, help_text="Updated at most once a minute.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"],
                # A rotated-out key in its grace period shares its name with its replacement.
                condition=models.Q(revoked_at__isnull=True, rotated_at__isnull=True),
                name="apikey_unique_active_name_per_owner",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()
