"""The SQL lease that lets one runner per projector apply at a time (``eventkit_leases``).

::

    lease = RunnerLease(engine, "balances", owner, ttl=5.0)
    start = lease.try_acquire()          # None while another runner holds it
    with lease.fenced() as db:           # commits only while the lease is still ours
        ...
    lease.release()

A runner renews its lease every ``ttl / 3`` (:meth:`keep`) and verifies it inside every batch
transaction (:meth:`fenced`), so a runner frozen past its lease commits nothing once a standby
has taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from eventkit.projection import checkpoints
from eventkit.projection.registry import retired_by_switch
from eventkit.projection.sql import bound_waits, read_transaction, transaction

log = logging.getLogger("eventkit.projection")


class LeaseLost(Exception):
    """Another runner holds the lease now: nothing of the transaction was written."""


@dataclass(frozen=True, slots=True)
class Start:
    """Where a runner that took the lease starts: the checkpoint, and whether an error was on it."""

    checkpoint: int
    had_error: bool


class RunnerLease:
    """The lease of one projector, held by ``owner``."""

    def __init__(self, engine: Engine, name: str, owner: str, ttl: float) -> None:
        self.engine = engine
        self.name = name
        self.owner = owner
        self.ttl = ttl
        self.lost = False

    @contextlib.contextmanager
    def _bounded(self) -> Iterator[Session]:
        """Every transaction on the lease row: its lock waits and its idleness bounded by the
        ttl (PostgreSQL), so a process frozen (SIGSTOP) inside one, a batch or a renewal, loses
        its session about a ttl after its last statement and frees the row for a standby."""
        with transaction(self.engine) as db:
            bound_waits(db, self.ttl)
            yield db

    def try_acquire(self) -> Start | None:
        """Take the lease if it is free or expired (and mark a halted projector running)."""
        if self._held_by_another():
            return None
        with self._bounded() as db:
            if not checkpoints.try_acquire_lease(db, self.name, self.owner, self.ttl):
                retired_by_switch(db, self.name)
                return None
            cp = checkpoints.get_checkpoint(db, self.name)
            if cp.updated_at is None:
                checkpoints.save_checkpoint(db, self.name, last_sequence=0, state="running")
            elif cp.state == "halted":
                log.warning("%s: was halted (%s); retrying", self.name, cp.last_error)
                checkpoints.save_checkpoint(
                    db, self.name, last_sequence=cp.last_sequence, state="running"
                )
        self.lost = False
        return Start(cp.last_sequence, cp.last_error is not None)

    def _held_by_another(self) -> bool:
        """Whether another owner holds the lease now, read without writing: a standby asks
        without waiting for the write lock (on SQLite a busy runner holds it from one batch to
        the next). :class:`Retired` when a switch retired this version."""
        with read_transaction(self.engine) as db:
            lease = checkpoints.get_lease(db, self.name)
            if lease is None or lease.owner == self.owner or not lease.live:
                return False
            retired_by_switch(db, self.name)
        return True

    def holder(self) -> str:
        """Who holds the lease now (for messages)."""
        with read_transaction(self.engine) as db:
            lease = checkpoints.get_lease(db, self.name)
        return lease.owner if lease and lease.owner else "another runner"

    def renew(self) -> bool:
        with self._bounded() as db:
            return checkpoints.renew_lease(db, self.name, self.owner, self.ttl)

    def release(self) -> None:
        with self._bounded() as db:
            checkpoints.release_lease(db, self.name, self.owner)

    async def keep(self) -> None:
        """Renew every ``ttl / 3`` until cancelled or lost (then :attr:`lost` is set)."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                held = await asyncio.to_thread(self.renew)
            except DBAPIError as e:
                log.warning("%s: cannot renew lease: %s", self.name, e)
                continue
            if not held:
                self.lost = True
                return

    @contextlib.contextmanager
    def fenced(self) -> Iterator[Session]:
        """A transaction that commits only while this owner holds the lease (renewed inside
        it); :class:`LeaseLost` otherwise, with nothing written."""
        with self._bounded() as db:
            if not checkpoints.renew_lease(db, self.name, self.owner, self.ttl):
                self.lost = True
                raise LeaseLost
            yield db


__all__ = ["LeaseLost", "RunnerLease", "Start"]
