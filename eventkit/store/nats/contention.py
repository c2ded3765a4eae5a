"""Appends without an expectation under contention: queue them per subject in this process, and
pace the tries that other processes' appends overtook.

Such an append reads its subject's last message and sends that sequence as its expectation (so
an erased subject's marker stops it, and the append knows the message it follows). Appends of
one process to one subject wait for each other here instead of refusing each other at the
server; an append that another process overtook reads again and tries again, after a short,
random, growing pause, for as long as its time budget allows: other writers appending is never
a reason to fail, only a reason to wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterable
from typing import Final

FIRST_PAUSE: Final = 0.002
"""The cap of the first pause between tries, in seconds (it doubles with every try)."""
MAX_PAUSE: Final = 0.1
"""The largest cap of a pause between tries."""


class SubjectQueues:
    """One lock per subject, kept only while an append holds it or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, subjects: Iterable[str]) -> AsyncIterator[None]:
        """Hold the locks of ``subjects`` (in sorted order: two appends to the same subjects
        never wait for each other in a circle)."""
        waiting: list[str] = []
        acquired: list[str] = []
        try:
            for subject in sorted(set(subjects)):
                entry = self._locks.get(subject)
                if entry is None:
                    entry = self._locks[subject] = (asyncio.Lock(), [0])
                entry[1][0] += 1
                waiting.append(subject)
                await entry[0].acquire()
                acquired.append(subject)
            yield
        finally:
            for subject in reversed(waiting):
                lock, users = self._locks[subject]
                if subject in acquired:
                    lock.release()
                users[0] -= 1
                if users[0] == 0:
                    del self._locks[subject]

    def __len__(self) -> int:
        return len(self._locks)


class Overtaken:
    """Pauses between the tries of an append that other writers overtook: random ("full
    jitter"), their cap doubling from ``FIRST_PAUSE`` to ``MAX_PAUSE``, within ``budget``
    seconds from the first conflict."""

    def __init__(self, budget: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.deadline = self._loop.time() + budget
        self._cap = FIRST_PAUSE
        self.tries = 1

    async def wait(self) -> bool:
        """Pause before the next try; False (no pause) when the budget is spent."""
        pause = random.uniform(0, self._cap)
        if self._loop.time() + pause >= self.deadline:
            return False
        await asyncio.sleep(pause)
        self._cap = min(self._cap * 2, MAX_PAUSE)
        self.tries += 1
        return True


__all__ = ["FIRST_PAUSE", "MAX_PAUSE", "Overtaken", "SubjectQueues"]
