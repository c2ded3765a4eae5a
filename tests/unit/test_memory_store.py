"""The in-memory store passes the store contract, plus what is its own."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from eventkit import InMemoryEventStore
from eventkit.errors import EventTooLargeError
from eventkit.testing.contract import ContractNoted, EventStoreContract


class TestInMemoryStoreContract(EventStoreContract):
    @pytest.fixture
    def store_factory(self) -> Callable[[], InMemoryEventStore]:
        return lambda: InMemoryEventStore(stream="contract")


async def test_max_payload_is_configurable() -> None:
    store = InMemoryEventStore(stream="s", max_payload=400)
    with pytest.raises(EventTooLargeError) as info:
        await store.append("s.note.1", [ContractNoted(text="x" * 500)])
    assert info.value.limit == 400
    assert await store.append("s.note.1", [ContractNoted(text="ok")]) == 1


async def test_snapshots_are_kept_in_memory() -> None:
    store = InMemoryEventStore()
    assert await store.snapshots.get("eventkit.x.1") is None
