"""The one pacing of every worker's waits: a capped doubling.

A worker that cannot go on (NATS or the database does not answer, a consumer leader is being
elected, a consumer was deleted under it) waits ``delay(n)`` before its ``n``-th try again
(``n`` from 0): 0.25 s, 0.5 s, 1 s, 2 s, then ``cap`` (5 s). A try that got through starts the
count again.
"""

from __future__ import annotations

from typing import Final

FIRST: Final = 0.25
CAP: Final = 5.0


def delay(attempt: int, *, first: float = FIRST, cap: float = CAP) -> float:
    """Seconds to wait before try ``attempt`` (0-based) again: ``first * 2**attempt``, at most
    ``cap``."""
    if attempt < 0:
        return 0.0
    return float(min(cap, first * 2.0 ** min(attempt, 30)))


class Pacing:
    """Counts the tries of one worker since it last got through; :meth:`next` is the wait."""

    def __init__(self, first: float = FIRST, cap: float = CAP) -> None:
        self.first = first
        self.cap = cap
        self.tries = 0

    def next(self) -> float:
        seconds = delay(self.tries, first=self.first, cap=self.cap)
        self.tries += 1
        return seconds

    def reset(self) -> None:
        self.tries = 0


__all__ = ["CAP", "FIRST", "Pacing", "delay"]
