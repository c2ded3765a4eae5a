"""A reactor stops when the stream went back under what it handled (see
:mod:`eventkit.store.rewind`).

nats-server moves a durable consumer back with a stream that lost its end, without a word, so
the consumer cannot tell. The process can: it remembers, per reactor and store, the highest
stream sequence handled (and that event's id), and when a runner starts, and whenever the
connection drops and comes back (a server restart), it checks that the stream still holds them.
If not, the reactor stops with :class:`~eventkit.errors.StreamRewoundError` instead of going on
as if nothing happened. (A process that starts after the loss knows nothing to compare.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from eventkit.errors import StreamRewoundError
from eventkit.runtime.port import Delivery
from eventkit.store.rewind import check_position
from eventkit.store.wire_constants import MSG_ID

log = logging.getLogger("eventkit.reaction")

RECHECK_DELAY = 0.5
"""Seconds between attempts while the server does not answer after a reconnect."""


class RewindWatch:
    """What one reactor runner handled, checked against the stream after each reconnect."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        # kept on the store: a runner made again after an outage knows what its predecessor saw
        seen: dict[str, list[Any]] | None = getattr(runner.store, "_reactor_positions", None)
        if seen is None:
            seen = {}
            runner.store._reactor_positions = seen
        self._seen = seen.setdefault(runner.name, [0, None])
        self.error: str | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        listen = getattr(runner.store, "on_connection_change", None)
        if listen is not None:
            listen(self._changed.set)

    def saw(self, msg: Delivery) -> None:
        """Note a delivered message (its stream sequence and event id)."""
        with contextlib.suppress(ValueError, IndexError, AttributeError):
            sequence = msg.sequence
            if sequence > self._seen[0]:
                self._seen[0] = sequence
                self._seen[1] = (msg.headers or {}).get(MSG_ID)

    async def start(self) -> None:
        """Check what this process saw before, then watch every reconnect."""
        self._changed.clear()
        try:
            await self.check()
        except StreamRewoundError as e:
            self.error = str(e)
            log.error("%s", e)
            raise
        self._task = asyncio.ensure_future(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    def raise_if_rewound(self) -> None:
        if self.error is not None:
            raise StreamRewoundError(self.error)

    async def check(self) -> None:
        """``StreamRewoundError`` when the stream no longer holds what was handled."""
        name = self.runner.name
        await check_position(
            self.runner.store,
            int(self._seen[0]),
            self._seen[1],
            who=f"reactor {name!r}",
            recover=(
                "Its side effects of the lost events have happened. Once the stream is as it "
                "should be, decide from where it should react again and move its consumer "
                "there (nats consumer rm, then run it with deliver_policy by_start_sequence)"
            ),
        )

    async def _watch(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            while True:
                try:
                    await self.check()
                    break
                except StreamRewoundError as e:
                    self.error = str(e)
                    log.error("%s", e)
                    self.runner.stop()
                    return
                except Exception as e:  # the server is still coming back
                    log.debug("reactor %s: rewind check not answered yet (%r)", self.runner.name, e)
                    await asyncio.sleep(RECHECK_DELAY)


__all__ = ["RewindWatch"]
