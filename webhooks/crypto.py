"""Signing secrets at rest: AES-256-GCM with a key derived (HKDF-SHA256) from
``SYMPHONY_WEBHOOK_ENCRYPTION_KEY``, or ``SECRET_KEY`` when that is unset.

Standard Webhooks signs with HMAC, so the secret itself must be recoverable: a hash would not do.
Rotating the derivation key makes stored secrets unreadable (rotate each webhook's secret then).
"""

from __future__ import annotations

import base64
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

_PREFIX = "v1:"
_AAD = b"symphony-webhook-secret"


def _key() -> bytes:
    material = (settings.SYMPHONY_WEBHOOK_ENCRYPTION_KEY or settings.SECRET_KEY).encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"symphony.webhooks.v1").derive(material)


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def encrypt(secret: str) -> str:
    nonce = os.urandom(12)
    return _PREFIX + base64.b64encode(nonce + AESGCM(_key()).encrypt(nonce, secret.encode(), _AAD)).decode()


def decrypt(stored: str) -> str:
    """Raises ``ValueError`` when ``stored`` was not written by ``encrypt`` with the current key."""
    if not stored.startswith(_PREFIX):
        raise ValueError("unknown secret encoding")
    raw = base64.b64decode(stored[len(_PREFIX) :])
    try:
        return AESGCM(_key()).decrypt(raw[:12], raw[12:], _AAD).decode()
    except Exception as exc:  # InvalidTag: another key, or tampered
        raise ValueError("the secret cannot be decrypted with the current key") from exc
