"""Load and save aggregates through an event store, with snapshots and conflict retries."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from eventkit.domain.aggregate import Aggregate
from eventkit.errors import AggregateNotFound, ConcurrencyError, ConfigError
from eventkit.store.base import EventStore, Write
from eventkit.store.snapshots import Snapshot, SnapshotStore
from eventkit.store.subjects import entity_subject

A = TypeVar("A", bound=Aggregate)


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

    def subject(self, id: str) -> str:
        return entity_subject(self.store.stream, self.aggregate.aggregate_type, id)

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

    async def load(self, id: str) -> A:
        """The aggregate with every stored event applied; ``AggregateNotFound`` if it has none."""
        subject = self.subject(id)
        agg = self.aggregate(id)
        after = 0
        snaps = self.snapshots
        if snaps is not None:
            snap = await snaps.get(subject)
            if snap is not None and self._usable(snap):
                agg.restore_state(snap.state)
                agg.version = after = snap.version
        records = await self.store.read(subject, after=after)
        if not records and after == 0:
            raise AggregateNotFound(subject)
        for r in records:
            agg.apply(r.event)
        if records:
            agg.version = records[-1].sequence
        agg._since_snapshot = len(records)
        if snaps is not None and len(records) >= (self.aggregate.snapshot_every or 0):
            await self._snapshot(agg)
        return agg

    def _usable(self, snap: Snapshot) -> bool:
        return (
            snap.aggregate == self.aggregate.aggregate_type
            and snap.snapshot_version == self.aggregate.snapshot_version
            and snap.shape == self._snapshot_shape()
        )

    async def _snapshot(self, agg: A) -> None:
        snaps = self.snapshots
        if snaps is None:
            return
        state = agg.snapshot_state()
        agg._since_snapshot = 0
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

    def _write(self, agg: A) -> Write:
        if not isinstance(agg, self.aggregate):
            raise ConfigError(f"this repository saves {self.aggregate.__name__}, got {agg!r}")
        return Write(
            self.subject(agg.id),
            list(agg.pending),
            expected_sequence=agg.version,
            event_ids=list(agg.pending_ids),
        )

    async def save(self, agg: A) -> None:
        """Store the pending events atomically, expecting ``agg.version``; ``ConcurrencyError``
        (nothing stored) if someone else saved first."""
        if not agg.pending:
            return
        count = len(agg.pending)
        (last,) = await self.store.append_many([self._write(agg)])
        agg.mark_saved(last)
        agg._since_snapshot += count
        every = self.aggregate.snapshot_every
        if every is not None and agg._since_snapshot >= every:
            await self._snapshot(agg)

    async def save_all(self, aggregates: Sequence[A]) -> None:
        """Save several aggregates in one atomic append, each with its own expectation."""
        pending = [a for a in aggregates if a.pending]
        if not pending:
            return
        lasts = await self.store.append_many([self._write(a) for a in pending])
        for a, last in zip(pending, lasts, strict=True):
            a.mark_saved(last)

    async def update(
        self,
        id: str,
        fn: Callable[[A], None | Awaitable[None]],
        *,
        retries: int = 20,
        create: bool = False,
    ) -> A:
        """Load, apply ``fn`` (a command), save; on ``ConcurrencyError`` reload and try again.

        ``create=True`` starts from a fresh aggregate when it has no events yet.
        """
        attempt = 0
        while True:
            try:
                agg = await self.load(id)
            except AggregateNotFound:
                if not create:
                    raise
                agg = self.aggregate(id)
            result = fn(agg)
            if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
                await result
            try:
                await self.save(agg)
                return agg
            except ConcurrencyError:
                attempt += 1
                if attempt > retries:
                    raise
                await asyncio.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.1)))

