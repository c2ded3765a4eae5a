"""The cryptography of data keys: derivation from the master key, sealing, key wrapping.

Data keys are wrapped with AES-256-GCM under a key derived from ``EVENTKIT_MASTER_KEY`` (HKDF)
and bound to their bucket entry's name, so an entry moved to another name does not open.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from eventkit.config.values import MASTER_KEY_BYTES
from eventkit.errors import ConfigError, EventDecodeError
from eventkit.gdpr.keycache import DataKey, Entry, Forgotten

NONCE_BYTES: Final = 12
TOMBSTONE: Final = b'{"v":1,"forgotten":true}'
"""The value a shredded key's bucket entry holds."""


def derive_key(master_key: bytes, purpose: str) -> bytes:
    """A 32-byte key for one ``purpose`` derived from the master key (HKDF-SHA256).

    Example::

        audit_key = derive_key(settings.master_key, "audit")
    """
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"eventkit {purpose} v1".encode()
    ).derive(master_key)


def check_master_key(master_key: bytes) -> bytes:
    if not isinstance(master_key, bytes) or len(master_key) != MASTER_KEY_BYTES:
        got = len(master_key) if isinstance(master_key, bytes) else type(master_key).__name__
        raise ConfigError(
            f"the master key must be {MASTER_KEY_BYTES} bytes, got {got}; set EVENTKIT_MASTER_KEY "
            f"to the base64 of 32 random bytes (openssl rand -base64 32)"
        )
    return master_key


def seal(aead: AESGCM, plaintext: bytes, associated: bytes) -> bytes:
    """AES-GCM with a fresh random nonce, returned in front of the ciphertext."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, plaintext, associated)


def unseal(aead: AESGCM, blob: bytes, associated: bytes) -> bytes:
    """The plaintext of :func:`seal`'s output; ``InvalidTag`` when it does not authenticate."""
    return bytes(aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated))


def wrap_key(aead: AESGCM, name: str, key_id: str, key: bytes) -> bytes:
    """A data key sealed by the master key's wrapping key, as the bucket entry's value."""
    sealed = seal(aead, key, name.encode())
    return json.dumps({"v": 1, "id": key_id, "k": base64.b64encode(sealed).decode()}).encode()


def unwrap_entry(aead: AESGCM, bucket: str | None, name: str, value: bytes) -> Entry:
    """A bucket entry's value opened: the data key, or :class:`Forgotten` for a tombstone."""
    if value == TOMBSTONE:
        return Forgotten(name)
    try:
        raw = json.loads(value)
        blob = base64.b64decode(raw["k"])
        key = unseal(aead, blob, name.encode())
        return DataKey(str(raw["id"]), key, name)
    except InvalidTag:
        raise ConfigError(
            f"the data key {name} in bucket {bucket!r} does not open with this master "
            f"key: EVENTKIT_MASTER_KEY differs from the one the keys were made with"
        ) from None
    except (ValueError, KeyError, TypeError) as e:
        raise EventDecodeError(f"bad data key entry {name} in {bucket!r}: {e}") from e


__all__ = [
    "MASTER_KEY_BYTES",
    "TOMBSTONE",
    "check_master_key",
    "derive_key",
    "seal",
    "unseal",
    "unwrap_entry",
    "wrap_key",
]
