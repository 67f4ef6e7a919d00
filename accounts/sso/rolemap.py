"""``SYMPHONY_OIDC_ROLE_MAP``: which provider group grants which role, globally or in a project.

Syntax: comma-separated ``group=role`` or ``group=role@project`` items, for example
``platform-admins=admin,ml-team=developer@alpha,ml-team=viewer``. A group may appear several times.
Group names may hold any character but ``=`` and ``,``; role names and project slugs are slugs.
Imported by the settings module, so nothing here touches the ORM.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

SETTING = "SYMPHONY_OIDC_ROLE_MAP"
_ITEM = re.compile(r"(?P<group>[^=,]+?)\s*=\s*(?P<role>[-a-zA-Z0-9_]+)(?:@(?P<project>[-a-zA-Z0-9_]+))?")


@dataclass(frozen=True, order=True)
class RoleMapping:
    """One item of the map: members of ``group`` hold ``role`` globally, or in ``project`` when set."""

    group: str
    role: str
    project: str | None = None

    def __str__(self) -> str:
        return f"{self.group}={self.role}" + (f"@{self.project}" if self.project else "")


def parse_role_map(raw: str) -> tuple[RoleMapping, ...]:
    """Parse the map (duplicates dropped, sorted). Raises ``ImproperlyConfigured`` naming the bad item."""
    mappings: set[RoleMapping] = set()
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        match = _ITEM.fullmatch(item)
        if match is None:
            raise ImproperlyConfigured(
                f"{SETTING}: {item!r} is not group=role or group=role@project "
                "(role and project are slugs: letters, digits, - and _)"
            )
        mappings.add(RoleMapping(match["group"].strip(), match["role"], match["project"]))
    return tuple(sorted(mappings))


def claim_groups(claims: Mapping[str, Any], claim: str) -> set[str]:
    """The group names in ``claims[claim]``: a list of strings or one string. A claim name that is
    not a key is tried as a dotted path (``realm_access.roles``); anything else counts as no groups."""
    value: Any = claims.get(claim)
    if claim not in claims and "." in claim:
        value = claims
        for part in claim.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple):
        return {str(v) for v in value if isinstance(v, str | int) and not isinstance(v, bool)}
    return set()


def mapped(mappings: Iterable[RoleMapping], groups: set[str]) -> list[RoleMapping]:
    """The mappings that apply to a member of ``groups``."""
    return [m for m in mappings if m.group in groups]
