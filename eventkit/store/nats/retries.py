"""Pacing of retries of something unanswered."""

from __future__ import annotations

import asyncio


class Backoff:
    """Waits between tries of something unanswered, until ``retry_for`` seconds have passed
    since the helper was made: 0.05 s, doubling up to 1 s."""

    def __init__(self, retry_for: float, first_delay: float = 0.05) -> None:
        self._loop = asyncio.get_running_loop()
        self.deadline = self._loop.time() + retry_for
        self._delay = first_delay

    async def wait(self) -> bool:
        """Sleep before the next try; False (no sleep) when the deadline would pass first."""
        if self._loop.time() + self._delay >= self.deadline:
            return False
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, 1.0)
        return True
