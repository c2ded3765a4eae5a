"""The event store interface both stores implement, with the same numbering and errors."""

from __future__ import annotations

import abc
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from eventkit.domain.events import Event
from eventkit.errors import ConfigError
from eventkit.store.codec import Codec
from eventkit.store.records import RecordedEvent, StoredMessage
from eventkit.store.subjects import validate_filter, validate_subject


@dataclass(slots=True)
class Write:
    """The events of one subject inside an atomic append.

    ``expected_sequence``: the subject's last stream sequence the writer saw (0: no events yet;
    None: no check). ``boundary``: a wildcard filter; the expectation is then checked against the
    last message of any subject matching it (a consistency boundary over several entities).
    """

    subject: str
    events: Sequence[Event]
    expected_sequence: int | None = None
    event_ids: Sequence[str] | None = None
    boundary: str | None = None
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
        for e in self.events:
            if not isinstance(e, Event):
                raise ConfigError(f"append takes Event instances, got {type(e).__name__}")
        if self.event_ids is None:
            self.ids = [str(uuid.uuid4()) for _ in self.events]
        else:
            self.ids = [str(i) for i in self.event_ids]
            if len(self.ids) != len(self.events):
                raise ConfigError(
                    f"{len(self.ids)} event_ids for {len(self.events)} events; give one id each"
                )
            if len(set(self.ids)) != len(self.ids):
                raise ConfigError("event_ids must be unique within an append")


class EventStore(abc.ABC):
    """Append-only, per-subject event storage with optimistic concurrency."""

    stream: str
    codec: Codec

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
    async def read(self, subject: str, after: int = 0) -> list[RecordedEvent[Any]]:
        """Every event of ``subject`` with a sequence above ``after``, in order."""

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
    async def last_sequence(self, subject: str | None = None) -> int:
        """The last sequence of ``subject`` (or filter), or of the stream; 0 when empty."""

    @abc.abstractmethod
    async def get(self, sequence: int) -> StoredMessage | None:
        """One stored message by stream sequence, None when absent or deleted."""

    @abc.abstractmethod
    async def delete(self, sequence: int) -> bool:
        """Erase one message (secure erase on JetStream); False when it was already gone."""

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
