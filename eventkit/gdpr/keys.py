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

import asyncio
import contextlib
import hashlib
import hmac
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

import nats.errors
import nats.js.errors
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eventkit.domain.events import Event
from eventkit.errors import (
    ConfigError,
    DataKeyMissingError,
    EventDecodeError,
    ForgottenError,
    StoreUnavailableError,
)
from eventkit.gdpr.keycache import DEFAULT_LIMIT, DataKey, Forgotten, KeyCache
from eventkit.gdpr.sealing import (
    TOMBSTONE,
    check_master_key,
    derive_key,
    seal,
    unseal,
    unwrap_entry,
    wrap_key,
)
from eventkit.store.nats.buckets import ensure_erasable_bucket
from eventkit.store.nats.jetstream_errors import is_gone
from eventkit.store.subjects import subject_matches, validate_filter

if TYPE_CHECKING:
    from eventkit.store.jetstream import JetStreamEventStore
    from eventkit.store.records import StoredMessage

CACHE_LIMIT: Final = DEFAULT_LIMIT
"""Most data keys (and cover decisions) kept in memory; the least recently used go first."""
LOAD_BATCH: Final = 500
"""Keys read from the bucket in one direct get when a batch needs keys it has not cached."""
LOAD_CONCURRENCY: Final = 256
"""Keys created (or confirmed absent) at once."""

CHECK_KEY: Final = "master-key-check"


class KeyStore:
    """The ``PayloadCipher`` of eventkit: per-subject AES-256-GCM keys in a KV bucket.

    ``personal``: subject filters whose every event is encrypted (``App.personal_subjects``);
    events whose class sets ``personal_data = True`` are encrypted on any subject. Keys are cached
    (least recently used evicted first, ``cache_limit`` of them) after their first use, so
    :meth:`prepare` costs a dict lookup for a known subject. A subject missing from the cache is
    never taken for a forgotten one: only a tombstone read from the bucket makes it forgotten.

    Other processes' shredding reaches the cache through a subscription on the bucket's
    subjects; a notice missed while the connection was down (or dropped as a slow consumer) is
    caught up from the bucket's stream before the next :meth:`prepare` after a reconnect.

    Example::

        keys = KeyStore(master_key=os.urandom(32), personal=["bank.customer.*"])
        await keys.attach(store)
        await keys.prepare(["bank.customer.c-1"], create=True)
        key_id, sealed = keys.encrypt("bank.customer.c-1", b'{"name":"Ada"}')
    """

    def __init__(
        self, master_key: bytes, personal: Sequence[str] = (), *, cache_limit: int = CACHE_LIMIT
    ) -> None:
        check_master_key(master_key)
        if isinstance(cache_limit, bool) or not isinstance(cache_limit, int) or cache_limit < 1:
            raise ConfigError(f"cache_limit must be an int >= 1, got {cache_limit!r}")
        self.personal = [validate_filter(f) for f in personal]
        self._wrap = AESGCM(derive_key(master_key, "key-wrap"))
        self._name_key = derive_key(master_key, "key-name")
        self.audit_key = derive_key(master_key, "audit")
        self.notice_key = derive_key(master_key, "notice")
        self.cache = KeyCache(cache_limit)
        self._covers: dict[str, bool] = {}
        self._store: JetStreamEventStore | None = None
        self._replicas = 1
        self._js: Any = None
        self._kv: Any = None
        self._sub: Any = None
        self.bucket: str | None = None
        self._seen = 0  # the bucket stream's sequence up to which tombstones were caught up
        self._suspect = False  # notices may have been missed (disconnect, slow consumer)
        self._catching_up: asyncio.Lock | None = None

    # -- the PayloadCipher protocol -------------------------------------------------------
    def covers(self, subject: str, event: Event | None) -> bool:
        if event is not None and type(event).personal_data:
            return True
        hit = self._covers.get(subject)
        if hit is None:
            hit = any(subject_matches(f, subject) for f in self.personal)
            if len(self._covers) >= self.cache.limit:
                self._covers.clear()
            self._covers[subject] = hit
        return hit

    async def prepare(self, subjects: Iterable[str], *, create: bool) -> None:
        if self._suspect:
            await self.catch_up()
        touch = self.cache.touch
        missing: list[str] = []
        for subject in dict.fromkeys(subjects):
            found = touch(subject)
            if isinstance(found, Forgotten):
                if create:
                    raise ForgottenError(subject)
            elif found is None:
                missing.append(subject)
        for i in range(0, len(missing), LOAD_BATCH):
            chunk = missing[i : i + LOAD_BATCH]
            absent = await self._load_present(chunk) if self._store is not None else chunk
            for j in range(0, len(absent), LOAD_CONCURRENCY):
                part = absent[j : j + LOAD_CONCURRENCY]
                await asyncio.gather(*(self._load(s, create=create) for s in part))
        if create:
            for subject in missing:
                if isinstance(self.cache.peek(subject), Forgotten):
                    raise ForgottenError(subject)

    def encrypt(self, subject: str, plaintext: bytes) -> tuple[str, bytes]:
        key = self.cache.peek(subject)
        if isinstance(key, Forgotten):
            raise ForgottenError(subject)
        if key is None:
            raise ConfigError(
                f"no data key loaded for {subject!r}: call `await cipher.prepare([subject], "
                f"create=True)` before encrypt (the stores do this for you)"
            )
        return key.key_id, seal(AESGCM(key.key), plaintext, subject.encode())

    def decrypt(self, subject: str, key_id: str, ciphertext: bytes) -> bytes:
        key = self.cache.peek(subject)
        if isinstance(key, Forgotten):
            raise ForgottenError(subject)
        if key is None:
            # not a forget: the key was never loaded, or the bucket has no entry for it
            raise DataKeyMissingError(subject)
        if key.key_id != key_id:
            raise EventDecodeError(
                f"payload sealed with key {key_id!r} but the subject's key is {key.key_id!r} "
                f"(was the key bucket restored from another installation?)",
                subject=subject,
            )
        try:
            return unseal(AESGCM(key.key), ciphertext, subject.encode())
        except InvalidTag:
            raise EventDecodeError(
                "payload does not authenticate under the subject's key (tampered, or moved "
                "from another subject)",
                subject=subject,
            ) from None

    def forgotten(self, subject: str) -> None:
        """Mark ``subject`` forgotten in the cache (its erasure marker was read)."""
        self.cache.mark_subject_forgotten(subject, self.key_name(subject))

    # -- wiring ---------------------------------------------------------------------------
    async def attach(self, store: JetStreamEventStore) -> None:
        """Open (or create) the key bucket ``<stream>_keys`` next to ``store``'s stream."""
        self._store = store
        self._replicas = store.replicas
        self._js = store.js
        self.bucket = f"{store.stream}_keys"
        self._catching_up = asyncio.Lock()
        await ensure_erasable_bucket(self._js, self.bucket, store.replicas)
        self._kv = await self._js.key_value(self.bucket)
        await self.verify_master_key()
        self._seen = await store.last_sequence_of_stream(f"KV_{self.bucket}")
        store.on_connection_change(self.suspect)
        with contextlib.suppress(nats.errors.Error):
            self._sub = await store.nc.subscribe(f"$KV.{self.bucket}.>", cb=self._on_change)

    def suspect(self) -> None:
        """Notices may have been missed: catch up from the bucket before the next use."""
        self._suspect = True

    async def catch_up(self) -> int:
        """Read the bucket's stream past what was caught up; every tombstone there marks its
        (cached) subject forgotten. Returns how many tombstones were seen."""
        store = self._store
        if store is None or self._catching_up is None:
            return 0
        async with self._catching_up:
            self._suspect = False
            seen = 0
            try:
                async for m in store.read_stream(
                    f"KV_{self.bucket}", f"$KV.{self.bucket}.>", self._seen + 1
                ):
                    self._seen = max(self._seen, m.sequence)
                    if m.data == TOMBSTONE:
                        self.cache.mark_forgotten(m.subject.rsplit(".", 1)[-1])
                        seen += 1
            except BaseException:
                self._suspect = True
                raise
            return seen

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
        if msg.data == TOMBSTONE:
            self.cache.mark_forgotten(msg.subject.rsplit(".", 1)[-1])

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

    async def _entry(self, name: str) -> bytes | None:
        """The bucket's value for ``name`` (None: no entry). An absent entry on a replicated
        bucket is confirmed with the stream leader, which a lagging replica cannot answer for."""
        kv = self._bucket_kv()
        try:
            entry = await kv.get(name)
            return entry.value or None
        except nats.js.errors.KeyNotFoundError:
            if self._replicas <= 1 or self._store is None:
                return None
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
            raise StoreUnavailableError(f"key bucket {self.bucket!r} did not answer") from e
        subject = f"$KV.{self.bucket}.{name}"
        return _kv_value(
            await self._store.last_message(subject, stream=f"KV_{self.bucket}", leader=True)
        )

    async def _load_present(self, subjects: list[str]) -> list[str]:
        """Load the keys of ``subjects`` that the bucket has, in one direct get; return the
        subjects it had no entry for (created, or confirmed with the leader, one by one)."""
        assert self._store is not None
        names = {f"$KV.{self.bucket}.{self.key_name(s)}": s for s in subjects}
        found = await self._store.last_messages(list(names), stream=f"KV_{self.bucket}")
        absent = []
        for kv_subject, subject in names.items():
            value = _kv_value(found.get(kv_subject))
            if value is None:
                absent.append(subject)
                continue
            self.cache.put(
                subject, unwrap_entry(self._wrap, self.bucket, kv_subject.rsplit(".", 1)[-1], value)
            )
        return absent

    async def _load(self, subject: str, *, create: bool) -> None:
        kv = self._bucket_kv()
        name = self.key_name(subject)
        for _ in range(3):
            value = await self._entry(name)
            if value:
                self.cache.put(subject, unwrap_entry(self._wrap, self.bucket, name, value))
                return
            if not create:
                return  # unknown here: decrypt says the key is missing, never "forgotten"
            key_id, key = os.urandom(4).hex(), AESGCM.generate_key(bit_length=256)
            try:
                await kv.create(name, wrap_key(self._wrap, name, key_id, key))
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another writer made it first (or it was forgotten): load theirs
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
                raise StoreUnavailableError(f"key bucket {self.bucket!r} did not answer") from e
            self.cache.put(subject, DataKey(key_id, key, name))
            return
        raise StoreUnavailableError(f"could not create or load the data key of {subject!r}")

    async def state(self, subject: str) -> str:
        """``"active"`` (a key exists), ``"forgotten"`` (tombstone) or ``"none"``."""
        value = await self._entry(self.key_name(subject))
        if value == TOMBSTONE:
            return "forgotten"
        return "active" if value else "none"

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
                self.cache.mark_subject_forgotten(subject, name)
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
        self.cache.mark_subject_forgotten(subject, name)
        return erased


def _kv_value(msg: StoredMessage | None) -> bytes | None:
    """A KV entry's value: None for no entry, a deleted or purged one, or an empty value."""
    if msg is None or msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
        return None
    return msg.data or None


__all__ = ["TOMBSTONE", "KeyStore", "derive_key"]
