"""Per-subject data keys for crypto-shredding (AES-256-GCM), wrapped by the master key.

Events of personal-data subjects are stored encrypted with a key of their own. The keys live,
wrapped by ``EVENTKIT_MASTER_KEY``, in the KV bucket ``<stream>_keys`` (its own JetStream
stream, ``KV_<stream>_keys``, history 1), under a name that is an HMAC of the subject, so the
bucket never shows a subject in clear. Forgetting a subject erases its key's message securely
and leaves a tombstone: every copy of its events that eventkit could not reach (replicas' Raft
logs, mirrors, backups of the event stream) becomes unreadable::

    keys = KeyStore(master_key=settings.master_key, personal=["bank.customer.*"])
    store = await JetStreamEventStore.connect(url, stream="bank", cipher=keys)
    await keys.attach(store)
    ...
    await keys.shred("bank.customer.c-1")      # reading it now raises ForgottenError

``App.connect`` does all of this when the app declares personal data.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

import nats.errors
import nats.js.errors
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from eventkit.domain.events import Event
from eventkit.errors import ConfigError, EventDecodeError, ForgottenError, StoreUnavailableError
from eventkit.store.jetstream import ensure_erasable_bucket, is_gone
from eventkit.store.subjects import subject_matches, validate_filter

if TYPE_CHECKING:
    from eventkit.store.jetstream import JetStreamEventStore

MASTER_KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
CACHE_LIMIT: Final = 50_000
"""Most data keys (and cover decisions) kept in memory; the oldest go first past it."""

_FORGOTTEN: Final = object()
TOMBSTONE: Final = b'{"v":1,"forgotten":true}'
CHECK_KEY: Final = "master-key-check"


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


class _DataKey:
    __slots__ = ("aead", "key_id")

    def __init__(self, key_id: str, key: bytes) -> None:
        self.key_id = key_id
        self.aead = AESGCM(key)


class KeyStore:
    """The ``PayloadCipher`` of eventkit: per-subject AES-256-GCM keys in a KV bucket.

    ``personal``: subject filters whose every event is encrypted (``App.personal_subjects``);
    events whose class sets ``personal_data = True`` are encrypted on any subject. Keys are cached
    after their first use, so :meth:`prepare` costs a dict lookup for a known subject. Other
    processes' shredding reaches this cache through a subscription on the bucket's subjects.

    Example::

        keys = KeyStore(master_key=os.urandom(32), personal=["bank.customer.*"])
        await keys.attach(store)
        await keys.prepare(["bank.customer.c-1"], create=True)
        key_id, sealed = keys.encrypt("bank.customer.c-1", b'{"name":"Ada"}')
    """

    def __init__(self, master_key: bytes, personal: Sequence[str] = ()) -> None:
        check_master_key(master_key)
        self.personal = [validate_filter(f) for f in personal]
        self._wrap = AESGCM(derive_key(master_key, "key-wrap"))
        self._name_key = derive_key(master_key, "key-name")
        self.audit_key = derive_key(master_key, "audit")
        self.notice_key = derive_key(master_key, "notice")
        self._keys: dict[str, Any] = {}  # subject -> _DataKey | _FORGOTTEN
        self._names: dict[str, str] = {}  # KV key name -> subject (for cached subjects)
        self._covers: dict[str, bool] = {}
        self._js: Any = None
        self._kv: Any = None
        self._sub: Any = None
        self.bucket: str | None = None

    # -- the PayloadCipher protocol -------------------------------------------------------
    def covers(self, subject: str, event: Event | None) -> bool:
        if event is not None and type(event).personal_data:
            return True
        hit = self._covers.get(subject)
        if hit is None:
            hit = any(subject_matches(f, subject) for f in self.personal)
            _bounded_set(self._covers, subject, hit)
        return hit

    async def prepare(self, subjects: Iterable[str], *, create: bool) -> None:
        keys = self._keys
        for subject in subjects:
            found = keys.get(subject)
            if found is _FORGOTTEN:
                if create:
                    raise ForgottenError(subject)
                continue
            if found is not None:
                continue
            await self._load(subject, create=create)

    def encrypt(self, subject: str, plaintext: bytes) -> tuple[str, bytes]:
        key = self._keys.get(subject)
        if key is _FORGOTTEN:
            raise ForgottenError(subject)
        if key is None:
            raise ConfigError(
                f"no data key loaded for {subject!r}: call `await cipher.prepare([subject], "
                f"create=True)` before encrypt (the stores do this for you)"
            )
        return key.key_id, seal(key.aead, plaintext, subject.encode())

    def decrypt(self, subject: str, key_id: str, ciphertext: bytes) -> bytes:
        key = self._keys.get(subject)
        if key is None or key is _FORGOTTEN:
            # no key after prepare: shredded (tombstone) or never to be found again
            raise ForgottenError(subject)
        if key.key_id != key_id:
            raise EventDecodeError(
                f"payload sealed with key {key_id!r} but the subject's key is {key.key_id!r} "
                f"(was the key bucket restored from another installation?)",
                subject=subject,
            )
        try:
            return unseal(key.aead, ciphertext, subject.encode())
        except InvalidTag:
            raise EventDecodeError(
                "payload does not authenticate under the subject's key (tampered, or moved "
                "from another subject)",
                subject=subject,
            ) from None

    # -- wiring ---------------------------------------------------------------------------
    async def attach(self, store: JetStreamEventStore) -> None:
        """Open (or create) the key bucket ``<stream>_keys`` next to ``store``'s stream."""
        self._js = store.js
        self.bucket = f"{store.stream}_keys"
        await ensure_erasable_bucket(self._js, self.bucket, store.replicas)
        self._kv = await self._js.key_value(self.bucket)
        await self.verify_master_key()
        with contextlib.suppress(nats.errors.Error):
            self._sub = await store.nc.subscribe(f"$KV.{self.bucket}.>", cb=self._on_change)

    async def verify_master_key(self) -> None:
        """Check the master key against the bucket's check entry (made by the first user).

        A different master key would find no keys at all and read every subject as forgotten;
        this turns that into a clear error at connect.
        """
        kv = self._bucket_kv()
        mine = hmac.new(self._name_key, b"eventkit master key check", hashlib.sha256).hexdigest()
        try:
            entry = await kv.get(CHECK_KEY)
            found = entry.value.decode() if entry.value else None
        except nats.js.errors.KeyNotFoundError:
            found = None
        if found is None:
            try:
                await kv.create(CHECK_KEY, mine.encode())
                return
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.APIError):
                found = (await kv.get(CHECK_KEY)).value.decode()
        if not hmac.compare_digest(found, mine):
            raise ConfigError(
                f"EVENTKIT_MASTER_KEY is not the master key the keys in bucket {self.bucket!r} "
                f"were made with: set the right key (with a wrong one every personal-data subject "
                f"would read as forgotten)"
            )

    async def _on_change(self, msg: Any) -> None:
        name = msg.subject.rsplit(".", 1)[-1]
        subject = self._names.get(name)
        if subject is not None and msg.data == TOMBSTONE:
            self._keys[subject] = _FORGOTTEN

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    # -- keys -----------------------------------------------------------------------------
    def key_name(self, subject: str) -> str:
        """The KV key of ``subject``'s data key: an HMAC, so no subject shows in the bucket."""
        return hmac.new(self._name_key, subject.encode(), hashlib.sha256).hexdigest()[:40]

    def subject_hmac(self, subject: str) -> str:
        """HMAC-SHA256 of ``subject`` under the audit key (what audit entries hold)."""
        return hmac.new(self.audit_key, subject.encode(), hashlib.sha256).hexdigest()

    def _bucket_kv(self) -> Any:
        if self._kv is None:
            raise ConfigError(
                "the KeyStore is not attached to a store: call `await keys.attach(store)` "
                "(App.connect does it)"
            )
        return self._kv

    async def _load(self, subject: str, *, create: bool) -> None:
        kv = self._bucket_kv()
        name = self.key_name(subject)
        for _ in range(3):
            try:
                entry = await kv.get(name)
                value: bytes | None = entry.value
            except nats.js.errors.KeyNotFoundError:
                value = None
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
                raise StoreUnavailableError(f"key bucket {self.bucket!r} did not answer") from e
            if value:
                self._remember(subject, name, self._unwrap(name, value))
                return
            if not create:
                return
            key_id, key = os.urandom(4).hex(), AESGCM.generate_key(bit_length=256)
            try:
                await kv.create(name, self._wrap_key(name, key_id, key))
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another writer made it first: load theirs
            self._remember(subject, name, _DataKey(key_id, key))
            return
        raise StoreUnavailableError(f"could not create or load the data key of {subject!r}")

    def _remember(self, subject: str, name: str, key: Any) -> None:
        _bounded_set(self._keys, subject, key)
        _bounded_set(self._names, name, subject)

    def _wrap_key(self, name: str, key_id: str, key: bytes) -> bytes:
        sealed = seal(self._wrap, key, name.encode())
        return json.dumps({"v": 1, "id": key_id, "k": base64.b64encode(sealed).decode()}).encode()

    def _unwrap(self, name: str, value: bytes) -> Any:
        if value == TOMBSTONE:
            return _FORGOTTEN
        try:
            raw = json.loads(value)
            blob = base64.b64decode(raw["k"])
            key = unseal(self._wrap, blob, name.encode())
            return _DataKey(str(raw["id"]), key)
        except InvalidTag:
            raise ConfigError(
                f"the data key {name} in bucket {self.bucket!r} does not open with this master "
                f"key: EVENTKIT_MASTER_KEY differs from the one the keys were made with"
            ) from None
        except (ValueError, KeyError, TypeError) as e:
            raise EventDecodeError(f"bad data key entry {name} in {self.bucket!r}: {e}") from e

    async def state(self, subject: str) -> str:
        """``"active"`` (a key exists), ``"forgotten"`` (tombstone) or ``"none"``."""
        kv = self._bucket_kv()
        try:
            entry = await kv.get(self.key_name(subject))
        except nats.js.errors.KeyNotFoundError:
            return "none"
        if entry.value == TOMBSTONE:
            return "forgotten"
        return "active" if entry.value else "none"

    async def shred(self, subject: str) -> bool:
        """Erase ``subject``'s data key for good and leave a tombstone; True if a key was erased.

        Every message holding the key is erased by sequence (a secure erase, overwriting the
        bytes on disk) before the tombstone is written. Idempotent.
        """
        kv = self._bucket_kv()
        name = self.key_name(subject)
        stream = f"KV_{self.bucket}"
        erased = False
        while True:
            try:
                entry = await kv.get(name)
            except nats.js.errors.KeyNotFoundError:
                break
            if entry.value == TOMBSTONE:
                self._remember(subject, name, _FORGOTTEN)
                return erased
            try:
                await self._js.delete_msg(stream, entry.revision)
                erased = True
            except nats.js.errors.NotFoundError:
                continue
            except nats.js.errors.APIError as e:
                if not is_gone(e):
                    raise StoreUnavailableError(
                        f"cannot erase the data key of a subject in {self.bucket!r}: "
                        f"{e.description}"
                    ) from e
        await kv.put(name, TOMBSTONE)
        self._remember(subject, name, _FORGOTTEN)
        return erased


def seal(aead: AESGCM, plaintext: bytes, associated: bytes) -> bytes:
    """AES-GCM with a fresh random nonce, returned in front of the ciphertext."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, plaintext, associated)


def unseal(aead: AESGCM, blob: bytes, associated: bytes) -> bytes:
    """The plaintext of :func:`seal`'s output; ``InvalidTag`` when it does not authenticate."""
    return bytes(aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated))


def _bounded_set(d: dict[str, Any], key: str, value: Any) -> None:
    if len(d) >= CACHE_LIMIT and key not in d:
        del d[next(iter(d))]
    d[key] = value


__all__ = ["TOMBSTONE", "KeyStore", "derive_key"]
