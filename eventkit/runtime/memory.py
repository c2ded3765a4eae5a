"""The consumer port over an ``InMemoryEventStore``: a durable consumer kept in this process.

It keeps what a JetStream durable consumer keeps: the next stream sequence to deliver, the
deliveries not yet settled with their ack deadlines, how often each was delivered. An unsettled
delivery comes back after ``ack_wait``; ``nak(delay)`` brings it back after ``delay``;
``in_progress()`` starts its ack wait again; ``term()`` and ``ack()`` end it (ack policy
``all``: everything delivered before it too; ``none``: a delivery is done once delivered).
Its state lives as long as the store, per consumer name, so a second runner continues where the
first stopped, like a durable consumer.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import Any

from eventkit.runtime.port import Delivery
from eventkit.runtime.pulling import AckMode
from eventkit.store.subjects import subject_matches


@dataclass
class _Unsettled:
    deliveries: int
    due: float
    """When it is delivered again (the ack deadline, or the end of a nak delay)."""
    dseq: int = 0


@dataclass
class _State:
    next_sequence: int = 1
    consumer_sequence: int = 0
    unsettled: dict[int, _Unsettled] = field(default_factory=dict)
    out: set[int] = field(default_factory=set)
    """Unsettled deliveries handed out and not yet due again."""


_STATES: weakref.WeakKeyDictionary[Any, dict[str, _State]] = weakref.WeakKeyDictionary()


def delete_memory_consumer(store: Any, name: str) -> bool:
    """Forget a consumer's state (``reactor reset``); False when it had none."""
    return _STATES.get(store, {}).pop(name, None) is not None


class MemoryDelivery(Delivery):
    __slots__ = ("_consumer",)

    def __init__(self, consumer: MemoryConsumer, *args: Any) -> None:
        super().__init__(*args)
        self._consumer = consumer

    async def _send(self, what: str, delay: float) -> None:
        self._consumer.settle(self.sequence, self.consumer_sequence, what, delay)


class MemoryConsumer:
    """A durable consumer named ``name`` on an in-memory store (see the module docstring)."""

    def __init__(
        self,
        store: Any,
        name: str,
        filters: list[str],
        *,
        ack: AckMode = "explicit",
        ack_wait: float = 30.0,
        start_sequence: int = 1,
    ) -> None:
        self.store = store
        self.name = name
        self.filters = filters
        self.ack: AckMode = ack
        self.ack_wait = ack_wait
        self.pending_at_start = 0
        states = _STATES.setdefault(store, {})
        if name not in states:
            states[name] = _State(next_sequence=max(1, start_sequence))
        self._state = states[name]
        self._buffer: list[Delivery] = []
        self._pulling = True

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _matches(self, subject: str) -> bool:
        return any(subject_matches(f, subject) for f in self.filters)

    async def _new(self) -> int:
        n = 0
        async for m in self.store.read_raw(None, self._state.next_sequence):
            if self._matches(m.subject):
                n += 1
        return n

    async def start(self) -> None:
        self._state.out.clear()  # what an earlier runner held comes back when due
        self._buffer = []
        self._pulling = True
        self.pending_at_start = await self._new()

    def redeliver(self, sequence: int) -> None:
        """Deliver ``sequence`` again (as after a worker's crash before its ack)."""
        u = self._state.unsettled.get(sequence)
        if u is None:
            self._state.unsettled[sequence] = _Unsettled(1, 0.0)
        else:
            u.due = 0.0

    def settle(self, sequence: int, dseq: int, what: str, delay: float) -> None:
        s = self._state
        u = s.unsettled.get(sequence)
        if u is None or self.ack == "none" or (u.dseq != dseq and what != "ack"):
            return  # settled already, or a stale copy (it was delivered again since)
        if what == "progress":
            u.due = self._now() + self.ack_wait
            return
        if what == "nak":
            u.due = self._now() + delay
            s.out.discard(sequence)
            return
        if what == "ack" and self.ack == "all":
            for seq in [q for q in s.unsettled if q <= sequence]:
                del s.unsettled[seq]
                s.out.discard(seq)
            return
        del s.unsettled[sequence]
        s.out.discard(sequence)

    async def _deliver(self, limit: int) -> list[Delivery]:
        s = self._state
        now = self._now()
        out: list[Delivery] = []
        for seq, u in sorted(s.unsettled.items()):
            if len(out) >= limit:
                return out
            if u.due <= now:
                m = await self.store.get(seq)
                if m is None:  # erased since
                    del s.unsettled[seq]
                    continue
                u.deliveries += 1
                out.append(self._delivery(m, u))
        async for m in self.store.read_raw(None, s.next_sequence):
            if len(out) >= limit:
                break
            s.next_sequence = m.sequence + 1
            if not self._matches(m.subject):
                continue
            u = _Unsettled(1, 0.0)
            if self.ack != "none":
                s.unsettled[m.sequence] = u
            out.append(self._delivery(m, u))
        return out

    def _delivery(self, m: Any, u: _Unsettled) -> Delivery:
        s = self._state
        s.consumer_sequence += 1
        u.dseq = s.consumer_sequence
        u.due = self._now() + self.ack_wait
        s.out.add(m.sequence)
        return MemoryDelivery(
            self,
            m.subject,
            m.data,
            dict(m.headers),
            m.sequence,
            u.dseq,
            int(m.time.timestamp() * 1e9),
            0,
            u.deliveries,
        )

    async def take(self, limit: int, timeout: float) -> list[Delivery]:
        if self._buffer:
            out, self._buffer = self._buffer[:limit], self._buffer[limit:]
            return out
        if not self._pulling:
            return []
        deadline = self._now() + timeout
        while True:
            out = await self._deliver(limit)
            if out or self._now() >= deadline:
                return out
            await asyncio.sleep(min(0.01, max(0.0, deadline - self._now())))

    def buffered(self) -> list[Delivery]:
        return list(self._buffer)

    def take_buffered(self) -> list[Delivery]:
        out, self._buffer = self._buffer, []
        return out

    async def halt_pulling(self, wait: float) -> None:
        self._pulling = False

    async def stop(self) -> None:
        self._buffer = []

    async def drained(self, end: int) -> bool:
        s = self._state
        return not s.unsettled and await self._new() == 0


__all__ = ["MemoryConsumer", "MemoryDelivery", "delete_memory_consumer"]
