"""The event store contract: one test suite every store must pass.

Subclass :class:`EventStoreContract` in a test module (the subclass name starts with ``Test``) and
provide a ``store_factory`` fixture: a zero-argument callable returning (an awaitable of) a fresh,
empty store. Every test gets its own store and closes it::

    import pytest
    from eventkit import InMemoryEventStore
    from eventkit.testing.contract import EventStoreContract

    class TestMyStore(EventStoreContract):
        @pytest.fixture
        def store_factory(self):
            return lambda: InMemoryEventStore(stream="contract")

The tests need pytest-asyncio (``asyncio_mode = "auto"``). eventkit runs this suite on both the
in-memory and the JetStream store, so a store that passes behaves like them: the same sequence
numbering, expectations, duplicate detection by event id, and errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from eventkit.domain.aggregate import Aggregate
from eventkit.domain.events import Event, registry
from eventkit.domain.handlers import on
from eventkit.errors import (
    AggregateNotFound,
    ConcurrencyError,
    ConfigError,
    EventDecodeError,
    EventTooLargeError,
    InvalidSubjectError,
    UnknownEventTypeError,
)
from eventkit.store.base import EventStore, Write

__all__ = [
    "ContractDeposited",
    "ContractNoted",
    "ContractTally",
    "EventStoreContract",
    "swapped_event_class",
]


class ContractDeposited(Event):
    """An event of the contract suite."""

    event_type: ClassVar[str] = "eventkit.contract.Deposited"
    amount: int


class ContractNoted(Event):
    """An event of the contract suite with a free-text payload."""

    event_type: ClassVar[str] = "eventkit.contract.Noted"
    text: str


class _PriceV1(Event):
    event_type: ClassVar[str] = "eventkit.contract.PriceV1"
    amount: int


class _PriceV2(Event):
    event_type: ClassVar[str] = "eventkit.contract.PriceV2"
    schema_version: ClassVar[int] = 2
    amount: int
    currency: str

    @staticmethod
    def upcast_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "currency": "EUR"}


class _Unregistered(Event):
    event_type: ClassVar[str] = "eventkit.contract.Unregistered"
    n: int


@contextlib.contextmanager
def swapped_event_class(event_type: str, cls: type[Event] | None) -> Iterator[None]:
    """Map ``event_type`` to ``cls`` (None: to nothing) in the process registry for a while.

    For tests that need a stored payload of another shape (upcasting) or an unknown type.
    """
    types = registry._types
    before = types.get(event_type)
    if cls is None:
        types.pop(event_type, None)
    else:
        types[event_type] = cls
    try:
        yield
    finally:
        if before is None:
            types.pop(event_type, None)
        else:
            types[event_type] = before


class ContractTally(Aggregate):
    """An aggregate of the contract suite (subject ``<stream>.contract.<id>``)."""

    aggregate_type = "contract"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.total = 0

    @on(ContractDeposited)
    def _deposited(self, e: ContractDeposited) -> None:
        self.total += e.amount


def _deposits(*amounts: int) -> list[Event]:
    return [ContractDeposited(amount=a) for a in amounts]


class EventStoreContract:
    """The behaviour both eventkit stores share; subclass it with a ``store_factory`` fixture."""

    @pytest.fixture
    def store_factory(self) -> Callable[[], Any]:
        raise NotImplementedError("provide a store_factory fixture returning a fresh empty store")

    @pytest.fixture
    async def store(self, store_factory: Callable[[], Any]) -> AsyncIterator[EventStore]:
        made = store_factory()
        store: EventStore = await made if inspect.isawaitable(made) else made
        try:
            yield store
        finally:
            await store.close()

    @staticmethod
    def subject(store: EventStore, entity: str | None = None) -> str:
        return f"{store.stream}.contract.{entity or uuid.uuid4().hex[:12]}"

    # -- appending ------------------------------------------------------------------------
    async def test_append_returns_stream_sequences_from_one(self, store: EventStore) -> None:
        a, b = self.subject(store), self.subject(store)
        assert await store.append(a, _deposits(1), expected_sequence=0) == 1
        assert await store.append(b, _deposits(2, 3), expected_sequence=0) == 3
        assert await store.append(a, _deposits(4), expected_sequence=1) == 4
        assert await store.last_sequence() == 4

    async def test_an_aggregate_as_of_a_sequence_or_a_time(self, store: EventStore) -> None:
        from eventkit.store.repository import Repository

        repo = Repository(store, ContractTally)
        subject = repo.subject("t-1")
        first = await store.append(subject, _deposits(1, 2), expected_sequence=0)
        await asyncio.sleep(0.01)  # the next append gets a later server time
        await store.append(subject, _deposits(10), expected_sequence=first)
        assert (await repo.load("t-1")).total == 13
        then = await repo.load("t-1", as_of_sequence=first)
        assert (then.total, then.version) == (3, first)
        assert (await repo.load("t-1", as_of_sequence=first - 1)).total == 1
        stored = await store.read(subject)
        assert (await repo.load("t-1", as_of_time=stored[1].time)).total == 3
        assert (await repo.load("t-1", as_of_time=stored[2].time)).total == 13
        with pytest.raises(AggregateNotFound):
            await repo.load("t-1", as_of_time=stored[0].time - timedelta(seconds=1))
        with pytest.raises(ConfigError, match="aware"):
            await repo.load("t-1", as_of_time=datetime(2026, 1, 1))

    async def test_read_gives_events_in_order_with_metadata(self, store: EventStore) -> None:
        s = self.subject(store, "e-1")
        ids = [str(uuid.uuid4()) for _ in range(3)]
        before = datetime.now(UTC) - timedelta(seconds=5)
        await store.append(s, _deposits(1, 2, 3), expected_sequence=0, event_ids=ids)
        records = await store.read(s)
        assert [r.event for r in records] == _deposits(1, 2, 3)
        assert [r.sequence for r in records] == [1, 2, 3]
        assert [r.event_id for r in records] == ids
        r = records[0]
        assert (r.subject, r.entity_id, r.event_type, r.schema_version) == (
            s,
            "e-1",
            "eventkit.contract.Deposited",
            1,
        )
        assert r.time.tzinfo is not None and before <= r.time <= datetime.now(UTC) + timedelta(
            seconds=5
        )

    async def test_read_after_skips_earlier_events(self, store: EventStore) -> None:
        s = self.subject(store)
        await store.append(s, _deposits(1, 2, 3, 4))
        assert [r.event for r in await store.read(s, after=2)] == _deposits(3, 4)
        assert await store.read(s, after=4) == []

    async def test_read_of_subject_without_events_is_empty(self, store: EventStore) -> None:
        assert await store.read(self.subject(store)) == []

    async def test_stale_expectation_raises_with_actual_and_stores_nothing(
        self, store: EventStore
    ) -> None:
        s, other = self.subject(store), self.subject(store)
        await store.append(other, _deposits(9))
        await store.append(s, _deposits(1), expected_sequence=0)
        with pytest.raises(ConcurrencyError) as info:
            await store.append(s, _deposits(2), expected_sequence=0)
        assert (info.value.subject, info.value.expected, info.value.actual) == (s, 0, 2)
        assert [r.event for r in await store.read(s)] == _deposits(1)

    async def test_conflicting_multi_event_append_stores_none(self, store: EventStore) -> None:
        s = self.subject(store)
        await store.append(s, _deposits(1), expected_sequence=0)
        with pytest.raises(ConcurrencyError) as info:
            await store.append(s, _deposits(*range(10)), expected_sequence=0)
        assert info.value.actual == 1
        assert len(await store.read(s)) == 1
        assert await store.last_sequence() == 1

    async def test_expected_none_skips_the_check(self, store: EventStore) -> None:
        s = self.subject(store)
        await store.append(s, _deposits(1))
        assert await store.append(s, _deposits(2)) == 2

    async def test_retried_single_append_stores_once(self, store: EventStore) -> None:
        s = self.subject(store)
        ids = [str(uuid.uuid4())]
        first = await store.append(s, _deposits(1), expected_sequence=0, event_ids=ids)
        # the same call again: its expectation is stale now, yet it is the same append
        again = await store.append(s, _deposits(1), expected_sequence=0, event_ids=ids)
        assert again == first
        assert len(await store.read(s)) == 1

    async def test_retried_batch_append_stores_once(self, store: EventStore) -> None:
        s = self.subject(store)
        ids = [str(uuid.uuid4()) for _ in range(5)]
        first = await store.append(s, _deposits(*range(5)), expected_sequence=0, event_ids=ids)
        again = await store.append(s, _deposits(*range(5)), expected_sequence=0, event_ids=ids)
        assert again == first == 5
        assert len(await store.read(s)) == 5

    async def test_reused_event_ids_in_a_new_append_are_refused(self, store: EventStore) -> None:
        s = self.subject(store)
        old = str(uuid.uuid4())
        await store.append(s, _deposits(1), event_ids=[old])
        with pytest.raises(ConfigError, match="stored already"):
            await store.append(s, _deposits(2, 3), event_ids=[old, str(uuid.uuid4())])
        assert len(await store.read(s)) == 1

    async def test_boundary_expectation_covers_every_matching_subject(
        self, store: EventStore
    ) -> None:
        group = f"{store.stream}.room.{uuid.uuid4().hex[:8]}"
        a, b = f"{group}.a", f"{group}.b"
        await store.append(a, _deposits(1))
        seen = await store.last_sequence(f"{group}.>")
        await store.append(b, _deposits(2), expected_sequence=seen, boundary=f"{group}.>")
        with pytest.raises(ConcurrencyError) as info:
            await store.append(a, _deposits(3), expected_sequence=seen, boundary=f"{group}.>")
        assert info.value.actual == seen + 1
        assert len(await store.read(a)) == 1

    async def test_append_many_is_atomic_across_subjects(self, store: EventStore) -> None:
        a, b = self.subject(store), self.subject(store)
        await store.append(b, _deposits(1))
        with pytest.raises(ConcurrencyError) as info:
            await store.append_many(
                [Write(a, _deposits(2, 3), expected_sequence=0), Write(b, _deposits(4), 0)]
            )
        assert info.value.subject == b
        assert await store.read(a) == []
        lasts = await store.append_many(
            [Write(a, _deposits(2, 3), expected_sequence=0), Write(b, _deposits(4), 1)]
        )
        assert lasts == [3, 4]

    async def test_bad_appends_are_refused_before_storing(self, store: EventStore) -> None:
        s = self.subject(store)
        with pytest.raises(ConfigError):
            await store.append(s, [])
        with pytest.raises(ConfigError, match="at most 1000"):
            await store.append(s, _deposits(*range(1001)))
        with pytest.raises(ConfigError, match="twice"):
            await store.append_many([Write(s, _deposits(1)), Write(s, _deposits(2))])
        with pytest.raises(ConfigError):
            await store.append(s, _deposits(1), expected_sequence=-1)
        with pytest.raises(ConfigError, match="list of events"):
            await store.append(s, ContractDeposited(amount=1))  # type: ignore[arg-type]
        assert await store.last_sequence() == 0

    @pytest.mark.parametrize(
        ("subject", "rule"),
        [
            ("{stream}.contract.a b", "whitespace"),
            ("{stream}.contract.*", "'\\*'"),
            ("{stream}..x", "empty"),
            ("other.contract.x", "outside the stream"),
            ("{stream}.contract.>", "'>'"),
        ],
    )
    async def test_invalid_subjects_are_refused(
        self, store: EventStore, subject: str, rule: str
    ) -> None:
        subject = subject.format(stream=store.stream)
        with pytest.raises(InvalidSubjectError, match=rule):
            await store.append(subject, _deposits(1))
        with pytest.raises(InvalidSubjectError):
            await store.read(subject)
        assert await store.last_sequence() == 0

    async def test_oversized_event_is_refused_and_nothing_stored(self, store: EventStore) -> None:
        s = self.subject(store)
        big = ContractNoted(text="x" * (2 * 1024 * 1024))
        with pytest.raises(EventTooLargeError) as info:
            await store.append(s, [ContractNoted(text="small"), big])
        assert info.value.size > info.value.limit
        with pytest.raises(EventTooLargeError):
            await store.append(s, [big])
        assert await store.last_sequence() == 0

    # -- reading --------------------------------------------------------------------------
    async def test_read_all_from_sequence_time_and_filters(self, store: EventStore) -> None:
        a, b = self.subject(store), self.subject(store)
        await store.append(a, _deposits(1, 2))
        await asyncio.sleep(0.05)
        middle = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await store.append(b, _deposits(3))
        await store.append(a, _deposits(4))
        everything = [r.sequence async for r in store.read_all()]
        assert everything == [1, 2, 3, 4]
        assert [r.sequence async for r in store.read_all(from_sequence=3)] == [3, 4]
        assert [r.sequence async for r in store.read_all(from_time=middle)] == [3, 4]
        assert [r.sequence async for r in store.read_all(subjects=[a])] == [1, 2, 4]
        both = [r.sequence async for r in store.read_all(from_sequence=2, subjects=[a, b])]
        assert both == [2, 3, 4]
        later = datetime.now(UTC) + timedelta(seconds=60)
        assert [r async for r in store.read_all(from_time=later)] == []
        with pytest.raises(ConfigError):
            [r async for r in store.read_all(from_time=datetime(2026, 1, 1))]
        with pytest.raises(ConfigError):
            [r async for r in store.read_all(from_sequence=0)]

    async def test_last_sequence_of_subject_filter_and_stream(self, store: EventStore) -> None:
        group = f"{store.stream}.room.{uuid.uuid4().hex[:8]}"
        await store.append(f"{group}.a", _deposits(1, 2))
        await store.append(f"{group}.b", _deposits(3))
        await store.append(f"{group}.a", _deposits(4))
        await store.append(self.subject(store), _deposits(5))
        assert await store.last_sequence(f"{group}.a") == 4
        assert await store.last_sequence(f"{group}.b") == 3
        assert await store.last_sequence(f"{group}.*") == 4
        assert await store.last_sequence(f"{group}.none") == 0
        assert await store.last_sequence() == 5

    async def test_get_and_delete(self, store: EventStore) -> None:
        s = self.subject(store)
        await store.append(s, _deposits(1, 2, 3))
        got = await store.get(2)
        assert got is not None and got.subject == s and got.sequence == 2
        assert await store.delete(2) is True
        assert await store.delete(2) is False
        assert await store.get(2) is None
        assert [r.sequence for r in await store.read(s)] == [1, 3]
        assert [m.sequence async for m in store.read_raw(s)] == [1, 3]

    async def test_unknown_event_type_on_read(self, store: EventStore) -> None:
        s = self.subject(store)
        await store.append(s, [_Unregistered(n=1)])
        with (
            swapped_event_class(_Unregistered.event_type, None),
            pytest.raises(UnknownEventTypeError) as info,
        ):
            await store.read(s)
        assert info.value.event_type == _Unregistered.event_type
        assert info.value.subject == s and info.value.sequence == 1

    async def test_payload_that_does_not_match_the_class(self, store: EventStore) -> None:
        s = self.subject(store)
        await store.append(s, [_Unregistered(n=1)])
        with (
            swapped_event_class(_Unregistered.event_type, ContractNoted),
            pytest.raises(EventDecodeError, match="does not match"),
        ):
            await store.read(s)

    async def test_old_payload_is_upcast_on_read(self, store: EventStore) -> None:
        s = self.subject(store)
        # a payload stored at v1 under the type name the v2 class reads
        _PriceV1.event_type = _PriceV2.event_type
        try:
            await store.append(s, [_PriceV1(amount=7)])
        finally:
            _PriceV1.event_type = "eventkit.contract.PriceV1"
        (r,) = await store.read(s)
        assert r.event == _PriceV2(amount=7, currency="EUR")
        assert r.schema_version == 1

    # -- the hash chain -------------------------------------------------------------------
    async def test_every_append_is_chained_and_erasing_one_keeps_it_verifiable(
        self, store: EventStore
    ) -> None:
        from eventkit.store.base import Write
        from eventkit.store.chain import ChainCheck

        s, t = self.subject(store), self.subject(store)
        await store.append(s, _deposits(1), expected_sequence=0)
        await store.append(s, _deposits(2))
        await store.append_many([Write(s, _deposits(3, 4), 2), Write(t, _deposits(5))])
        await store.delete(3)  # its links are kept, so the rest still verifies
        await store.append(s, _deposits(6))
        assert [r.event.amount for r in await store.read(s)] == [1, 2, 4, 6]
        check = ChainCheck(erased={})
        messages = [m async for m in store.read_raw(s)] + [m async for m in store.read_raw(t)]
        for m in messages:
            check.check(m)
        # without the erasure records the gap shows at 4; read() above found them and bridged it
        assert check.chained == 5 and [x.sequence for x in check.problems] == [4]
