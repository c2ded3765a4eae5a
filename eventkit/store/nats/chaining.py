"""Chaining on JetStream: the head each append follows, and the check of every subject read.

An append that expects sequence ``n`` follows the link of the message at ``n`` (which the
server then checks is still the subject's last): from the heads this process read or wrote
(a ``Repository`` load then save costs no read), else one direct get of that message. An
append without expectation follows the subject's last message, which it reads first anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

from eventkit.store.base import Write
from eventkit.store.chain import GENESIS, ChainHeads, head_after, head_of
from eventkit.store.nats.reading import Reader
from eventkit.store.records import StoredMessage


class Chainer:
    """The chain heads appends follow, read through ``reader`` and kept in ``heads``."""

    def __init__(self, reader: Reader, heads: ChainHeads) -> None:
        self.reader = reader
        self.heads = heads

    async def chain_heads(self, writes: Sequence[Write]) -> list[str]:
        """The link each write's first event follows."""
        return [await self._head_before(w) for w in writes]

    async def _head_before(self, w: Write) -> str:
        n = w.expected_sequence
        subject = w.subject
        if n == 0 and w.boundary is None:
            return GENESIS
        if n is not None and w.boundary is None:
            cached = self.heads.get(subject, n)
            if cached is not None:
                return cached
            last: StoredMessage | None = await self.reader.get(n)
            if last is None or last.subject != subject:
                # a replica that lags may not hold it yet: ask the leader for the subject's last
                last = await self.reader.last_message(subject, leader=True)
                if last is None or last.sequence != n:
                    return GENESIS  # not the subject's last: the server refuses the append
        else:  # a boundary's expectation is on the filter: chain after the subject's last
            last = await self.reader.last_message(subject)
        head = head_after(last)
        if head is None:  # foreign or unchained: the head is the last link before it
            head = head_of([m async for m in self.reader.read_raw(subject)])
        if last is not None:
            self.heads.note(subject, last.sequence, head)
        return head

    async def marker_head(self, subject: str, last: StoredMessage | None) -> str:
        """The last link of ``subject`` before its erasure marker (its last message ``last``)."""
        head = head_after(last)
        if head is None:
            head = head_of([m async for m in self.reader.read_raw(subject)])
        return head
