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
from datetime import UTC, datetime
from typing import Final

from eventkit.store.records import StoredMessage

FIRST_PAUSE: Final = 0.002
"""The cap of the first pause between tries, in seconds (it doubles with every try)."""
MAX_PAUSE: Final = 0.1
"""The largest cap of a pause between tries."""


class _Queue:
    __slots__ = ("lock", "tail", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0
        self.tail: StoredMessage | None = None


class SubjectQueues:
    """One lock per subject, kept only while an append holds it or waits for it, with the
    message this process appended there last (what the next append in the queue follows, unless
    another process appended in between: then the server refuses it and it reads again)."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}

    def tail(self, subject: str) -> StoredMessage | None:
        """The subject's last message as this process appended it while appends queued."""
        queue = self._queues.get(subject)
        return queue.tail if queue is not None else None

    def appended(self, subject: str, sequence: int) -> None:
        queue = self._queues.get(subject)
        if queue is not None:
            queue.tail = StoredMessage(subject, sequence, datetime.now(UTC), {}, b"")

    def stale(self, subject: str) -> None:
        """Another process appended to ``subject``: what this one wrote last is not its tail."""
        queue = self._queues.get(subject)
        if queue is not None:
            queue.tail = None

    @contextlib.asynccontextmanager
    async def hold(self, subjects: Iterable[str]) -> AsyncIterator[None]:
        """Hold the locks of ``subjects`` (in sorted order: two appends to the same subjects
        never wait for each other in a circle)."""
        waiting: list[str] = []
        acquired: list[str] = []
        try:
            for subject in sorted(set(subjects)):
                queue = self._queues.get(subject)
                if queue is None:
                    queue = self._queues[subject] = _Queue()
                queue.users += 1
                waiting.append(subject)
                await queue.lock.acquire()
                acquired.append(subject)
            yield
        finally:
            for subject in reversed(waiting):
                queue = self._queues[subject]
                if subject in acquired:
                    queue.lock.release()
                queue.users -= 1
                if queue.users == 0:
                    del self._queues[subject]

    def __len__(self) -> int:
        return len(self._queues)


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
