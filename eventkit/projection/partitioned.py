"""The runner of a partitioned projector (``partitions = N``): any number of processes share
its partitions, each partition applied in stream order by one worker at a time.

::

    runner = PartitionedRunner(Balances(), store, engine)   # one per process, any number
    await runner.run()

Each worker reads the projector's events once, through a consumer of its own
(``eventkit_<projector>_<worker>``, from the lowest checkpoint of the partitions it holds), and
applies only the events of its partitions: a stable hash of the event's key
(:mod:`eventkit.runtime.partitions`). One SQL transaction per batch checks the leases of all
the partitions it holds and moves their checkpoints, so a worker that lost a partition (frozen
past its lease, say) commits nothing. Measured before choosing (``bench/partition_reads.py``):
N consumers filtered on a partition token (which needs the partition in the stored subject)
cost the server 13x the CPU of reading the stream once, one whole-stream consumer per worker
under 2x for two workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from eventkit.errors import ForgottenError, StoreUnavailableError
from eventkit.projection import checkpoints, partition_rows
from eventkit.projection.applying import BadEvent, Item
from eventkit.projection.committing import BatchTransaction, Restart
from eventkit.projection.failures import BadEvents
from eventkit.projection.lease import LeaseLost
from eventkit.projection.partition_lease import PartitionLease
from eventkit.projection.registry import Retired
from eventkit.projection.rewound import halted_on_rewind
from eventkit.projection.rowcache import ROW_CACHE, RowCache
from eventkit.projection.rows import RowProjector
from eventkit.projection.runner import ProjectionRunner, RunResult
from eventkit.projection.sql import ended_as_idle, is_outage, read_transaction
from eventkit.projection.targets import fence, label
from eventkit.runtime.membership import keep_membership, membership_name, refresh_membership
from eventkit.runtime.partitions import default_key, partition_of
from eventkit.runtime.presence import Presence
from eventkit.runtime.pulling import Puller, consumer_name
from eventkit.store.erasure import is_marker
from eventkit.store.records import time_from_ns
from eventkit.store.wire_constants import EVENT_TYPE

log = logging.getLogger("eventkit.projection")

WORKER_CONSUMER_IDLE = 600.0
"""Seconds after which the server deletes the consumer of a worker that stopped pulling (one
that died); a worker that stops cleanly deletes its own."""
_KEY_CACHE = 100_000


class _WorkerPuller(Puller):
    def _config(self) -> Any:
        cfg = super()._config()
        cfg.inactive_threshold = WORKER_CONSUMER_IDLE
        return cfg


class PartitionedRunner(ProjectionRunner, partitioned=True):
    """Runs this process's share of a partitioned projector (see the module's docstring);
    the options of :class:`~eventkit.projection.runner.ProjectionRunner`."""

    def __init__(self, projector: Any, store: Any, engine: Engine, **options: Any) -> None:
        super().__init__(projector, store, engine, **options)
        self._presence = Presence(store, membership_name(self.projector.name))
        self.member = self._presence.worker
        self._lease: PartitionLease = PartitionLease(  # type: ignore[assignment]
            engine,
            self.projector.name,
            self.owner,
            self.lease_ttl,
            self.projector.partitions,
            self.member,
            store.stream,
        )
        self._feed.puller = _WorkerPuller(
            store,
            self.projector.name,
            self.filters,
            batch=self.batch_size,
            ack=self.ack,
            cover=True,
            name=f"{consumer_name(self.projector.name)}_{self.member}",
        )
        self._transaction = PartitionTransaction(
            self.projector, store, self._lease, self._applier, self._rows, self.progress, self.obs
        )
        self._bad_events = BadEvents(self._transaction)
        self._end: int | None = None

    @property
    def held(self) -> list[int]:
        """The partitions this worker holds now."""
        return sorted(self._lease.held)

    # -- the run ----------------------------------------------------------------------------
    async def _run(self, *, once: bool) -> RunResult:
        self._end = await self.store.last_sequence() if once else None
        await refresh_membership(self.store, self._lease, self._presence)  # before claiming
        member = asyncio.create_task(keep_membership(self.store, self._lease, self._presence))
        self.obs.state("starting")
        try:
            while not self.stopping:
                if await halted_on_rewind(self, partitioned=True):
                    break
                if not await self._acquire(None):
                    break
                try:
                    finished = await self._held_run()
                except Retired as e:
                    self.progress.retire(e)
                    break
                if self.state == "halted":
                    break
                if finished and self._end is not None:
                    if await asyncio.to_thread(self._all_done, self._end):
                        break
                    await self._pauses.sleep(min(1.0, self.lease_ttl / 4))
                elif finished:
                    break
        finally:
            member.cancel()
            with contextlib.suppress(BaseException):
                await member
            with contextlib.suppress(Exception):
                await self._presence.leave()
            with contextlib.suppress(Exception):
                await self.store.js.delete_consumer(self.store.stream, self._puller.name)
            if self.state != "halted":
                self.state = "stopped"
            self.obs.state(self.state, checkpoint=self.checkpoint)
        return self._result()

    async def _held_run(self) -> bool:
        """Apply the partitions held until stopped, done or a partition was lost."""
        keeper = asyncio.create_task(self._lease.keep())
        self.obs.lease_taken(self.owner, self.checkpoint)
        try:
            finished = await self._consume(self._end)
            if finished and self._end is not None and not self.stopping and self.state != "halted":
                await asyncio.to_thread(self._finish_at, self._end)
            return finished
        except LeaseLost:
            self.obs.lease_lost(self.owner)
            return False
        except (DBAPIError, StoreUnavailableError) as e:
            if isinstance(e, DBAPIError) and ended_as_idle(e):
                return await self._bad_events.ended_as_idle()
            if isinstance(e, DBAPIError) and not is_outage(e):
                raise
            await self._wait_out(e)
            return False
        finally:
            keeper.cancel()
            with contextlib.suppress(BaseException):
                await keeper
            await self._puller.stop()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._lease.release)

    async def _acquire(self, wait: float | None) -> bool:
        """Wait for a share of the partitions (or, with ``--once``, for all to be done)."""
        while not self.stopping:
            try:
                if await asyncio.to_thread(self._try_acquire):
                    self._pauses.got_through()
                    return True
                if self._end is not None and await asyncio.to_thread(self._all_done, self._end):
                    return False
            except Retired as e:
                self.progress.retire(e)
                return False
            except DBAPIError as e:
                if not is_outage(e):
                    raise
                await self._wait_out(e)
                continue
            self.state = "standby"
            self.obs.state("standby")
            await self._pauses.sleep(min(1.0, self.lease_ttl / 4))
        return False

    def _finish_at(self, end: int) -> None:
        """The consumer delivered everything of the partitions held up to ``end`` (and beyond):
        their checkpoints go to ``end`` even where their last event is before it (the stream
        may end on another projector's subjects), so ``--once`` sees them done."""
        with self._lease.fenced(last_sequence=end):
            pass
        for part, at in self._lease.held.items():
            self._lease.held[part] = max(at, end)
        self.checkpoint = max(self.checkpoint, end)

    def _all_done(self, end: int) -> bool:
        with read_transaction(self.engine) as db:
            rows = partition_rows.rows(db, self.name)
        return bool(rows) and all(r.last_sequence >= end for r in rows)

    async def _rebalance(self) -> None:
        """Between batches: give back and claim partitions; reposition the consumer when a
        partition gained is behind what was read."""
        gained, _ = await asyncio.to_thread(self._lease.rebalance)
        if gained and self._rows is not None:
            self._rows.invalidate()  # their rows were another worker's
        if not self._lease.held:
            raise LeaseLost  # nothing left to apply: stand by
        low = self._lease.low()
        if gained and low < self.checkpoint:
            self.checkpoint = low
            raise Restart

    # -- consuming (the base runner's loop, with a rebalance between batches) ---------------
    async def _batches(self, end: int | None) -> bool:
        self.checkpoint = self._lease.low()
        return await super()._batches(end)

    async def _between_batches(self) -> None:
        if self._lease.due():
            await self._rebalance()


class PartitionTransaction(BatchTransaction):
    """A worker's batch transaction: it applies the events of the partitions it holds, checks
    all their leases and moves all their checkpoints; a bad event parks in its partition."""

    lease: PartitionLease

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._keyed = self.projector.keys_partitions()
        self._keys: dict[str, int] = {}

    def partition(self, item: Item) -> int:
        """The partition of ``item``: by the projector's key, else by its subject."""
        msg = item.msg
        n = self.projector.partitions
        if self._keyed:
            event_type = (msg.headers or {}).get(EVENT_TYPE)
            if event_type is not None and self.projector.handles(event_type):
                try:
                    rec = self.store.codec.decode_parts(
                        msg.subject,
                        item.sequence,
                        time_from_ns(item.timestamp_ns),
                        msg.headers,
                        msg.data,
                    )
                except (ForgottenError, ValueError, KeyError, TypeError):
                    pass  # applied (or found bad) in the partition of its subject
                else:
                    return partition_of(str(self.projector.partition_key(rec)), n)
        found = self._keys.get(msg.subject)
        if found is None:
            if len(self._keys) >= _KEY_CACHE:
                self._keys.clear()
            found = self._keys[msg.subject] = partition_of(default_key(msg.subject), n)
        return found

    def _apply_in(self, items: Sequence[Item], rows: RowCache | None) -> None:
        held = self.lease.held
        mine: list[Item] = []
        where: list[int] = []
        for i, item in enumerate(items):
            if self._keyed and is_marker(item.msg.headers):
                # a forgotten subject's events are in their keys' partitions: every partition
                # forgets it at the marker, in its own stream order (as one runner would)
                at = min((a for a in held.values() if a < item.sequence), default=None)
            else:
                at = held.get(self.partition(item))
            if at is not None and item.sequence > at:
                mine.append(item)
                where.append(i)
        last = items[-1]
        moved = {"last_sequence": last.sequence, "last_event_time": time_from_ns(last.timestamp_ns)}
        with self.lease.fenced(**moved) as db:
            cp = checkpoints.get_checkpoint(db, self.name)
            checkpoints.check_stream(cp, self.store.stream, label(self.projector))
            if isinstance(self.projector, RowProjector):
                fence(db, self.projector)  # a retired or dropped version commits nothing
            if rows is not None:
                if cp.revision != self.revision:  # rows written outside the runners
                    rows.invalidate()
                    self.revision = cp.revision
                db.info[ROW_CACHE] = rows
            try:
                applied = self.applier.apply(mine, db, after=0)
            except BadEvent as bad:
                raise BadEvent(where[bad.index], bad.error) from bad.error
        for part, at in held.items():
            held[part] = max(at, last.sequence)
        progress = self.progress
        progress.checkpoint = max(progress.checkpoint, last.sequence)
        progress.processed += applied  # what the handlers were given
        progress.passed_over += len(mine) - applied

    def move_past(self, db: Session, item: Item) -> None:
        """A parked event moves the checkpoint of its own partition only."""
        partition_rows.advance(db, self.name, self.partition(item), item.sequence)

    def moved_past(self, item: Item) -> None:
        part = self.partition(item)
        if part in self.lease.held:
            self.lease.held[part] = max(self.lease.held[part], item.sequence)


__all__ = ["PartitionedRunner"]
