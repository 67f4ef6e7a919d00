"""The body policy of writes: a field the input serializer does not declare is a 400 naming it.

Silently dropping ``{"required_capability": ["gpu"]}`` (a typo of ``required_capabilities``) queued a task
any agent could claim, and answered 201; refusing it makes the typo visible, as
``symphony.filters.StrictQueryParamsFilter`` does for query parameters. Every input serializer derives
from ``InputSerializer``; an action that reads no body calls ``validate_no_body``, so a body sent
to it is refused rather than ignored. ``symphony/tests/test_write_policy.py`` checks every write
operation of the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import exceptions, serializers
from rest_framework.request import Request


class UnknownField(exceptions.ValidationError):
    default_code = "unknown_field"


class SharedFields:
    """For output serializers whose fields read nothing per call but the object (no request, no
    context, no ``SerializerMethodField``): the fields are built once per class and shared by every
    instance, instead of once per instance.

    A ``ModelSerializer`` builds its fields from the model's metadata each time it is instantiated:
    for the task's 29 fields that cost more than serializing the task, on every claim, completion and
    task detail. Reading a value (``to_representation``) changes nothing on a field, so sharing them
    between threads is safe. Not for input serializers: validation reads the serializer's own state
    (``partial``, ``instance``) through its fields.
    """

    @property
    def fields(self) -> Any:
        shared = type(self).__dict__.get("_shared_fields")
        if shared is None:
            shared = super().fields
            type(self)._shared_fields = shared
        return shared


class InputSerializer(serializers.Serializer):
    """Base of every input serializer: refuses body fields it does not declare as writable.

    ``is_valid(raise_exception=True)`` raises ``UnknownField`` (400 ``unknown_field``, ``details``
    naming each unknown field) before any field is validated.
    """

    def is_valid(self, *, raise_exception: bool = False) -> bool:
        unknown = self.unknown_fields()
        if unknown:
            known = ", ".join(sorted(self.writable_fields())) or "none: send no body"
            self._validated_data = {}
            self._errors = {name: [f"Unknown field. Known fields: {known}."] for name in unknown}
            if raise_exception:
                raise UnknownField(self._errors)
            return False
        return super().is_valid(raise_exception=raise_exception)

    def writable_fields(self) -> set[str]:
        return {name for name, field in self.fields.items() if not field.read_only}

    def unknown_fields(self) -> list[str]:
        data = getattr(self, "initial_data", None)
        if not isinstance(data, Mapping):
            return []  # not a JSON object: DRF's own validation says so
        return sorted(set(data) - self.writable_fields())


class NoBodySerializer(InputSerializer):
    """For actions that read no body: an empty body (or ``{}``) passes, any field is unknown."""


#: Form types Django parses itself: an empty form is what some clients send with a bare POST.
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def validate_no_body(request: Request) -> None:
    """Refuse a body sent to an action that reads none: a field of a JSON body is an unknown field
    (400 ``unknown_field``), any other non-empty body is 415 (the API reads JSON only). An empty body
    of any type, an empty form included, passes."""
    media_type = (request.content_type or "").split(";")[0].strip().lower()
    if media_type in _FORM_TYPES and not request._request.POST and not request._request.FILES:
        return
    NoBodySerializer(data=request.data).is_valid(raise_exception=True)


def validated_body(serializer_class: type, request: Request, **kwargs: Any) -> dict[str, Any]:
    """``request.data`` through ``serializer_class``: its validated data, or the 400 naming each field."""
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
