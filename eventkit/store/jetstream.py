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
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, Self

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from eventkit.errors import ConfigError, ServerVersionError
from eventkit.observability.tracing import traced_append
from eventkit.store.base import Consistency, EventStore, Write
from eventkit.store.chain import ChainHeads, erased_link_headers, erased_subject
from eventkit.store.codec import Codec, PayloadCipher
from eventkit.store.durability import Durability
from eventkit.store.durability import report as report_durability
from eventkit.store.erasure import BODY, is_marker
from eventkit.store.nats.appending import Appender, with_expectation
from eventkit.store.nats.buckets import KVSnapshotStore, ensure_erasable_bucket, erasable_kv_config
from eventkit.store.nats.chaining import Chainer
from eventkit.store.nats.connection import (
    FIRST_CONNECT_ATTEMPTS,
    open_connection,
    until_answered,
)
from eventkit.store.nats.delivery import Delivered
from eventkit.store.nats.direct import DirectReader
from eventkit.store.nats.freshness import Freshness
from eventkit.store.nats.inbox import Denials, Inbox
from eventkit.store.nats.jetstream_errors import JetStreamError, ack_error, is_gone
from eventkit.store.nats.link import Link, Linked
from eventkit.store.nats.reading import READ_BATCH, READ_MAX_BYTES, Reader
from eventkit.store.nats.streams import OWNER_KEY, OWNER_VALUE, ensure_stream
from eventkit.store.nats.wire import format_nats_time, parse_nats_time, parse_version
from eventkit.store.records import RecordedEvent, StoredMessage
from eventkit.store.subjects import validate_stream_name
from eventkit.store.wire_constants import ATOMIC_BATCH_SERVER, CHAIN

log = logging.getLogger(__name__)


class JetStreamEventStore(EventStore):
    """The event store on a JetStream stream (subjects ``<stream>.>``).

    ::

        url = "nats://127.0.0.1:4222"
        async with await JetStreamEventStore.connect(url, stream="bank") as store:
            seq = await store.append("bank.account.a-1", [AccountOpened(owner="ada")],
                                     expected_sequence=0)
            events = await store.read("bank.account.a-1")

    ``connect`` creates the stream (file storage, ``allow_direct``, ``allow_atomic``, the duplicate
    window and replicas given) or updates an existing one to have them.

    The store is made of parts over one :class:`~eventkit.store.nats.link.Link` (its
    connection, stream and settings, which its attributes of those names are): a reader, a
    chainer and an appender.
    """

    nc = Linked[Any]()
    js = Linked[JetStreamContext]()
    stream = Linked[str]()
    codec = Linked[Codec]()
    publish_timeout = Linked[float]()
    read_timeout = Linked[float]()
    retry_for = Linked[float]()
    replicas = Linked[int]()
    server_version = Linked[str]()
    verify_chains = Linked[bool]()
    _inbox = Linked[Inbox]("inbox")
    _reader = Linked[DirectReader]("reader")
    _denials = Linked[Denials]("denials")
    _fresh = Linked[Freshness]("fresh")
    _heads = Linked[ChainHeads]("heads")

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
        inbox = Inbox(nc)
        denials = Denials()
        denials.inbox = inbox
        self.link = Link(
            nc=nc,
            js=nc.jetstream(),
            stream=validate_stream_name(stream),
            codec=codec or Codec(),
            publish_timeout=publish_timeout,
            read_timeout=max(publish_timeout, 5.0),
            retry_for=retry_for,
            inbox=inbox,
            reader=DirectReader(inbox, stream),
            denials=denials,
            fresh=Freshness(),
            heads=ChainHeads(),
            verify_chains=verify_chains,
        )
        self._reading = Reader(self.link, lambda r, s, rd: self._direct(r, s, rd))
        self._chaining = Chainer(self._reading, self.link.heads)
        # the store's seams (a subclass or a test may replace them): looked up at each call
        self._appending = Appender(
            self.link,
            self._reading,
            self._chaining,
            request=lambda s, b, h, t: self._request(s, b, h, t),
            tails=lambda subjects: self.tails(subjects),
        )
        self._own = own_connection
        self._snapshots: KVSnapshotStore | None = None
        self._errors: collections.deque[Exception] = collections.deque(maxlen=100)
        self._closed: set[str] = set()
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
        if parse_version(version) < parse_version(ATOMIC_BATCH_SERVER):
            raise ServerVersionError(
                "atomic multi-event appends (ADR-50)", ATOMIC_BATCH_SERVER, version
            )

    async def ensure_stream(
        self, *, replicas: int = 1, duplicate_window: float = 120.0, create: bool | None = None
    ) -> None:
        """Create the stream, or check an existing one (see
        :func:`eventkit.store.nats.streams.ensure_stream`)."""
        await ensure_stream(
            self, replicas=replicas, duplicate_window=duplicate_window, create=create
        )

    async def delete(self, sequence: int, *, keep_links: bool = True) -> bool:
        """Erase one message securely (payload overwritten); False when already gone. A chained
        message's links are kept first (:meth:`record_erasure`) unless its subject is forgotten
        (the erasure marker closed its chain)."""
        msg = await self.get(sequence) if keep_links else None
        if msg is not None and CHAIN in msg.headers and msg.subject not in self._closed:
            last = await self.last_message(msg.subject)
            if last is None or not is_marker(last.headers):
                await self.record_erasure(msg)
            elif len(self._closed) < 10_000:
                self._closed.add(msg.subject)  # forgotten: its other messages need no record
        return await self._reading.delete(sequence)

    async def record_erasure(self, erased: StoredMessage) -> None:
        headers = erased_link_headers(erased.subject, erased)
        if headers is None:
            return
        subject = erased_subject(self.stream, erased.subject)
        ack = await self._appending.send(
            lambda: self._request(subject, BODY, headers, self.publish_timeout),
            f"recording the erasure of sequence {erased.sequence}",
        )
        err = ack_error(ack)
        if err is not None:
            raise JetStreamError(err[0], err[1], f"recording an erasure: {err[2]}")

    # -- reading (the reader's) -------------------------------------------------------------
    async def read(
        self,
        subject: str,
        after: int = 0,
        *,
        consistency: Consistency = "eventual",
        at_least: int | None = None,
    ) -> list[RecordedEvent[Any]]:
        """Every event of ``subject`` after sequence ``after``, in order (see
        :meth:`Reader.read <eventkit.store.nats.reading.Reader.read>`)."""
        return await self._reading.read(subject, after, consistency=consistency, at_least=at_least)

    def read_all(
        self,
        from_sequence: int = 1,
        from_time: datetime | None = None,
        subjects: Sequence[str] | None = None,
    ) -> AsyncIterator[RecordedEvent[Any]]:
        """Every event (of ``subjects`` filters) from a sequence or a time, in stream order, up
        to the stream's last sequence at the call (see
        :meth:`Reader.read_all <eventkit.store.nats.reading.Reader.read_all>`)."""
        return self._reading.read_all(from_sequence, from_time, subjects)

    def read_raw(
        self, subject: str | None = None, from_sequence: int = 1
    ) -> AsyncIterator[StoredMessage]:
        """Stored messages (of ``subject``, a filter, when given) without decoding."""
        return self._reading.read_raw(subject, from_sequence)

    def read_stream(
        self, stream: str, subject: str, from_sequence: int = 1
    ) -> AsyncIterator[StoredMessage]:
        """Stored messages of another stream of this account (a KV bucket's), by filter."""
        return self._reading.read_stream(stream, subject, from_sequence)

    async def last_messages(
        self, subjects: Sequence[str], stream: str | None = None
    ) -> dict[str, StoredMessage]:
        """The last message of each of ``subjects`` (on ``stream``, another of this account)."""
        return await self._reading.last_messages(subjects, stream)

    async def last_message(
        self, subject: str, *, stream: str | None = None, leader: bool = False
    ) -> StoredMessage | None:
        """The last message of ``subject`` (on ``stream``; ``leader``: the stream leader's)."""
        return await self._reading.last_message(subject, stream=stream, leader=leader)

    async def last_sequence_of_stream(self, name: str) -> int:
        """The last sequence of a stream of this account (the event stream, a KV bucket's)."""
        return await self._reading.last_sequence_of_stream(name)

    async def last_sequence(
        self, subject: str | None = None, *, consistency: Consistency = "eventual"
    ) -> int:
        """The last sequence of ``subject`` (a filter), or of the stream; 0 when there is none."""
        return await self._reading.last_sequence(subject, consistency=consistency)

    async def get(self, sequence: int) -> StoredMessage | None:
        """One stored message by stream sequence; None when absent or deleted."""
        return await self._reading.get(sequence)

    async def _direct(
        self,
        request: dict[str, Any],
        subject: str | None = None,
        reader: DirectReader | None = None,
    ) -> tuple[list[Delivered], int]:
        """One direct get, retried while unanswered (for the store's other rooms; the seam
        where tests answer as a lagging replica would)."""
        return await self._reading.direct_get(request, subject, reader)

    # -- appending (the appender's) ---------------------------------------------------------
    @property
    def max_payload(self) -> int:
        """The server's max message size (headers + payload), in bytes."""
        return self._appending.max_payload

    @traced_append
    async def append_many(self, writes: Sequence[Write]) -> list[int]:
        """Append to several subjects in one atomic batch; return each write's last sequence
        (see :meth:`Appender.append_many <eventkit.store.nats.appending.Appender.append_many>`)."""
        return await self._appending.append_many(writes)

    async def tails(self, subjects: Sequence[str]) -> dict[str, StoredMessage]:
        """The last message of each of ``subjects``, which an append without expectation
        follows; ``ForgottenError`` when one is an erasure marker."""
        return await self._appending.read_tails(subjects)

    async def mark_forgotten(self, subject: str) -> int:
        """Leave the erasure marker on ``subject`` (unless its last message is one already);
        return its sequence. From here on no append to ``subject`` is stored."""
        return await self._appending.mark_forgotten(subject)

    async def _request(
        self, subject: str, payload: bytes, headers: dict[str, str], timeout: float
    ) -> Delivered:
        """One request to the server (the seam where tests inject a lost ack)."""
        msg: Delivered = await self._inbox.call(subject, payload, headers, timeout)
        return msg

    # -- chaining (the chainer's) ------------------------------------------------------------
    async def chain_heads(self, writes: Sequence[Write]) -> list[str]:
        """The link each write's first event follows."""
        return await self._chaining.chain_heads(writes)

    async def marker_head(self, subject: str, last: StoredMessage | None) -> str:
        """The last link of ``subject`` before its erasure marker (its last message ``last``)."""
        return await self._chaining.marker_head(subject, last)

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
    "OWNER_KEY",
    "OWNER_VALUE",
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
