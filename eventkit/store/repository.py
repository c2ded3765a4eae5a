"""Load and save aggregates through an event store, with snapshots and conflict retries."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from eventkit.domain.aggregate import Aggregate
from eventkit.errors import AggregateNotFound, ConcurrencyError, ConfigError, EventDecodeError
from eventkit.store.base import Consistency, EventStore, Write, trusted_write
from eventkit.store.erasure import is_marker
from eventkit.store.records import RecordedEvent
from eventkit.store.snapshots import Snapshot, SnapshotStore
from eventkit.store.subjects import entity_subject
from eventkit.store.wire_constants import ENCRYPTION, EVENT_TYPE

A = TypeVar("A", bound=Aggregate)

log = logging.getLogger(__name__)


class Repository(Generic[A]):
    """Loads and saves one aggregate class::

    accounts = Repository(store, Account)
    acct = Account("a-1"); acct.open("ada")
    await accounts.save(acct)                    # expects acct.version (0 = new)
    acct = await accounts.load("a-1")
    await accounts.update("a-1", lambda a: a.deposit(5))   # reload + retry on conflict
    """

    def __init__(
        self,
        store: EventStore,
        aggregate: type[A],
        *,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        if not (isinstance(aggregate, type) and issubclass(aggregate, Aggregate)):
            raise ConfigError(f"Repository needs an Aggregate subclass, got {aggregate!r}")
        self.store = store
        self.aggregate = aggregate
        self._snapshots = snapshots
        self._shape: list[str] | None = None
        self._subjects: dict[str, str] = {}

    def subject(self, id: str) -> str:
        """The subject of aggregate ``id``: ``<stream>.<aggregate type>.<id>`` (validated)."""
        subject = self._subjects.get(id)
        if subject is None:
            subject = entity_subject(self.store.stream, self.aggregate.aggregate_type, id)
            if len(self._subjects) > 10_000:
                self._subjects.clear()
            self._subjects[id] = subject
        return subject

    @property
    def snapshots(self) -> SnapshotStore | None:
        if self.aggregate.snapshot_every is None:
            return None
        if self._snapshots is None:
            self._snapshots = getattr(self.store, "snapshots", None)
        return self._snapshots

    def _snapshot_shape(self) -> list[str]:
        if self._shape is None:
            self._shape = self.aggregate.snapshot_shape()
        return self._shape

    async def load(
        self,
        id: str,
        *,
        as_of_sequence: int | None = None,
        as_of_time: datetime | None = None,
        consistency: Consistency = "eventual",
        at_least: int | None = None,
    ) -> A:
        """The aggregate with every stored event applied; ``AggregateNotFound`` if it has none.

        ``consistency="strong"``: with every event acknowledged before the call, whoever saved
        it (the stream leader answers; on one server every read is). ``at_least=N``: at least as
        fresh as the position ``N`` a ``save`` returned (read from the leader only when the
        replica that answered lags it)::

            position = await accounts.save(acct)               # in one process ...
            acct = await accounts.load("a-1", at_least=position)   # ... and in another

        ``as_of_sequence=N`` / ``as_of_time=T`` give the aggregate as it was: only its events up
        to stream sequence ``N`` / stored at or before ``T`` (aware) are applied, no snapshot is
        used or written, and ``AggregateNotFound`` if it had no event by then::

            before = await accounts.load("a-1", as_of_time=datetime(2026, 3, 1, tzinfo=UTC))
        """
        if as_of_sequence is not None or as_of_time is not None:
            return await self._load_as_of(id, as_of_sequence, as_of_time)
        subject = self.subject(id)
        agg = self.aggregate(id)
        after = 0
        snaps = self.snapshots
        if snaps is not None:
            snap = await snaps.get(subject)
            if snap is not None and self._usable(snap):
                agg.restore_state(snap.state)
                agg.version = after = snap.version
        records, last = await self._read(subject, after, consistency, at_least)
        if not records and after == 0:
            raise AggregateNotFound(subject)
        for r in records:
            agg.apply(r.event)
        agg.version = last
        agg._since_snapshot = len(records)
        if snaps is not None and len(records) >= (self.aggregate.snapshot_every or 0):
            await self._snapshot(agg)
        return agg

    async def _load_as_of(self, id: str, sequence: int | None, when: datetime | None) -> A:
        if sequence is not None and (
            isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0
        ):
            raise ConfigError(f"as_of_sequence must be a whole number >= 0, got {sequence!r}")
        if when is not None and (not isinstance(when, datetime) or when.tzinfo is None):
            raise ConfigError(f"as_of_time must be an aware datetime (with a zone), got {when!r}")
        subject = self.subject(id)
        records = [
            r
            for r in (await self._read(subject, 0))[0]
            if (sequence is None or r.sequence <= sequence) and (when is None or r.time <= when)
        ]
        if not records:
            raise AggregateNotFound(subject)
        agg = self.aggregate(id)
        for r in records:
            agg.apply(r.event)
        agg.version = records[-1].sequence
        return agg

    async def _read(
        self,
        subject: str,
        after: int,
        consistency: Consistency = "eventual",
        at_least: int | None = None,
    ) -> tuple[list[RecordedEvent[Any]], int]:
        """The subject's events after ``after``, and the sequence of its last message read (the
        version a save expects). With ``pass_over_foreign`` on the aggregate, messages another
        service wrote on the subject are passed over (logged), not a failed load."""
        try:
            if consistency == "eventual" and at_least is None:
                records = await self.store.read(subject, after=after)
            else:
                records = await self.store.read(
                    subject, after=after, consistency=consistency, at_least=at_least
                )
        except EventDecodeError as e:
            if not self.aggregate.pass_over_foreign:
                raise
            return await self._read_past_foreign(subject, after, e)
        return records, (records[-1].sequence if records else after)

    async def _read_past_foreign(
        self, subject: str, after: int, error: EventDecodeError
    ) -> tuple[list[RecordedEvent[Any]], int]:
        raw = [m async for m in self.store.read_raw(subject, from_sequence=after + 1)]
        own = [m for m in raw if EVENT_TYPE in m.headers]
        foreign = [
            m.sequence for m in raw if EVENT_TYPE not in m.headers and not is_marker(m.headers)
        ]
        if not foreign:
            raise error  # not another service's message: an event that cannot be read
        log.warning(
            "%s: passing over %d message(s) without Eventkit-Type at sequence(s) %s (%s sets "
            "pass_over_foreign); have the service that wrote them use its own subjects",
            subject,
            len(foreign),
            ", ".join(map(str, foreign[:10])),
            self.aggregate.__qualname__,
        )
        cipher = self.store.codec.cipher
        if cipher is not None and any(ENCRYPTION in m.headers for m in own):
            await cipher.prepare([subject], create=False)
        decode = self.store.codec.decode
        return [decode(m) for m in own], (raw[-1].sequence if raw else after)

    def _usable(self, snap: Snapshot) -> bool:
        return (
            snap.aggregate == self.aggregate.aggregate_type
            and snap.snapshot_version == self.aggregate.snapshot_version
            and snap.shape == self._snapshot_shape()
        )

    async def _snapshot(self, agg: A) -> None:
        """Store a snapshot; a failure is logged, never raised (the events are stored)."""
        snaps = self.snapshots
        if snaps is None:
            return
        try:
            state = agg.snapshot_state()
            await snaps.put(
                Snapshot(
                    subject=self.subject(agg.id),
                    version=agg.version,
                    aggregate=self.aggregate.aggregate_type,
                    snapshot_version=self.aggregate.snapshot_version,
                    shape=sorted(state),
                    state=state,
                )
            )
            agg._since_snapshot = 0
        except Exception as e:
            log.warning(
                "snapshot of %s %r at version %d failed (%s); loads replay the events instead. "
                "Make snapshot_state() return JSON data (override it with restore_state()).",
                self.aggregate.__name__,
                agg.id,
                agg.version,
                e,
            )

    def _write(self, agg: A) -> Write:
        if not isinstance(agg, self.aggregate):
            raise ConfigError(f"this repository saves {self.aggregate.__name__}, got {agg!r}")
        if len(agg.pending_ids) != len(agg.pending):
            raise ConfigError(f"{agg!r}: pending and pending_ids differ in length")
        return trusted_write(
            self.subject(agg.id), list(agg.pending), agg.version, list(agg.pending_ids)
        )

    async def save(self, agg: A) -> int:
        """Store the pending events atomically, expecting ``agg.version``; ``ConcurrencyError``
        (nothing stored) if someone else saved first. Returns the stream sequence of the last
        stored event (``agg.version`` afterwards): a position to read at least up to
        (``load(..., at_least=...)``, :func:`eventkit.projection.wait_for_projectors`)."""
        if not agg.pending:
            return agg.version
        (last,) = await self.store.append_many([self._write(agg)])
        await self._saved(agg, last)
        return last

    async def save_all(self, aggregates: Sequence[A]) -> int:
        """Save several aggregates in one atomic append, each with its own expectation; returns
        the append's last stream sequence (0 when nothing was pending)."""
        pending = [a for a in aggregates if a.pending]
        if not pending:
            return 0
        lasts = await self.store.append_many([self._write(a) for a in pending])
        for a, last in zip(pending, lasts, strict=True):
            await self._saved(a, last)
        return max(lasts)

    async def _saved(self, agg: A, last: int) -> None:
        """The pending events are stored up to ``last``: clear them, snapshot when one is due."""
        agg._since_snapshot += len(agg.pending)
        agg.mark_saved(last)
        every = self.aggregate.snapshot_every
        if every is not None and agg._since_snapshot >= every:
            await self._snapshot(agg)

    async def update(
        self,
        id: str,
        fn: Callable[[A], Awaitable[None] | None],
        *,
        retries: int = 20,
        create: bool = False,
    ) -> A:
        """Load, apply ``fn`` (a command), save; on ``ConcurrencyError`` reload and try again,
        up to ``retries`` times (with a short random back-off). Returns the saved aggregate::

            acct = await accounts.update("a-1", lambda a: a.deposit(5))

        ``create=True`` starts from a fresh aggregate when it has no events yet. ``fn`` may be a
        coroutine function; it must only decide and record (it may run several times).
        """
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries must be an int >= 0, got {retries!r}")
        attempt = 0
        while True:
            try:
                agg = await self.load(id)
            except AggregateNotFound:
                if not create:
                    raise
                agg = self.aggregate(id)
            result = fn(agg)
            if inspect.isawaitable(result):
                await result
            try:
                await self.save(agg)
                return agg
            except ConcurrencyError:
                attempt += 1
                if attempt > retries:
                    raise
                await asyncio.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.1)))
