"""Standard Webhooks signatures (https://www.standardwebhooks.com/, spec "Signature scheme")."""

from __future__ import annotations

import base64
import hashlib
import hmac


def sign(secret: str, *, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``, key = base64-decoded secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def signature_header(secrets: list[str], *, message_id: str, timestamp: int, body: bytes) -> str:
    """Space-separated signatures, one per secret (current first): the spec's form for rotation."""
    return " ".join(sign(s, message_id=message_id, timestamp=timestamp, body=body) for s in secrets)
