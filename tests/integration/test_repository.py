"""Repository on the JetStream store: concurrency, conflicts, lost acks, snapshots."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from faults import LostAcks  # type: ignore[import-not-found]

from eventkit import Aggregate, AggregateNotFound, ConcurrencyError, Event, Repository, on
from eventkit.store.jetstream import JetStreamEventStore

pytestmark = pytest.mark.nats


class RepoOpened(Event):
    event_type: ClassVar[str] = "tests.repo.Opened"
    owner: str


class RepoDeposited(Event):
    event_type: ClassVar[str] = "tests.repo.Deposited"
    amount: int


class Account(Aggregate):
    aggregate_type = "account"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.owner = ""
        self.balance = 0
        self.deposits = 0

    def open(self, owner: str) -> None:
        self.record(RepoOpened(owner=owner))

    def deposit(self, amount: int) -> None:
        self.record(RepoDeposited(amount=amount))

    @on(RepoOpened)
    def _opened(self, e: RepoOpened) -> None:
        self.owner = e.owner

    @on(RepoDeposited)
    def _deposited(self, e: RepoDeposited) -> None:
        self.balance += e.amount
        self.deposits += 1


class SnapAccount(Account):
    aggregate_type = "snapaccount"
    snapshot_every = 10


@pytest.mark.slow
async def test_concurrent_updates_give_the_exact_sum(store: JetStreamEventStore) -> None:
    accounts = Repository(store, Account)
    acct = Account("a-1")
    acct.open("ada")
    await accounts.save(acct)
    versions: list[list[int]] = [[] for _ in range(8)]

    def depositing(amount: int) -> Callable[[Account], None]:
        return lambda a: a.deposit(amount)

    async def worker(n: int) -> None:
        for i in range(50):
            saved = await accounts.update("a-1", depositing(n * 100 + i + 1), retries=1000)
            versions[n].append(saved.version)

    await asyncio.gather(*(worker(n) for n in range(8)))
    loaded = await accounts.load("a-1")
    expected = sum(n * 100 + i + 1 for n in range(8) for i in range(50))
    assert (loaded.balance, loaded.deposits) == (expected, 400)
    for per_task in versions:  # each task sees its own saves at strictly increasing versions
        assert per_task == sorted(per_task) and len(set(per_task)) == 50
    every = sorted(v for per_task in versions for v in per_task)
    stored = [r.sequence for r in await store.read(accounts.subject("a-1"))]
    assert every == stored[1:] and len(set(every)) == 400
    assert loaded.version == stored[-1]


async def test_stale_save_raises_with_the_actual_sequence(store: JetStreamEventStore) -> None:
    accounts = Repository(store, Account)
    a = Account("a-1")
    a.open("ada")
    await accounts.save(a)
    first, second = await accounts.load("a-1"), await accounts.load("a-1")
    first.deposit(1)
    await accounts.save(first)
    second.deposit(2)
    with pytest.raises(ConcurrencyError) as info:
        await accounts.save(second)
    assert (info.value.subject, info.value.expected, info.value.actual) == (
        accounts.subject("a-1"),
        1,
        2,
    )
    assert second.pending  # kept, with their ids, for a retry by the caller
    assert (await accounts.load("a-1")).balance == 1


async def test_conflicting_ten_event_save_stores_none(store: JetStreamEventStore) -> None:
    accounts = Repository(store, Account)
    a = Account("a-1")
    a.open("ada")
    await accounts.save(a)
    stale = await accounts.load("a-1")
    fresh = await accounts.load("a-1")
    fresh.deposit(1)
    await accounts.save(fresh)
    for i in range(10):
        stale.deposit(i + 1)
    with pytest.raises(ConcurrencyError) as info:
        await accounts.save(stale)
    assert info.value.actual == 2
    assert len(await store.read(accounts.subject("a-1"))) == 2
    assert await store.last_sequence() == 2


@pytest.mark.parametrize("events", [1, 10])
async def test_save_retried_after_lost_ack_stores_once(lossy: LostAcks, events: int) -> None:
    accounts = Repository(lossy, Account)
    a = Account("a-1")
    a.open("ada")
    await accounts.save(a)
    for i in range(events):
        a.deposit(i + 1)
    lossy.lose = 1
    await accounts.save(a)
    assert a.version == 1 + events and not a.pending
    records = await lossy.read(accounts.subject("a-1"))
    assert len(records) == 1 + events
    assert len({r.event_id for r in records}) == 1 + events
    assert (await accounts.load("a-1")).balance == sum(range(1, events + 1))


async def test_save_retried_by_the_caller_with_a_stale_version_stores_once(
    store: JetStreamEventStore,
) -> None:
    accounts = Repository(store, Account)
    a = Account("a-1")
    a.open("ada")
    a.deposit(5)
    ids = list(a.pending_ids)
    await accounts.save(a)
    again = Account("a-1")  # the caller lost the answer and retries the same events
    again.open("ada")
    again.deposit(5)
    again.pending_ids[:] = ids
    await accounts.save(again)
    assert again.version == 2
    assert len(await store.read(accounts.subject("a-1"))) == 2


async def test_load_of_unknown_aggregate_raises(store: JetStreamEventStore) -> None:
    with pytest.raises(AggregateNotFound, match=r"account\.nobody"):
        await Repository(store, Account).load("nobody")


async def test_update_with_create_and_async_command(store: JetStreamEventStore) -> None:
    accounts = Repository(store, Account)

    async def open_it(a: Account) -> None:
        a.open("bob")

    a = await accounts.update("b-1", open_it, create=True)
    assert (a.owner, a.version) == ("bob", 1)
    with pytest.raises(AggregateNotFound):
        await accounts.update("b-2", open_it)


async def test_snapshot_load_equals_full_replay(store: JetStreamEventStore) -> None:
    accounts = Repository(store, SnapAccount)
    a = SnapAccount("s-1")
    a.open("ada")
    for i in range(34):
        a.deposit(i + 1)
        await accounts.save(a)
    subject = accounts.subject("s-1")
    snap = await store.snapshots.get(subject)
    assert snap is not None and 0 < snap.version <= a.version
    reads: list[int] = []
    real_read = store.read

    async def spy(subject: str, after: int = 0) -> Any:
        reads.append(after)
        return await real_read(subject, after)

    store.read = spy  # type: ignore[method-assign]
    loaded = await accounts.load("s-1")
    store.read = real_read  # type: ignore[method-assign]
    assert reads == [snap.version]  # only the events after the snapshot were read
    replayed = SnapAccount("s-1")
    for r in await store.read(subject):
        replayed.apply(r.event)
    replayed.version = (await store.read(subject))[-1].sequence
    assert loaded.snapshot_state() == replayed.snapshot_state()
    assert loaded.version == replayed.version
    assert (loaded.balance, loaded.deposits, loaded.version) == (595, 34, 35)


async def test_save_all_snapshots_each_aggregate_when_one_is_due(
    store: JetStreamEventStore,
) -> None:
    accounts = Repository(store, SnapAccount)
    a, b = SnapAccount("sa-1"), SnapAccount("sa-2")
    a.open("a")
    b.open("b")
    for i in range(12):
        a.deposit(i + 1)
        b.deposit(1)
        await accounts.save_all([a, b])
    for agg in (a, b):
        snap = await store.snapshots.get(accounts.subject(agg.id))
        assert snap is not None and 0 < snap.version <= agg.version
        assert (await accounts.load(agg.id)).balance == agg.balance


async def test_snapshot_of_a_changed_shape_is_ignored(store: JetStreamEventStore) -> None:
    accounts = Repository(store, SnapAccount)
    a = SnapAccount("s-1")
    a.open("ada")
    for i in range(12):
        a.deposit(i + 1)
    await accounts.save(a)
    assert await store.snapshots.get(accounts.subject("s-1")) is not None

    class Reshaped(SnapAccount):  # the same aggregate type, with one more attribute
        aggregate_type = "snapaccount"

        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.currency = "EUR"

    restored: list[dict[str, Any]] = []
    real_restore = Reshaped.restore_state

    def spy(self: Reshaped, state: dict[str, Any]) -> None:
        restored.append(state)
        real_restore(self, state)

    Reshaped.restore_state = spy  # type: ignore[method-assign, assignment]
    loaded = await Repository(store, Reshaped).load("s-1")
    assert restored == []  # the stale snapshot was not used
    assert (loaded.balance, loaded.deposits, loaded.currency) == (78, 12, "EUR")


async def test_snapshot_failure_does_not_fail_the_save(store: JetStreamEventStore) -> None:
    class Odd(SnapAccount):
        aggregate_type = "odd"

        def snapshot_state(self) -> dict[str, Any]:
            return {"not json": {1, 2}}

    repo = Repository(store, Odd)
    a = Odd("o-1")
    for i in range(12):
        a.deposit(i)
    await repo.save(a)
    assert a.version == 12 and not a.pending
    assert (await repo.load("o-1")).deposits == 12
