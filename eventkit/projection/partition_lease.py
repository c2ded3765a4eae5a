"""Who applies which partition of a projector: live workers in a key-value bucket, partitions
assigned among them by rendezvous hashing, each partition held by a SQL lease.

::

    lease = PartitionLease(engine, "balances", owner, ttl=5.0, partitions=16, member="h-1-ab")
    lease.members = ["h-1-ab", "h-2-cd"]      # from the bucket (eventkit.runtime.membership)
    start = lease.try_acquire()               # claims this worker's share; None: none free yet
    with lease.fenced() as db: ...            # commits only while every partition held is ours
    lease.release()

Membership only says which partitions a worker should hold; the SQL lease of each partition
decides who may apply it: a worker claims a partition only when its lease is free or expired,
renews what it holds every ``ttl / 3`` and checks all of them inside every batch transaction,
so two workers that disagree about the members (a join seen by one first, a frozen worker)
never both commit a partition. A worker gives a partition back (at a batch boundary) once a
live member should own it; a dead or frozen worker's partitions are claimed by their new owner
when their lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from eventkit.projection import checkpoints, partition_rows
from eventkit.projection.lease import LeaseLost, Start
from eventkit.projection.registry import retired_by_switch
from eventkit.projection.sql import bound_waits, read_transaction, transaction
from eventkit.runtime.membership import (  # (here before they moved: kept importable)
    heard_of,
    keep_membership,
    membership_name,
    refresh_membership,
)
from eventkit.runtime.partitions import owned_by

log = logging.getLogger("eventkit.projection")


class PartitionLease:
    """The partitions of one projector this worker holds, with their checkpoints.

    The interface of :class:`~eventkit.projection.lease.RunnerLease` (``try_acquire``,
    ``keep``, ``fenced``, ``release``, ``lost``), over many rows: ``lost`` is set once any
    partition held was taken by another worker."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        owner: str,
        ttl: float,
        partitions: int,
        member: str,
        stream: str | None = None,
    ) -> None:
        self.engine = engine
        self.name = name
        self.owner = owner
        self.ttl = ttl
        self.partitions = partitions
        self.member = member
        self.stream = stream
        self.members: list[str] | None = None
        """The live members (None until the bucket was read once)."""
        self.held: dict[int, int] = {}
        """Partition -> its checkpoint, for every partition this worker holds."""
        self.lost = False
        self._made = False
        self._lock = threading.Lock()
        self._rebalanced = 0.0

    @contextlib.contextmanager
    def _bounded(self) -> Iterator[Session]:
        with transaction(self.engine) as db:
            bound_waits(db, self.ttl)
            yield db

    def wanted(self) -> set[int]:
        """The partitions this worker should hold with the members known now."""
        if self.members is None:
            return set()
        return owned_by(self.member, self.partitions, self.members)

    def rebalance(self) -> tuple[set[int], set[int]]:
        """Give back what another member should hold and claim what is ours and free; the
        partitions (gained, given back)."""
        wanted = self.wanted()
        gained: set[int] = set()
        with self._lock:
            gone = [p for p in self.held if p not in wanted]
            with self._bounded() as db:
                if not self._made:
                    partition_rows.ensure(db, self.name, self.partitions, self.stream)
                    self._made = True
                partition_rows.release(db, self.name, gone, self.owner)
                for p in sorted(wanted - set(self.held)):
                    checkpoint = partition_rows.claim(db, self.name, p, self.owner, self.ttl)
                    if checkpoint is not None:
                        self.held[p] = checkpoint
                        gained.add(p)
                partition_rows.record_watermark(db, self.name)
            for p in gone:
                del self.held[p]
        self._rebalanced = time.monotonic()
        if gained or gone:
            log.info(
                "%s: %s holds partitions %s (gained %s, gave back %s)",
                self.name,
                self.owner,
                sorted(self.held),
                sorted(gained),
                sorted(gone),
            )
        return gained, set(gone)

    def due(self) -> bool:
        """Whether a rebalance is worth trying now (the members moved, or it is time)."""
        if self.members is None:
            return False
        if set(self.held) != self.wanted():
            return time.monotonic() - self._rebalanced >= min(1.0, self.ttl / 4)
        return False

    def try_acquire(self) -> Start | None:
        """Claim this worker's share; where to start reading (the lowest checkpoint held), or
        None while no partition is ours and free; :class:`Retired` when a switch retired this
        version (its workers, fenced by the switch, come here)."""
        with read_transaction(self.engine) as db:  # a switch's fence ended in retirement
            retired_by_switch(db, self.name)
        self.rebalance()
        if not self.held:
            return None
        with self._bounded() as db:
            cp = checkpoints.get_checkpoint(db, self.name)
            if cp.state == "halted":
                log.warning("%s: was halted (%s); retrying", self.name, cp.last_error)
                checkpoints.set_state(db, self.name, "running", cp.last_error)
        self.lost = False
        return Start(min(self.held.values()), cp.last_error is not None)

    def low(self) -> int:
        """The lowest checkpoint of the partitions held (where reading must start)."""
        return min(self.held.values(), default=0)

    def holder(self) -> str:
        with read_transaction(self.engine) as db:
            owners = {r.owner for r in partition_rows.rows(db, self.name) if r.live}
        return ", ".join(sorted(owners)) or "other workers"

    def renew(self) -> bool:
        with self._lock:
            held = sorted(self.held)
            if not held:
                return True
            with self._bounded() as db:
                still = partition_rows.renew(db, self.name, held, self.owner, self.ttl)
        return len(still) == len(held)

    def release(self) -> None:
        with self._lock, self._bounded() as db:
            partition_rows.release(db, self.name, sorted(self.held), self.owner)
            partition_rows.record_watermark(db, self.name)
            self.held.clear()

    async def keep(self) -> None:
        """Renew every ``ttl / 3`` until cancelled or a partition is lost (:attr:`lost`)."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                held = await asyncio.to_thread(self.renew)
            except DBAPIError as e:
                log.warning("%s: cannot renew partition leases: %s", self.name, e)
                continue
            if not held:
                self.lost = True
                return

    @contextlib.contextmanager
    def fenced(self, **moved: Any) -> Iterator[Session]:
        """A transaction that commits only while every partition held is still ours (their
        leases renewed in it; ``last_sequence=`` moves their checkpoints too)."""
        with self._bounded() as db:
            if not partition_rows.fence(
                db, self.name, sorted(self.held), self.owner, self.ttl, **moved
            ):
                self.lost = True
                raise LeaseLost
            yield db


__all__ = [
    "PartitionLease",
    "heard_of",
    "keep_membership",
    "membership_name",
    "refresh_membership",
]
