"""What a runner does with a bad event: find it in the batch, retry it, then park or halt.

A batch that fails is applied again up to the bad event (so the events before it commit), the
bad event is retried ``max_retries`` times with exponential backoff, and then, by the projector's
``on_error``, parked as a dead letter (the checkpoint moves past it in the same transaction) or
halted on (the checkpoint stays before it and the error is on the checkpoint row, redacted).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from eventkit.observability.worker import WorkerObserver
from eventkit.projection import checkpoints as cps
from eventkit.projection import letters
from eventkit.projection.applying import BadBulk, BadEvent, Item
from eventkit.projection.lease import LeaseLost, RunnerLease
from eventkit.projection.projector import Projector
from eventkit.projection.redaction import halt_message
from eventkit.store import protocol as p
from eventkit.store.records import time_from_ns

log = logging.getLogger("eventkit.projection")


IDLE_STRIKES = 3
"""Batch transactions ended as idle in a row, at one checkpoint, before the projector halts."""


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text}"[:2000]


class BadEvents:
    """The bad-event half of :class:`~eventkit.projection.runner.ProjectionRunner`."""

    projector: Projector
    checkpoint: int
    processed: int
    parked: int
    state: Any
    halted_error: str | None
    _lease: RunnerLease
    obs: WorkerObserver
    _idle_at: int = -1
    _idle_ends: int = 0

    @property
    def name(self) -> str:
        return self.projector.name

    def _apply(self, items: Sequence[Item]) -> None:
        raise NotImplementedError

    async def _commit(self, items: Sequence[Item]) -> bool:
        """Commit ``items``; on a bad event split, retry and halt or park. True when halted."""
        while items:
            try:
                await asyncio.to_thread(self._apply, items)
                return False
            except BadBulk:
                for item in items:  # the slow path: one transaction per event
                    if await self._commit([item]):
                        return True
                return False
            except BadEvent as bad:
                self.obs.failed()
                if bad.index > 0:
                    await asyncio.to_thread(self._apply, items[: bad.index])
                item = items[bad.index]
                error = await self._retry(item, bad.error)
                if error is None:
                    items = items[bad.index + 1 :]
                    continue
                if self.projector.on_error == "park":
                    await asyncio.to_thread(self._park, item, error)
                    items = items[bad.index + 1 :]
                    continue
                await asyncio.to_thread(self._halt, item, error)
                return True
        return False

    async def _retry(self, item: Item, error: BaseException) -> BaseException | None:
        """Retry one event with backoff; the last error, or None once it applied."""
        for attempt in range(self.projector.max_retries):
            await asyncio.sleep(self.projector.retry_backoff * (2**attempt))
            try:
                await asyncio.to_thread(self._apply, [item])
                return None
            except BadEvent as bad:
                error = bad.error
        return error

    def _failure(self, item: Item, error: BaseException) -> tuple[str, str]:
        event_type = (item.msg.headers or {}).get(p.EVENT_TYPE, "?")
        return event_type, _describe(error)

    def _park(self, item: Item, error: BaseException) -> None:
        event_type, text = self._failure(item, error)
        self.obs.parked(item.sequence, event_type, 1 + self.projector.max_retries, text)
        with self._lease.fenced() as db:
            letters.park(
                db,
                self.name,
                sequence=item.sequence,
                subject=item.msg.subject,
                event_type=event_type,
                error=text,
                attempts=1 + self.projector.max_retries,
            )
            cps.save_checkpoint(
                db,
                self.name,
                last_sequence=item.sequence,
                last_event_time=time_from_ns(item.timestamp_ns),
            )
        self.checkpoint = item.sequence
        self.parked += 1

    def _halt(self, item: Item, error: BaseException) -> None:
        event_type, text = self._failure(item, error)
        self._halt_with(halt_message(item.sequence, event_type, item.msg.subject, text))

    def _halt_with(self, message: str) -> None:
        self.obs.state("halted", error=message)
        with self._lease.fenced() as db:
            cps.set_state(db, self.name, "halted", message)
        self.state = "halted"
        self.halted_error = message

    async def _ended_as_idle(self) -> bool:
        """PostgreSQL ended a batch transaction left idle too long: try again, and halt (True)
        when it happens :data:`IDLE_STRIKES` times in a row at the same checkpoint (a handler
        that waits between statements: trying again would go on forever)."""
        at = self.checkpoint
        self._idle_ends = self._idle_ends + 1 if self._idle_at == at else 1
        self._idle_at = at
        limit = self._lease.ttl
        if self._idle_ends < IDLE_STRIKES:
            log.warning(
                "%s: PostgreSQL ended a batch transaction idle for over %gs (after seq %d); "
                "trying again",
                self.name,
                limit,
                at,
            )
            return False
        message = (
            f"seq > {at}: PostgreSQL ended the batch transaction {IDLE_STRIKES} times for "
            f"sitting idle over {limit:g}s (idle_in_transaction_session_timeout, the lease ttl): "
            f"a handler waits between its statements; do slow work outside the "
            f"transaction, or raise the lease ttl (eventkit run --lease-ttl)"
        )
        try:
            await asyncio.to_thread(self._halt_with, message)
        except LeaseLost:
            return False  # another runner holds the lease now: it carries on
        return True


__all__ = ["BadEvents"]
