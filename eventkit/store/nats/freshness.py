"""Read-your-writes on a replicated stream.

Direct gets are answered by any replica, and a follower may lag a few sequences behind the
leader. This process remembers, per subject, the highest sequence it has written or read there
(least recently used forgotten first). A read of a subject that comes back below it was answered
by a lagging replica: it is asked again (another replica, or the same one caught up), and after a
few tries the stream leader says what the subject's last message is (lower only when a message
was deleted since). So a process sees its own writes and its reads of a subject never go back.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

FAST_TRIES: Final = 4
"""Direct gets asked again before the leader is asked."""
MAX_TRIES: Final = 60
"""Reads of a subject asked again (delays doubling from 2 ms to 0.1 s: about 5 s) before the
lag is reported as an error."""
FIRST_DELAY: Final = 0.002


class Freshness:
    """``subject -> highest sequence this process knows there``, at most ``limit`` subjects."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._known: OrderedDict[str, int] = OrderedDict()
        self.stale_reads = 0
        """How many reads came back from a lagging replica (and were asked again)."""

    def known(self, subject: str) -> int:
        return self._known.get(subject, 0)

    def note(self, subject: str, sequence: int) -> None:
        known = self._known
        if sequence <= known.get(subject, 0):
            return
        known[subject] = sequence
        known.move_to_end(subject)
        if len(known) > self.limit:
            known.popitem(last=False)

    def settle(self, subject: str, sequence: int) -> None:
        """The leader says ``sequence`` is the subject's last: believe it (a deletion)."""
        self._known[subject] = sequence


__all__ = ["FAST_TRIES", "FIRST_DELAY", "MAX_TRIES", "Freshness"]
