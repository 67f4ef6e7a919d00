"""API key format: ``sym_<prefix>_<secret>``; only SHA-256 of the whole key is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

KEY_PATTERN = re.compile(r"^sym_(?P<prefix>[a-z0-9]{12})_(?P<secret>[A-Za-z0-9_\-]{43,})$")


def generate() -> tuple[str, str]:
    """Return ``(prefix, raw_key)`` with a 12-character public prefix and a 32-byte random secret."""
    prefix = secrets.token_hex(6)
    return prefix, f"sym_{prefix}_{secrets.token_urlsafe(32)}"


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def parse_prefix(raw_key: str) -> str | None:
    """The prefix of a well-formed key, or None when the key is malformed."""
    match = KEY_PATTERN.match(raw_key)
    return match.group("prefix") if match else None


def matches(raw_key: str, key_hash: str) -> bool:
    """Constant-time comparison of a presented key against a stored hash."""
    return hmac.compare_digest(hash_key(raw_key), key_hash)
