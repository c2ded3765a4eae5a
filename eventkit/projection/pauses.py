"""A runner's pauses: between its tries of the lease, and while the database or NATS does not
answer (the runtime's one pacing, 0.25 s doubling to :data:`OUTAGE_DELAY_CAP`); each is cut
short when the runner is asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.exc import DBAPIError

from eventkit.runtime.backoff import Pacing

log = logging.getLogger("eventkit.projection")

OUTAGE_DELAY_CAP = 5.0
"""Longest wait between tries while the database (or NATS) does not answer."""


class Pauses:
    """The waits of the runner ``name``, ended early by ``stopping``."""

    def __init__(self, name: str, stopping: asyncio.Event) -> None:
        self.name = name
        self._stopping = stopping
        self._outages = Pacing(cap=OUTAGE_DELAY_CAP)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or until the runner is asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def wait_out(self, error: BaseException) -> None:
        """Wait, with capped backoff, for the database or the store to answer again."""
        delay = self._outages.next()
        what = "the database" if isinstance(error, DBAPIError) else "NATS"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        log.warning(
            "%s: waiting for %s (%s); trying again in %.1fs",
            self.name,
            what,
            first_line[:200],
            delay,
        )
        await self.sleep(delay)

    def got_through(self) -> None:
        """A try got through: the next outage starts from the shortest wait again."""
        self._outages.reset()


__all__ = ["OUTAGE_DELAY_CAP", "Pauses"]
