"""``ReactorContext``: what a reactor's handler writes through, with derived event ids.

Every output (an appended event, a saved aggregate's event, a deadline) gets the id
``derived_id(reactor, cause, position)``: ``cause`` is the delivered event's id (its
``Nats-Msg-Id``), ``position`` counts the handler's outputs from 0. A redelivered event runs the
handler again with the same cause, so its outputs carry the same ids and the store keeps each one
once (``Nats-Msg-Id`` deduplication within the stream's duplicate window; the in-memory store
does the same). Outputs carry ``Eventkit-Causation-Id`` (the delivered event's id) and
``Eventkit-Correlation-Id`` (the first event of the chain), so a chain of reactions can be
followed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from eventkit.domain.aggregate import Aggregate
from eventkit.domain.events import Event
from eventkit.errors import ConfigError
from eventkit.store.base import EventStore, Write
from eventkit.store.records import RecordedEvent
from eventkit.store.repository import Repository
from eventkit.store.subjects import validate_subject
from eventkit.store.wire_constants import system_prefix

A = TypeVar("A", bound=Aggregate)

CAUSATION = "Eventkit-Causation-Id"
CORRELATION = "Eventkit-Correlation-Id"

_NAMESPACE = uuid.UUID("6f1c2a8e-3b7d-5e0f-9a4c-2d8b1e7f0c35")


def derived_id(reactor: str, cause: str, position: int) -> str:
    """The event id of output ``position`` of reactor ``reactor`` handling event ``cause``:
    a UUID 5 as 32 hex digits, the same on every delivery."""
    return uuid.uuid5(_NAMESPACE, f"{reactor}\x1f{cause}\x1f{position}").hex


def cause_of(record: RecordedEvent[Any]) -> str:
    """The delivered event's identity: its event id, or its stream sequence without one."""
    return record.event_id or f"seq-{record.sequence}"


@dataclass(frozen=True, slots=True)
class Deadline:
    """A deadline a handler asked for: ``event`` delivered back to ``reactor`` at ``due``.

    ``about``: the subject the deadline concerns (the delivered event's, unless the handler
    named another): its data key seals a personal deadline, forgetting it erases the deadline,
    and a deadline whose subject was forgotten is never delivered."""

    reactor: str
    event: Event
    due: datetime
    event_id: str
    headers: dict[str, str]
    about: str | None = None


class Scheduler(Protocol):
    async def schedule(self, deadline: Deadline) -> None: ...


class ReactorContext:
    """Passed to every reactor handler::

        await ctx.append(f"bank.alert.{rec.entity_id}", [AlertRaised(amount=e.amount)])
        accounts = ctx.repository(Account)
        acct = await accounts.load(rec.entity_id); acct.freeze(); await accounts.save(acct)
        await ctx.schedule(ReviewDue(account=rec.entity_id), after=timedelta(hours=1))

    ``store`` is the event store, for reads (writes made on it directly get no derived ids).
    """

    def __init__(
        self,
        reactor: str,
        record: RecordedEvent[Any],
        store: EventStore,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.reactor = reactor
        self.record = record
        self.store = store
        self._scheduler = scheduler
        self.cause = cause_of(record)
        self.correlation = record.headers.get(CORRELATION) or self.cause
        self._position = 0

    @property
    def headers(self) -> dict[str, str]:
        """The causation and correlation headers every output carries."""
        return {CAUSATION: self.cause, CORRELATION: self.correlation}

    def next_ids(self, n: int) -> list[str]:
        """The next ``n`` derived ids (the outputs' positions advance)."""
        start = self._position
        self._position += n
        return [derived_id(self.reactor, self.cause, i) for i in range(start, start + n)]

    async def append(
        self,
        subject: str,
        events: Sequence[Event],
        *,
        expected_sequence: int | None = None,
        boundary: str | None = None,
    ) -> int:
        """Append ``events`` with derived ids (see :meth:`EventStore.append`); returns the last
        stored sequence. On a redelivery the same events are recognised as stored."""
        if isinstance(events, Event) or not isinstance(events, Sequence):
            raise ConfigError("ctx.append takes a list of events; wrap a single event in a list")
        ids = self.next_ids(len(events))
        (last,) = await self.store.append_many(
            [Write(subject, events, expected_sequence, ids, boundary, self.headers)]
        )
        return last

    def repository(self, aggregate: type[A]) -> Repository[A]:
        """A repository whose saves get derived ids and this context's headers."""
        return _ContextRepository(self, aggregate)

    async def save(self, *aggregates: Aggregate) -> None:
        """Save aggregates (of one class) in one atomic append with derived ids."""
        if not aggregates:
            return
        cls = type(aggregates[0])
        if any(type(a) is not cls for a in aggregates):
            raise ConfigError("ctx.save saves aggregates of one class at a time")
        await self.repository(cls).save_all(list(aggregates))

    async def schedule(
        self,
        event: Event,
        *,
        at: datetime | None = None,
        after: timedelta | None = None,
        about: str | None = None,
    ) -> datetime:
        """Deliver ``event`` back to this reactor at ``at`` (tz-aware) or ``after`` from now,
        through the server's message schedules; returns the due time. A past time is due at once.

        The deadline is about ``about`` (default: the delivered event's subject), and it is
        delivered with that subject as ``rec.subject``. When that subject (or the event's class)
        holds personal data, the deadline is stored encrypted under the subject's data key;
        ``forget`` of the subject erases it, and once forgotten it is never delivered.
        """
        if not isinstance(event, Event):
            raise ConfigError(f"ctx.schedule takes an Event, got {type(event).__name__}")
        if (at is None) == (after is None):
            raise ConfigError("ctx.schedule needs exactly one of at= (a datetime) or after=")
        if at is not None:
            if not isinstance(at, datetime) or at.tzinfo is None:
                raise ConfigError("ctx.schedule(at=...) needs a timezone-aware datetime")
            due = at.astimezone(UTC)
        else:
            if not isinstance(after, timedelta) or after < timedelta(0):
                raise ConfigError(f"ctx.schedule(after=...) needs a timedelta >= 0, got {after!r}")
            due = datetime.now(UTC) + after
        if self._scheduler is None:
            raise ConfigError("this context has no scheduler (deadlines need a reactor runner)")
        if about is None:
            subject = self.record.subject
            about = None if subject.startswith(system_prefix(self.store.stream)) else subject
        else:
            validate_subject(about, self.store.stream)
        (event_id,) = self.next_ids(1)
        await self._scheduler.schedule(
            Deadline(self.reactor, event, due, event_id, self.headers, about)
        )
        return due


class _ContextRepository(Repository[A]):
    def __init__(self, ctx: ReactorContext, aggregate: type[A]) -> None:
        super().__init__(ctx.store, aggregate)
        self._ctx = ctx

    def _write(self, agg: A) -> Write:
        if not isinstance(agg, self.aggregate):
            raise ConfigError(f"this repository saves {self.aggregate.__name__}, got {agg!r}")
        ids = self._ctx.next_ids(len(agg.pending))
        agg.pending_ids[:] = ids
        return Write(
            self.subject(agg.id), list(agg.pending), agg.version, ids, None, self._ctx.headers
        )


__all__ = ["CAUSATION", "CORRELATION", "Deadline", "ReactorContext", "cause_of", "derived_id"]
