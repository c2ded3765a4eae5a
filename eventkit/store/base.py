"""The event store interface both stores implement, with the same numbering and errors."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from eventkit.domain.events import Event, new_event_id, validate_event_id
from eventkit.errors import ConfigError, EventTooLargeError, InvalidSubjectError
from eventkit.observability.tracing import trace_headers
from eventkit.store.chain import seal
from eventkit.store.codec import Codec
from eventkit.store.records import RecordedEvent, StoredMessage
from eventkit.store.subjects import validate_filter, validate_subject
from eventkit.store.wire_constants import (
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT,
    MAX_BATCH,
)

EncodedMessage = tuple[str, dict[str, str], bytes]
"""(subject, headers, payload) of one event, ready to publish."""

BATCH_HEADER_ALLOWANCE = 120
"""Bytes the batch headers (id, sequence, commit) and the expectation headers may add."""


@dataclass(slots=True)
class Write:
    """The events of one subject inside an atomic append.

    ``expected_sequence``: the subject's last stream sequence the writer saw (0: no events yet;
    None: no check). ``boundary``: a wildcard filter; the expectation is then checked against the
    last message of any subject matching it (a consistency boundary over several entities).
    ``headers``: extra headers on every event of the write (e.g. causation / correlation ids).
    """

    subject: str
    events: Sequence[Event]
    expected_sequence: int | None = None
    event_ids: Sequence[str] | None = None
    boundary: str | None = None
    headers: dict[str, str] | None = None
    ids: list[str] = field(init=False)

    def __post_init__(self) -> None:
        validate_subject(self.subject)
        if self.boundary is not None:
            validate_filter(self.boundary)
            if self.expected_sequence is None:
                raise ConfigError(
                    f"a consistency boundary ({self.boundary!r}) needs expected_sequence: the last "
                    f"sequence seen on any subject matching it"
                )
        if self.expected_sequence is not None and (
            isinstance(self.expected_sequence, bool)
            or not isinstance(self.expected_sequence, int)
            or self.expected_sequence < 0
        ):
            raise ConfigError(
                f"expected_sequence must be None or an int >= 0, got {self.expected_sequence!r}"
            )
        if isinstance(self.events, Event) or not isinstance(self.events, Sequence):
            raise ConfigError(
                f"append takes a list of events, got {type(self.events).__name__}; "
                f"wrap a single event in a list"
            )
        for e in self.events:
            if not isinstance(e, Event):
                raise ConfigError(f"append takes Event instances, got {type(e).__name__}")
        if self.event_ids is None:
            self.ids = [new_event_id() for _ in self.events]
        else:
            self.ids = [validate_event_id(i) for i in self.event_ids]
            if len(self.ids) != len(self.events):
                raise ConfigError(
                    f"{len(self.ids)} event_ids for {len(self.events)} events; give one id each"
                )
            if len(set(self.ids)) != len(self.ids):
                raise ConfigError("event_ids must be unique within an append")


def message_size(subject: str, headers: dict[str, str], payload: bytes) -> int:
    """The size the server counts against its max payload: header block plus payload."""
    size = 12 + len(payload)  # "NATS/1.0\r\n" ... "\r\n"
    for k, v in headers.items():
        size += len(k) + len(v.encode()) + 4
    return size


class Encoding(Protocol):
    """What :func:`encode_writes` needs of a store."""

    stream: str
    codec: Codec


async def encode_writes(
    store: Encoding,
    writes: Sequence[Write],
    max_payload: int,
    heads: Callable[[Sequence[Write]], Awaitable[list[str]]] | None = None,
) -> list[EncodedMessage]:
    """Validate an append and encode every event before anything is sent.

    The expectation headers go on the first event of each write; an event over ``max_payload``
    raises ``EventTooLargeError`` (so nothing of the append is sent). ``heads(writes)`` gives the
    head of each write's chain: its events are then chained (:mod:`eventkit.store.chain`).
    """
    if not writes:
        raise ConfigError("append needs at least one write")
    total = 0
    subjects: set[str] = set()
    stream_prefix = store.stream + "."
    for w in writes:
        if not isinstance(w, Write):
            raise ConfigError(f"append_many takes Write objects, got {type(w).__name__}")
        if not w.subject.startswith(stream_prefix):
            raise InvalidSubjectError(
                f"subject {w.subject!r} is outside the stream {store.stream!r}; subjects start "
                f"with {stream_prefix!r}"
            )
        if w.subject in subjects:
            raise ConfigError(
                f"{w.subject!r} appears twice in one append; put its events in one Write"
            )
        if w.boundary is not None:
            validate_filter(w.boundary, store.stream)
        subjects.add(w.subject)
        total += len(w.events)
    if total == 0:
        raise ConfigError("append needs at least one event")
    if total > MAX_BATCH:
        raise ConfigError(
            f"an atomic append holds at most {MAX_BATCH} events, got {total}; split it"
        )
    codec = store.codec
    if codec.cipher is not None:
        keyed = [w.subject for w in writes if codec.needs_keys(w.subject, w.events)]
        if keyed:
            await codec.cipher.prepare(keyed, create=True)
    limit = max_payload - (BATCH_HEADER_ALLOWANCE if total > 1 else 0)
    out: list[EncodedMessage] = []
    encode = codec.encode
    traced = trace_headers()  # the append's span (None when tracing is off)
    prevs = await heads(writes) if heads is not None else None
    for n, w in enumerate(writes):
        subject = w.subject
        prev = prevs[n] if prevs is not None else None
        for i, (event, eid) in enumerate(zip(w.events, w.ids, strict=True)):
            headers, payload = encode(subject, event, eid)
            if prev is not None:
                prev = seal(prev, subject, headers, payload)
            if w.headers:
                headers.update(w.headers)
            if traced:
                headers.update(traced)
            if i == 0 and w.expected_sequence is not None:
                headers[EXPECTED_LAST_SUBJECT_SEQUENCE] = str(w.expected_sequence)
                if w.boundary is not None:
                    headers[EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT] = w.boundary
            if len(payload) + 4096 > limit or len(eid) + len(event.event_type) > 900:
                size = message_size(subject, headers, payload)
                if size > limit:
                    raise EventTooLargeError(subject, size, limit)
            out.append((subject, headers, payload))
    return out


def trusted_write(
    subject: str, events: list[Event], expected_sequence: int, ids: list[str]
) -> Write:
    """A ``Write`` from already-checked parts (the repository's aggregates), skipping
    ``__post_init__``: the subject was built by ``entity_subject`` and the events recorded."""
    w = object.__new__(Write)
    w.subject = subject
    w.events = events
    w.expected_sequence = expected_sequence
    w.event_ids = ids
    w.boundary = None
    w.headers = None
    w.ids = ids
    return w


Consistency = Literal["eventual", "strong"]
"""``eventual``: any replica may answer (a process still sees its own writes); ``strong``: the
stream leader says what the last message is, so a read sees every append acknowledged before it
started, whoever made it."""


def check_consistency(consistency: object, at_least: object = None) -> None:
    """``ConfigError`` unless ``consistency`` is ``eventual``/``strong`` and ``at_least`` None or
    a stream sequence (an int >= 0, e.g. what ``Repository.save`` returned)."""
    if consistency not in ("eventual", "strong"):
        raise ConfigError(f"consistency must be 'eventual' or 'strong', got {consistency!r}")
    if at_least is not None and (
        isinstance(at_least, bool) or not isinstance(at_least, int) or at_least < 0
    ):
        raise ConfigError(
            f"at_least must be a stream sequence (an int >= 0, as save() returns), got {at_least!r}"
        )


def check_read_position(from_sequence: object, from_time: object) -> None:
    """``ConfigError`` unless ``from_sequence`` is an int >= 1 and ``from_time`` None or aware."""
    if isinstance(from_sequence, bool) or not isinstance(from_sequence, int) or from_sequence < 1:
        raise ConfigError(f"from_sequence must be an int >= 1, got {from_sequence!r}")
    if from_time is not None and (not isinstance(from_time, datetime) or from_time.tzinfo is None):
        raise ConfigError("from_time must be a timezone-aware datetime (datetime.now(UTC))")


class EventStore(abc.ABC):
    """Append-only, per-subject event storage with optimistic concurrency."""

    stream: str
    codec: Codec
    verify_chains: bool = True
    """Check the hash chain of every subject read (``read``, ``Repository.load``)."""

    async def append(
        self,
        subject: str,
        events: Sequence[Event],
        *,
        expected_sequence: int | None = None,
        event_ids: Sequence[str] | None = None,
        boundary: str | None = None,
    ) -> int:
        """Append ``events`` to ``subject`` atomically; return the last stored sequence.

        Raises ``ConcurrencyError`` (nothing stored) when ``expected_sequence`` is stale::

            seq = await store.append("bank.account.a-1", [MoneyDeposited(amount=5)],
                                     expected_sequence=0)
        """
        (last,) = await self.append_many(
            [Write(subject, events, expected_sequence, event_ids, boundary)]
        )
        return last

    @abc.abstractmethod
    async def append_many(self, writes: Sequence[Write]) -> list[int]:
        """Append to several subjects in one atomic batch; return each write's last sequence."""

    @abc.abstractmethod
    async def read(
        self,
        subject: str,
        after: int = 0,
        *,
        consistency: Consistency = "eventual",
        at_least: int | None = None,
    ) -> list[RecordedEvent[Any]]:
        """Every event of ``subject`` with a sequence above ``after``, in order.

        ``consistency="strong"``: including every append acknowledged before the call (the
        stream leader answers for the tail). ``at_least=N``: at least as fresh as stream
        sequence ``N`` (a position ``save`` returned), strong only when a replica lags it."""

    @abc.abstractmethod
    def read_all(
        self,
        from_sequence: int = 1,
        from_time: datetime | None = None,
        subjects: Sequence[str] | None = None,
    ) -> AsyncIterator[RecordedEvent[Any]]:
        """Stream the whole stream (or filtered subjects) in order, up to its end at call time."""

    @abc.abstractmethod
    def read_raw(
        self, subject: str | None = None, from_sequence: int = 1
    ) -> AsyncIterator[StoredMessage]:
        """Stored messages without decoding (for erasure and diagnostics)."""

    @abc.abstractmethod
    async def last_sequence(
        self, subject: str | None = None, *, consistency: Consistency = "eventual"
    ) -> int:
        """The last sequence of ``subject`` (or filter), or of the stream; 0 when empty.
        ``consistency="strong"``: as the stream leader knows it."""

    @abc.abstractmethod
    async def mark_forgotten(self, subject: str) -> int:
        """Leave the erasure marker on ``subject`` (once); return its sequence. Afterwards every
        append to it raises ``ForgottenError`` and reading it gives no events."""

    @abc.abstractmethod
    async def get(self, sequence: int) -> StoredMessage | None:
        """One stored message by stream sequence, None when absent or deleted."""

    async def record_erasure(self, erased: StoredMessage) -> None:
        """Keep the links (never the data) of the chained message ``erased`` on
        ``<stream>._eventkit.erased.<rest of its subject>``, so the rest of its subject still
        verifies once it is erased; :meth:`delete` does it first (unless the subject is
        forgotten); an unchained message needs nothing."""
        raise NotImplementedError(f"{type(self).__name__} keeps no erasure records")

    @abc.abstractmethod
    async def delete(self, sequence: int, *, keep_links: bool = True) -> bool:
        """Erase one message (secure erase on JetStream); False when it was already gone. A
        chained message's links are kept first (:meth:`record_erasure`), so its subject's chain
        still verifies; ``keep_links=False`` when its subject's erasure marker is already there
        (``forget`` of the whole subject: the marker closed the chain)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
