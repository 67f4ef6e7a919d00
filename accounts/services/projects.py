"""Projects: create, update, delete (only an empty one)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

import audit
from accounts.exceptions import ProjectNotEmpty
from accounts.models import Project, User
from accounts.services.common import UNSET, invalidate_on_commit, lock_row, save_fields


def _save_project(project: Project, *, update_fields: list[str] | None = None) -> None:
    project.full_clean()
    try:
        with transaction.atomic():
            if update_fields is None:
                project.save()
            else:
                save_fields(project, update_fields)
    except IntegrityError:
        raise ValidationError({"slug": ["A project with that slug or name already exists."]}) from None


@transaction.atomic
def project_create(
    *, actor: User | None, slug: str, name: str, description: str = "", is_active: bool = True
) -> Project:
    """Create a project. Raises ``ValidationError`` (slug, name: taken or invalid)."""
    project = Project(slug=slug, name=name, description=description, is_active=is_active)
    _save_project(project)
    audit.record("project.created", actor=actor, resource=project, details={"slug": slug, "name": name})
    return project


@transaction.atomic
def project_update(
    *, actor: User | None, project: Project, name: str = UNSET, description: str = UNSET, is_active: bool = UNSET
) -> Project:
    """Change a project's name, description or active flag (the slug never changes: audit events
    keep it as text). Raises ``ValidationError`` and ``DeletedConcurrently``."""
    project = lock_row(Project.objects.all(), project.pk)
    changed = {}
    for field, value in {"name": name, "description": description, "is_active": is_active}.items():
        if value is not UNSET and getattr(project, field) != value:
            changed[field] = [getattr(project, field), value]
            setattr(project, field, value)
    if changed:
        _save_project(project, update_fields=list(changed))
        audit.record("project.updated", actor=actor, resource=project, details={"changes": changed})
    return project


@transaction.atomic
def project_delete(*, actor: User | None, project: Project) -> None:
    """Delete a project and its role bindings. Raises ``ProjectNotEmpty`` while orchestras, agents,
    tasks or API keys still belong to it (they are protected, never deleted with it)."""
    slug, project_id = project.slug, project.pk
    try:
        with transaction.atomic():
            project.delete()
    except ProtectedError:
        raise ProjectNotEmpty(
            f"Project '{slug}' still owns orchestras, agents, tasks or API keys; move or delete them first.",
            field="slug",
        ) from None
    audit.record(
        "project.deleted",
        actor=actor,
        project=slug,
        resource_type="accounts.project",
        resource_id=project_id,
        details={"slug": slug},
    )
    invalidate_on_commit()
