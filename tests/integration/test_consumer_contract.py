"""The consumer contract on both implementations of the consumer port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from eventkit import InMemoryEventStore, JetStreamEventStore
from eventkit.runtime.memory import MemoryConsumer
from eventkit.runtime.port import jetstream_durable
from eventkit.testing.consumers import ConsumerContract


class TestMemoryConsumer(ConsumerContract):
    @pytest.fixture
    def store(self) -> Any:
        return InMemoryEventStore(stream="contract")

    @pytest.fixture
    def consumer_factory(self) -> Any:
        return lambda store, name, filters, ack_wait: MemoryConsumer(
            store, name, filters, ack_wait=ack_wait
        )


@pytest.mark.nats
class TestJetStreamConsumer(ConsumerContract):
    @pytest.fixture
    async def store(self, event_store: JetStreamEventStore) -> AsyncIterator[Any]:
        yield event_store

    @pytest.fixture
    def consumer_factory(self) -> Any:
        return lambda store, name, filters, ack_wait: jetstream_durable(
            store, name, filters, ack_wait=ack_wait
        )
