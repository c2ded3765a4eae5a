"""The consumer contract: one test suite every implementation of the consumer port must pass.

Subclass :class:`ConsumerContract` (the subclass name starts with ``Test``) and provide two
fixtures: ``store`` (an empty event store) and ``consumer_factory``, a callable
``(store, name, filters, ack_wait) -> Consumer``::

    class TestMemoryConsumer(ConsumerContract):
        @pytest.fixture
        def store(self):
            return InMemoryEventStore(stream="contract")

        @pytest.fixture
        def consumer_factory(self):
            return lambda store, name, filters, ack_wait: MemoryConsumer(
                store, name, filters, ack_wait=ack_wait
            )

eventkit runs it on the JetStream consumer and on the in-memory one, so ``ReactorScenario``
(which runs the reactor runner over the in-memory consumer) sees what a JetStream worker sees:
stream order, delivery counts, redelivery after the ack wait, ``nak`` delays, ``term``,
``in_progress``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from eventkit.domain.events import Event
from eventkit.runtime.port import Consumer, Delivery

__all__ = ["ConsumerContract", "ContractTick"]

ACK_WAIT = 1.0


class ContractTick(Event):
    """An event of the consumer contract suite."""

    event_type: ClassVar[str] = "eventkit.contract.Tick"
    n: int


Factory = Callable[[Any, str, list[str], float], Consumer]


async def _take(consumer: Consumer, want: int, timeout: float) -> list[Delivery]:
    """Deliveries until ``want`` arrived or ``timeout`` passed."""
    out: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        out += await consumer.take(want - len(out), 0.1)
    return out


class ConsumerContract:
    """The behaviour every consumer must have (see the module docstring)."""

    async def _start(
        self, store: Any, consumer_factory: Factory, events: int = 3
    ) -> tuple[Consumer, str]:
        name = f"contract_{uuid.uuid4().hex[:8]}"
        for n in range(events):
            await store.append(f"{store.stream}.tick.{n % 2}", [ContractTick(n=n)])
        consumer = consumer_factory(store, name, [f"{store.stream}.tick.>"], ACK_WAIT)
        await consumer.start()
        return consumer, name

    async def test_delivers_in_stream_order_with_positions(
        self, store: Any, consumer_factory: Factory
    ) -> None:
        consumer, _ = await self._start(store, consumer_factory)
        try:
            got = await _take(consumer, 3, 10)
            assert [d.sequence for d in got] == [1, 2, 3]
            assert [d.deliveries for d in got] == [1, 1, 1]
            assert [d.subject for d in got] == [f"{store.stream}.tick.{n % 2}" for n in range(3)]
            assert all(d.time_ns > 0 for d in got)
            for d in got:
                await d.ack()
        finally:
            await consumer.stop()

    async def test_acked_is_never_delivered_again(
        self, store: Any, consumer_factory: Factory
    ) -> None:
        consumer, _ = await self._start(store, consumer_factory)
        try:
            for d in await _take(consumer, 3, 10):
                await d.ack()
            assert await _take(consumer, 1, ACK_WAIT * 2) == []
            assert await consumer.drained(3)
        finally:
            await consumer.stop()

    async def test_unsettled_comes_back_after_the_ack_wait(
        self, store: Any, consumer_factory: Factory
    ) -> None:
        consumer, _ = await self._start(store, consumer_factory, events=1)
        try:
            (first,) = await _take(consumer, 1, 10)
            (again,) = await _take(consumer, 1, ACK_WAIT * 4)
            assert again.sequence == first.sequence and again.deliveries == 2
            await again.ack()
        finally:
            await consumer.stop()

    async def test_nak_delivers_again_and_term_never(
        self, store: Any, consumer_factory: Factory
    ) -> None:
        consumer, _ = await self._start(store, consumer_factory, events=2)
        try:
            one, two = await _take(consumer, 2, 10)
            await one.nak()
            await two.term()
            (again,) = await _take(consumer, 1, 10)
            assert again.sequence == 1 and again.deliveries == 2
            await again.ack()
            assert await _take(consumer, 1, ACK_WAIT * 2) == []
        finally:
            await consumer.stop()

    async def test_nak_with_a_delay_waits(self, store: Any, consumer_factory: Factory) -> None:
        consumer, _ = await self._start(store, consumer_factory, events=1)
        try:
            (one,) = await _take(consumer, 1, 10)
            await one.nak(delay=0.6)
            assert await _take(consumer, 1, 0.3) == []
            (again,) = await _take(consumer, 1, 10)
            assert again.deliveries == 2
            await again.ack()
        finally:
            await consumer.stop()

    async def test_in_progress_keeps_a_delivery_past_its_ack_wait(
        self, store: Any, consumer_factory: Factory
    ) -> None:
        consumer, _ = await self._start(store, consumer_factory, events=1)
        try:
            (one,) = await _take(consumer, 1, 10)
            deadline = time.monotonic() + ACK_WAIT * 2.5
            while time.monotonic() < deadline:
                await one.in_progress()
                assert await consumer.take(1, ACK_WAIT / 4) == []
            await one.ack()
            await asyncio.sleep(ACK_WAIT)
            assert await _take(consumer, 1, ACK_WAIT) == []
        finally:
            await consumer.stop()
