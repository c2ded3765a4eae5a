"""The event store on NATS JetStream.

One event per append is a plain publish with ``Nats-Expected-Last-Subject-Sequence`` and
``Nats-Msg-Id``; several events are one ADR-50 atomic batch. Reads use the batched direct get.
The parts live in :mod:`eventkit.store.nats` (connection, inbox, direct gets, reading,
appending, buckets); transport errors are translated there, and only there.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Self

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from eventkit.errors import (
    ConfigError,
    EventkitError,
    ServerVersionError,
    StoreUnavailableError,
    StreamMissingError,
)
from eventkit.store import protocol as p
from eventkit.store.base import EventStore
from eventkit.store.chain import ChainHeads, erased_link_headers, erased_subject
from eventkit.store.codec import Codec, PayloadCipher
from eventkit.store.durability import Durability
from eventkit.store.durability import report as report_durability
from eventkit.store.erasure import BODY, is_marker
from eventkit.store.nats.appending import Appending, with_expectation
from eventkit.store.nats.buckets import KVSnapshotStore, ensure_erasable_bucket, erasable_kv_config
from eventkit.store.nats.connection import (
    FIRST_CONNECT_ATTEMPTS,
    open_connection,
    until_answered,
)
from eventkit.store.nats.direct import DirectReader
from eventkit.store.nats.errors import JetStreamError, ack_error, is_gone, translate_api
from eventkit.store.nats.freshness import Freshness
from eventkit.store.nats.inbox import Denials, Inbox
from eventkit.store.nats.provenance import missing_message, record_created, traces_of
from eventkit.store.nats.reading import READ_BATCH, READ_MAX_BYTES
from eventkit.store.nats.wire import format_nats_time, parse_nats_time, parse_version
from eventkit.store.records import StoredMessage
from eventkit.store.subjects import validate_stream_name

log = logging.getLogger(__name__)

OWNER_KEY = "eventkit"
OWNER_VALUE = "1"
"""The stream metadata that marks a stream eventkit made (and may therefore update)."""


class JetStreamEventStore(Appending, EventStore):
    """The event store on a JetStream stream (subjects ``<stream>.>``).

    ::

        url = "nats://127.0.0.1:4222"
        async with await JetStreamEventStore.connect(url, stream="bank") as store:
            seq = await store.append("bank.account.a-1", [AccountOpened(owner="ada")],
                                     expected_sequence=0)
            events = await store.read("bank.account.a-1")

    ``connect`` creates the stream (file storage, ``allow_direct``, ``allow_atomic``, the duplicate
    window and replicas given) or updates an existing one to have them.
    """

    def __init__(
        self,
        nc: NATS,
        stream: str,
        *,
        codec: Codec | None = None,
        own_connection: bool = True,
        publish_timeout: float = 2.0,
        retry_for: float = 20.0,
        verify_chains: bool = True,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.stream = validate_stream_name(stream)
        self.codec = codec or Codec()
        self.publish_timeout = publish_timeout
        self.read_timeout = max(publish_timeout, 5.0)
        self.retry_for = retry_for
        self._own = own_connection
        self._inbox = Inbox(nc)
        self._reader = DirectReader(self._inbox, stream)
        self._snapshots: KVSnapshotStore | None = None
        self.replicas = 1
        self._errors: collections.deque[Exception] = collections.deque(maxlen=100)
        self._denials = Denials()
        self._denials.inbox = self._inbox
        self.server_version = "0.0.0"
        self._fresh = Freshness()
        self._heads = ChainHeads()
        self._closed: set[str] = set()
        self.verify_chains = verify_chains
        self._connection_listeners: list[Callable[[], None]] = []
        self.embedded: Any = None
        """The embedded server's ``ServerInfo`` when :meth:`connect` started or reused it."""
        self.durability: Durability | None = None
        """What an acknowledged append survives here, as seen at :meth:`connect`."""

    # -- connecting -----------------------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        url: str | Sequence[str] | None = None,
        *,
        stream: str,
        replicas: int = 1,
        duplicate_window: float = 120.0,
        cipher: PayloadCipher | None = None,
        codec: Codec | None = None,
        settings: Any = None,
        publish_timeout: float = 2.0,
        retry_for: float = 20.0,
        verify_chains: bool = True,
        create_stream: bool | None = None,
        **connect_options: Any,
    ) -> Self:
        """Connect, then create or update the stream with what eventkit needs.

        ``url`` None: the servers of ``settings`` (``EVENTKIT_NATS_URL``), else the embedded server
        (started on demand under ``./.eventkit``). ``duplicate_window`` (seconds) bounds how long a
        retried append is recognised by its event ids alone. Raises ``ServerVersionError`` when the
        server is older than 2.12 (atomic batches), ``StoreUnavailableError`` when unreachable.
        ``verify_chains=False`` skips the hash-chain check of every subject read (``read``,
        ``Repository.load``); appends chain their events either way.

        ``create_stream``: None (default) creates a missing stream only when nothing shows that it
        existed (eventkit's record of the streams it made, its KV buckets of the stream), and
        raises ``StreamMissingError`` otherwise, saying what to restore; True creates it anyway
        (starting over on purpose); False never creates it.
        """
        validate_stream_name(stream)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 5:
            raise ConfigError(f"replicas must be an int 1..5, got {replicas!r}")
        if not duplicate_window > 0:
            raise ConfigError(f"duplicate_window must be > 0 seconds, got {duplicate_window!r}")
        conn = await open_connection(url, settings, connect_options)
        nc = conn.nc
        store = cls(
            nc,
            stream,
            codec=codec or Codec(cipher=cipher),
            publish_timeout=publish_timeout,
            retry_for=retry_for,
            verify_chains=verify_chains,
        )
        store._errors = conn.errors
        store._denials = conn.denials
        store._connection_listeners = conn.listeners
        store.embedded = conn.embedded
        conn.denials.inbox = store._inbox
        try:
            await conn.denials.guard(
                until_answered(
                    lambda: store.ensure_stream(
                        replicas=replicas, duplicate_window=duplicate_window, create=create_stream
                    ),
                    nc,
                    retry_for,
                    f"stream {stream!r}",
                )
            )
        except BaseException:
            await nc.close()
            raise
        store.durability = await report_durability(store)
        return store

    def on_connection_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever the connection drops, comes back, or the client drops
        messages as a slow consumer: anything learnt from core-NATS notices may be stale then.
        (Only for stores made by :meth:`connect`.)"""
        self._connection_listeners.append(listener)

    def check_server_version(self, version: str | None = None) -> None:
        """``ServerVersionError`` unless the server (or ``version``) supports atomic batches."""
        if version is None:
            try:
                v = self.nc.connected_server_version
                version = f"{v.major}.{v.minor}.{v.patch}"
            except ValueError:  # not a semantic version: unknown
                version = "0.0.0"
        self.server_version = version
        if parse_version(version) < parse_version(p.ATOMIC_BATCH_SERVER):
            raise ServerVersionError(
                "atomic multi-event appends (ADR-50)", p.ATOMIC_BATCH_SERVER, version
            )

    async def ensure_stream(
        self, *, replicas: int = 1, duplicate_window: float = 120.0, create: bool | None = None
    ) -> None:
        """Create the stream (marked ``metadata: {eventkit: "1"}``), or check an existing one.

        A stream eventkit made is kept as asked (replicas, duplicate window, the flags it needs).
        A stream another service made is never changed: eventkit adopts its replicas and
        duplicate window, and raises ``ConfigError`` naming the fix when it lacks a setting
        eventkit needs (``allow_direct``, ``allow_atomic``, the subjects ``<stream>.>``), so the
        two services never flip its settings back and forth."""
        self.check_server_version()
        self.replicas = replicas
        try:
            info = await self.js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            if create is not True:
                traces = await traces_of(self)
                if traces:
                    raise StreamMissingError(missing_message(self.stream, traces)) from None
                if create is False:
                    raise StreamMissingError(
                        f"stream {self.stream!r} does not exist and create_stream=False; create "
                        f"it by connecting once without create_stream=False"
                    ) from None
            want = StreamConfig(
                name=self.stream,
                subjects=[f"{self.stream}.>"],
                storage=StorageType.FILE,
                num_replicas=replicas,
                allow_direct=True,
                allow_atomic=True,
                duplicate_window=duplicate_window,
                metadata={OWNER_KEY: OWNER_VALUE},
            )
            try:
                await self.js.add_stream(want)
            except nats.js.errors.APIError as e:
                raise self._translate_api(e, f"creating stream {self.stream!r}") from e
            await record_created(self, replicas)
            return
        except nats.js.errors.APIError as e:
            raise self._translate_api(e, f"looking up stream {self.stream!r}") from e
        except nats.errors.TimeoutError as e:
            raise StoreUnavailableError(
                f"JetStream did not answer for stream {self.stream!r}: is JetStream enabled on the "
                f"server (nats-server -js) and may this user use it?"
            ) from e
        cfg = info.config
        subjects = list(cfg.subjects or [])
        needed: list[str] = []
        if not cfg.allow_direct:
            cfg.allow_direct = True
            needed.append("allow_direct: true")
        if not cfg.allow_atomic:
            cfg.allow_atomic = True
            needed.append("allow_atomic: true")
        if f"{self.stream}.>" not in subjects:
            cfg.subjects = [*subjects, f"{self.stream}.>"]
            needed.append(f"subjects: [..., '{self.stream}.>']")
        if cfg.storage != StorageType.FILE:
            log.warning("stream %s uses %s storage, not file storage", self.stream, cfg.storage)
        owned = (cfg.metadata or {}).get(OWNER_KEY) == OWNER_VALUE
        if not owned:
            if needed:
                raise ConfigError(
                    f"stream {self.stream!r} was made by another service and lacks what eventkit "
                    f"needs: {', '.join(needed)}. Add it to that service's stream config (NestJS: "
                    f"streamConfig), or hand the stream to eventkit: nats stream edit "
                    f"{self.stream} --metadata {OWNER_KEY}={OWNER_VALUE} (see docs/wire-format.md)"
                )
            self.replicas = int(cfg.num_replicas or 1)
            if self.replicas != replicas or (
                cfg.duplicate_window is not None
                and abs(cfg.duplicate_window - duplicate_window) > 1e-6
            ):
                log.info(
                    "stream %s belongs to another service: using its replicas (%s) and duplicate "
                    "window (%ss) as they are",
                    self.stream,
                    cfg.num_replicas,
                    cfg.duplicate_window,
                )
            return
        changes = [n.split(":", 1)[0] for n in needed]
        if cfg.num_replicas != replicas:
            cfg.num_replicas = replicas
            changes.append("replicas")
        if cfg.duplicate_window is None or abs(cfg.duplicate_window - duplicate_window) > 1e-6:
            cfg.duplicate_window = duplicate_window
            changes.append("duplicate_window")
        if changes:
            log.info("updating stream %s: %s", self.stream, ", ".join(changes))
            try:
                await self.js.update_stream(cfg)
            except nats.js.errors.APIError as e:
                raise self._translate_api(e, f"updating stream {self.stream!r}") from e

    async def delete(self, sequence: int, *, keep_links: bool = True) -> bool:
        """Erase one message securely (payload overwritten); False when already gone. A chained
        message's links are kept first (:meth:`record_erasure`) unless its subject is forgotten
        (the erasure marker closed its chain)."""
        msg = await self.get(sequence) if keep_links else None
        if msg is not None and p.CHAIN in msg.headers and msg.subject not in self._closed:
            last = await self.last_message(msg.subject)
            if last is None or not is_marker(last.headers):
                await self.record_erasure(msg)
            elif len(self._closed) < 10_000:
                self._closed.add(msg.subject)  # forgotten: its other messages need no record
        return await super().delete(sequence)

    async def record_erasure(self, erased: StoredMessage) -> None:
        headers = erased_link_headers(erased.subject, erased)
        if headers is None:
            return
        subject = erased_subject(self.stream, erased.subject)
        ack = await self._send(
            lambda: self._request(subject, BODY, headers, self.publish_timeout),
            f"recording the erasure of sequence {erased.sequence}",
        )
        err = ack_error(ack)
        if err is not None:
            raise JetStreamError(err[0], err[1], f"recording an erasure: {err[2]}")

    def _translate_api(self, e: nats.js.errors.APIError, doing: str) -> EventkitError:
        return translate_api(e, doing)

    # -- snapshots ------------------------------------------------------------------------
    @property
    def snapshots(self) -> KVSnapshotStore:
        """Snapshots in the KV bucket ``<stream>_snapshots`` (created on first use)."""
        if self._snapshots is None:
            self._snapshots = KVSnapshotStore(self)
        return self._snapshots

    async def close(self) -> None:
        await self._inbox.close()
        if self._own and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()


__all__ = [
    "FIRST_CONNECT_ATTEMPTS",
    "READ_BATCH",
    "READ_MAX_BYTES",
    "JetStreamError",
    "JetStreamEventStore",
    "KVSnapshotStore",
    "ensure_erasable_bucket",
    "erasable_kv_config",
    "format_nats_time",
    "is_gone",
    "parse_nats_time",
    "parse_version",
    "with_expectation",
]
