"""The KV buckets next to the event stream (snapshots, data keys), made so that an entry can be
erased securely."""

from __future__ import annotations

from typing import Any, Protocol

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.kv import KeyValue

from eventkit.errors import ConfigError, EventkitError, StoreUnavailableError
from eventkit.store.codec import Codec
from eventkit.store.nats.delivery import Delivered
from eventkit.store.nats.direct import DirectReader
from eventkit.store.nats.inbox import Inbox
from eventkit.store.nats.jetstream_errors import is_gone, translate_api
from eventkit.store.snapshots import Snapshot, SnapshotStore
from eventkit.store.wire_constants import SEQUENCE


class SnapshotHost(Protocol):
    """What the snapshot bucket uses of the JetStream store it sits beside (its connection,
    inbox and direct gets), named here so this module need not import the store."""

    stream: str
    js: JetStreamContext
    replicas: int
    codec: Codec
    _inbox: Inbox

    async def _direct(
        self,
        request: dict[str, Any],
        subject: str | None = None,
        reader: DirectReader | None = None,
    ) -> tuple[list[Delivered], int]: ...


def erasable_kv_config(bucket: str, replicas: int = 1) -> StreamConfig:
    """The stream of a KV bucket (history 1) that, unlike nats-py's, allows a secure erase of a
    message by sequence (``deny_delete`` off; the server cannot lift it later). Snapshots and
    the GDPR key bucket use it."""
    return StreamConfig(
        name=f"KV_{bucket}",
        subjects=[f"$KV.{bucket}.>"],
        max_msgs_per_subject=1,
        discard=DiscardPolicy.NEW,
        allow_rollup_hdrs=True,
        deny_delete=False,
        deny_purge=False,
        allow_direct=True,
        storage=StorageType.FILE,
        num_replicas=replicas,
    )


async def open_bucket(
    js: JetStreamContext, config: KeyValueConfig, *, create: bool
) -> KeyValue | None:
    """The KV bucket ``config.bucket``; made from ``config`` when it is missing and ``create``
    (None when it is missing otherwise). An unanswered request is a StoreUnavailableError."""
    try:
        try:
            found: KeyValue = await js.key_value(config.bucket)
            return found
        except nats.js.errors.BucketNotFoundError:
            if not create:
                return None
        made: KeyValue = await js.create_key_value(config)
        return made
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
        raise StoreUnavailableError(f"bucket {config.bucket!r}: {e!r}") from e


async def ensure_erasable_bucket(js: JetStreamContext, bucket: str, replicas: int) -> None:
    """Create the KV bucket's stream with :func:`erasable_kv_config` unless it exists; a bucket
    made elsewhere (nats-py's ``create_key_value`` sets ``deny_delete``) is refused, because its
    entries could not be erased securely."""
    name = f"KV_{bucket}"
    try:
        info = await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(erasable_kv_config(bucket, replicas))
        except nats.js.errors.APIError as e:
            raise StoreUnavailableError(
                f"cannot create the KV bucket {bucket!r}: {e.description}; may this user create "
                f"streams?"
            ) from e
        return
    if info.config.deny_delete:
        raise ConfigError(
            f"the KV bucket {bucket!r} was not made by eventkit: it denies erasing an entry "
            f"securely; delete its stream {name!r} (or move its entries) and connect again"
        )


class KVSnapshotStore(SnapshotStore):
    """Snapshots in the KV bucket ``<stream>_snapshots`` (one key per subject, history 1).

    Reads are a direct get of the key's subject and writes a plain publish, so any subject is a
    valid key. A snapshot of a personal-data subject is sealed with the subject's key.
    """

    def __init__(self, store: SnapshotHost) -> None:
        self._store = store
        self.bucket = f"{store.stream}_snapshots"
        self.kv_stream = f"KV_{self.bucket}"
        self._prefix = f"$KV.{self.bucket}."
        self._reader = DirectReader(store._inbox, self.kv_stream)
        self._ready = False

    async def _bucket(self) -> None:
        if not self._ready:
            await ensure_erasable_bucket(self._store.js, self.bucket, self._store.replicas)
            self._ready = True

    async def get(self, subject: str) -> Snapshot | None:
        await self._bucket()
        msgs, _ = await self._store._direct({}, self._prefix + subject, self._reader)
        if not msgs:
            return None
        msg = msgs[0]
        if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
            return None
        data: bytes = msg.data
        if not data:
            return None
        cipher = self._store.codec.cipher
        try:
            if data[:1] == b"!":
                if cipher is None:
                    return None
                key_id, _, sealed = data[1:].partition(b"!")
                await cipher.prepare([subject], create=False)
                data = cipher.decrypt(subject, key_id.decode(), sealed)
            return Snapshot.from_bytes(data)
        except EventkitError:
            return None

    async def put(self, snapshot: Snapshot) -> None:
        await self._bucket()
        data = snapshot.to_bytes()
        cipher = self._store.codec.cipher
        if cipher is not None and cipher.covers(snapshot.subject, None):
            await cipher.prepare([snapshot.subject], create=True)
            key_id, sealed = cipher.encrypt(snapshot.subject, data)
            data = b"!" + key_id.encode() + b"!" + sealed
        try:
            await self._store.js.publish(self._prefix + snapshot.subject, data, timeout=5.0)
        except nats.js.errors.APIError as e:
            raise translate_api(e, f"storing the snapshot of {snapshot.subject!r}") from e
        except nats.errors.TimeoutError as e:
            raise StoreUnavailableError(
                f"no answer storing the snapshot of {snapshot.subject!r}"
            ) from e

    async def delete(self, subject: str) -> int:
        await self._bucket()
        removed = 0
        while True:
            msgs, _ = await self._store._direct({}, self._prefix + subject, self._reader)
            if not msgs or not msgs[0].headers:
                break
            try:
                await self._store.js.delete_msg(self.kv_stream, int(msgs[0].headers[SEQUENCE]))
                removed += 1
            except nats.js.errors.APIError as e:
                if not is_gone(e):
                    raise translate_api(e, f"erasing the snapshot of {subject!r}") from e
        return removed
