"""A JSON client for the API tests: the Django test client with one API key."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client


class Api:
    """The Django test client speaking JSON with one API key (or a session, or nobody)."""

    def __init__(self, key: str | None = None, client: Client | None = None) -> None:
        self.key = key
        self.client = client or Client()

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = dict(extra)
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        return headers

    def get(self, path: str, params: dict[str, Any] | None = None, **headers: str) -> Any:
        return self.client.get(path, params or {}, headers=self._headers(headers))

    def post(self, path: str, data: Any = None, **headers: str) -> Any:
        body = json.dumps(data if data is not None else {})
        return self.client.post(path, body, content_type="application/json", headers=self._headers(headers))

    def patch(self, path: str, data: Any, **headers: str) -> Any:
        return self.client.patch(
            path, json.dumps(data), content_type="application/json", headers=self._headers(headers)
        )

    def put(self, path: str, data: Any, **headers: str) -> Any:
        return self.client.put(path, json.dumps(data), content_type="application/json", headers=self._headers(headers))

    def delete(self, path: str, **headers: str) -> Any:
        return self.client.delete(path, headers=self._headers(headers))
