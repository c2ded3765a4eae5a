"""The consumer port: deliveries that acknowledge themselves, whatever delivers them.

A worker takes :class:`Delivery` objects from a :class:`Consumer` and settles each one itself::

    consumer = jetstream_consumer(store, "eventkit_reactor_mails", filters, setup=ensure)
    await consumer.start()
    for d in await consumer.take(16, timeout=0.2):
        try:
            ...                                   # handle d.subject, d.headers, d.data
            await d.ack()
        except Exception:
            await d.nak(delay=5.0)                # or d.term() once it is parked

No runner writes protocol bytes (``+ACK``, ``-NAK``, ``+TERM``, ``+WPI``) or parses a
``$JS.ACK`` reply subject: :class:`JetStreamDelivery` does, over the pull transport of
:mod:`eventkit.runtime.pulling`; :class:`eventkit.runtime.memory.MemoryConsumer` is the same
port over an ``InMemoryEventStore`` (ack wait, redeliveries, delays, max deliveries), and one
contract suite (:mod:`eventkit.testing.consumers`) runs on both.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from eventkit.runtime.pulling import AckMode, Puller
from eventkit.store.nats.delivery import Delivered


class Delivery:
    """One delivered message: where it is in the stream, how often it was delivered, and the
    four ways to settle it. Settling twice sends nothing the second time (except
    :meth:`in_progress`, which only extends the ack wait)."""

    __slots__ = (
        "consumer_sequence",
        "data",
        "deliveries",
        "headers",
        "pending",
        "sequence",
        "settled",
        "subject",
        "time_ns",
    )

    def __init__(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str] | None,
        sequence: int,
        consumer_sequence: int,
        time_ns: int,
        pending: int,
        deliveries: int,
    ) -> None:
        self.subject = subject
        self.data = data
        self.headers = headers
        self.sequence = sequence
        """The stream sequence."""
        self.consumer_sequence = consumer_sequence
        self.time_ns = time_ns
        """When the server stored it (ns since the epoch)."""
        self.pending = pending
        """Messages the consumer holds after this one."""
        self.deliveries = deliveries
        """How many times it was delivered (1 on the first delivery)."""
        self.settled = False

    async def ack(self) -> None:
        """Done: the consumer never delivers it again."""
        if not self.settled:
            self.settled = True
            await self._send("ack", 0.0)

    async def nak(self, delay: float = 0.0) -> None:
        """Not done: deliver it again after ``delay`` seconds (to any worker)."""
        if not self.settled:
            self.settled = True
            await self._send("nak", delay)

    async def term(self) -> None:
        """Never deliver it again, though it was not done (it was parked)."""
        if not self.settled:
            self.settled = True
            await self._send("term", 0.0)

    async def in_progress(self) -> None:
        """Still working on it: the ack wait starts again."""
        if not self.settled:
            await self._send("progress", 0.0)

    async def _send(self, what: str, delay: float) -> None:
        raise NotImplementedError


class Consumer(Protocol):
    """What a worker pulls from: a durable consumer shared by every worker of one name."""

    name: str
    filters: list[str]
    ack: AckMode
    pending_at_start: int

    async def start(self) -> None:
        """Create or check the consumer and start receiving (set-up is tried again while the
        server elects a leader); raises a transient ``StoreUnavailableError`` if it cannot."""

    async def take(self, limit: int, timeout: float) -> list[Delivery]:
        """Up to ``limit`` deliveries; waits up to ``timeout`` seconds for the first one.
        Raises ``ConsumerInterrupted`` when the server ended the worker's requests."""

    def buffered(self) -> list[Delivery]:
        """Delivered and not yet taken (they need in-progress acks too)."""

    def take_buffered(self) -> list[Delivery]:
        """Everything delivered and not yet taken, now the caller's."""

    async def halt_pulling(self, wait: float) -> None:
        """Ask for nothing more; wait up to ``wait`` seconds for what is under way."""

    async def stop(self) -> None:
        """Stop receiving (deliveries not settled go back after the ack wait)."""

    async def drained(self, end: int) -> bool:
        """Nothing pending, nothing unacknowledged, everything up to ``end`` delivered."""


# -- JetStream -----------------------------------------------------------------------------

_NAK_DELAY = b"-NAK "
_BODIES = {"ack": b"+ACK", "term": b"+TERM", "progress": b"+WPI"}


class JetStreamDelivery(Delivery):
    __slots__ = ("_consumer", "_reply")

    def __init__(self, msg: Delivered, consumer: JetStreamConsumer) -> None:
        t = msg.reply.split(".")
        o = 0 if len(t) == 9 else 2  # v1: 9 tokens; v2 adds domain and account hash
        super().__init__(
            msg.subject,
            msg.data,
            msg.headers,
            int(t[5 + o]),
            int(t[6 + o]),
            int(t[7 + o]),
            int(t[8 + o]),
            int(t[4 + o]),
        )
        self._reply = msg.reply
        self._consumer = consumer

    async def _send(self, what: str, delay: float) -> None:
        if self._consumer.ack == "none":
            return
        if what == "nak":
            body = (
                _NAK_DELAY + json.dumps({"delay": int(delay * 1e9)}).encode()
                if delay > 0
                else b"-NAK"
            )
        else:
            body = _BODIES[what]
        await self._consumer.nc.publish(self._reply, body)


class JetStreamConsumer:
    """The port over a JetStream durable pull consumer (:class:`Puller`)."""

    def __init__(self, puller: Puller, *, info: Any = None) -> None:
        self.puller = puller
        self.nc = puller.nc
        self.name = puller.name
        self.filters = puller.filters
        self.ack: AckMode = puller.ack
        self.pending_at_start = 0

    async def start(self) -> None:
        await self.puller.start()
        self.pending_at_start = self.puller.pending_at_start

    async def take(self, limit: int, timeout: float) -> list[Delivery]:
        return [JetStreamDelivery(m, self) for m in await self.puller.take(limit, timeout)]

    def buffered(self) -> list[Delivery]:
        return [JetStreamDelivery(m, self) for m in self.puller.buffered()]

    def take_buffered(self) -> list[Delivery]:
        return [JetStreamDelivery(m, self) for m in self.puller.take_buffered()]

    async def halt_pulling(self, wait: float) -> None:
        await self.puller.halt_pulling(wait)

    async def stop(self) -> None:
        await self.puller.stop()

    async def drained(self, end: int) -> bool:
        p = self.puller
        info = await p.js.consumer_info(p.stream, p.name)
        delivered = int(info.delivered.stream_seq or 0) if info.delivered else 0
        return (
            int(info.num_pending or 0) == 0
            and int(info.num_ack_pending or 0) == 0
            and delivered >= end  # replay_policy original holds events back
        )


def jetstream_durable(
    store: Any, name: str, filters: list[str], *, ack: AckMode = "explicit", ack_wait: float = 30.0
) -> JetStreamConsumer:
    """A plain durable pull consumer ``name`` on ``filters`` (created when missing), as a
    :class:`Consumer`: what the consumer contract suite runs on."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    async def setup() -> int:
        info = await store.js.add_consumer(
            store.stream,
            ConsumerConfig(
                durable_name=name,
                filter_subjects=filters,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy(ack),
                ack_wait=ack_wait,
                max_deliver=-1,
                inactive_threshold=None,
            ),
        )
        return int(info.num_pending or 0)

    return JetStreamConsumer(
        Puller(store, name, filters, batch=64, ack=ack, name=name, setup=setup)
    )


__all__ = ["Consumer", "Delivery", "JetStreamConsumer", "JetStreamDelivery", "jetstream_durable"]
