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

from eventkit.projection import checkpoints as cps
from eventkit.projection.applying import BadBulk, BadEvent, Item
from eventkit.projection.lease import RunnerLease
from eventkit.projection.projector import Projector
from eventkit.projection.redaction import halt_message
from eventkit.store import protocol as p
from eventkit.store.records import time_from_ns

log = logging.getLogger("eventkit.projection")


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text}"[:2000]


class BadEvents:
    """The bad-event half of :class:`~eventkit.projection.runner.ProjectionRunner`."""

    projector: Projector
    checkpoint: int
    processed: int
    state: Any
    halted_error: str | None
    _lease: RunnerLease

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
        log.error("%s: parked seq %d (%s): %s", self.name, item.sequence, event_type, text)
        with self._lease.fenced() as db:
            cps.park(
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
        self.processed += 1

    def _halt(self, item: Item, error: BaseException) -> None:
        event_type, text = self._failure(item, error)
        message = halt_message(item.sequence, event_type, item.msg.subject, text)
        log.error("%s: halted at %s", self.name, message)
        with self._lease.fenced() as db:
            cps.set_state(db, self.name, "halted", message)
        self.state = "halted"
        self.halted_error = message


__all__ = ["BadEvents"]
