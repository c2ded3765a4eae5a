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

from eventkit.projection.applying import BadBulk, BadEvent, Item
from eventkit.projection.committing import BatchTransaction
from eventkit.projection.lease import LeaseLost

log = logging.getLogger("eventkit.projection")


IDLE_STRIKES = 3
"""Batch transactions ended as idle in a row, at one checkpoint, before the projector halts."""


class BadEvents:
    """Commits a runner's batches through its ``transaction``, and deals with the bad events
    in them (see the module's docstring)."""

    def __init__(self, transaction: BatchTransaction) -> None:
        self.transaction = transaction
        self.projector = transaction.projector
        self._idle_at = -1
        self._idle_ends = 0

    async def commit(self, items: Sequence[Item]) -> bool:
        """Commit ``items``; on a bad event split, retry and halt or park. True when halted."""
        apply = self.transaction.apply
        while items:
            try:
                await asyncio.to_thread(apply, items)
                return False
            except BadBulk:
                for item in items:  # the slow path: one transaction per event
                    if await self.commit([item]):
                        return True
                return False
            except BadEvent as bad:
                self.transaction.obs.failed()
                if bad.index > 0:
                    await asyncio.to_thread(apply, items[: bad.index])
                item = items[bad.index]
                error = await self._retry(item, bad.error)
                if error is None:
                    items = items[bad.index + 1 :]
                    continue
                if self.projector.on_error == "park":
                    await asyncio.to_thread(self.transaction.park, item, error)
                    items = items[bad.index + 1 :]
                    continue
                await asyncio.to_thread(self.transaction.halt, item, error)
                return True
        return False

    async def _retry(self, item: Item, error: BaseException) -> BaseException | None:
        """Retry one event with backoff; the last error, or None once it applied."""
        for attempt in range(self.projector.max_retries):
            await asyncio.sleep(self.projector.retry_backoff * (2**attempt))
            try:
                await asyncio.to_thread(self.transaction.apply, [item])
                return None
            except BadEvent as bad:
                error = bad.error
        return error

    async def ended_as_idle(self) -> bool:
        """PostgreSQL ended a batch transaction left idle too long: try again, and halt (True)
        when it happens :data:`IDLE_STRIKES` times in a row at the same checkpoint (a handler
        that waits between statements: trying again would go on forever)."""
        at = self.transaction.progress.checkpoint
        self._idle_ends = self._idle_ends + 1 if self._idle_at == at else 1
        self._idle_at = at
        limit = self.transaction.lease.ttl
        if self._idle_ends < IDLE_STRIKES:
            log.warning(
                "%s: PostgreSQL ended a batch transaction idle for over %gs (after seq %d); "
                "trying again",
                self.transaction.name,
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
            await asyncio.to_thread(self.transaction.halt_with, message)
        except LeaseLost:
            return False  # another runner holds the lease now: it carries on
        return True


__all__ = ["IDLE_STRIKES", "BadEvents"]
