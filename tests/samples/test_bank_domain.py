"""The bank's domain rules, on the in-memory store (no server)."""

from __future__ import annotations

import pytest

from eventkit import AggregateNotFound, ConcurrencyError, InMemoryEventStore, Repository
from samples.bank.domain import (
    Account,
    AccountOpened,
    Customer,
    InsufficientFunds,
    MoneyDeposited,
    TransferReceived,
    TransferSent,
)


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore(stream="bank")


async def opened(store: InMemoryEventStore, id: str, balance: int = 0) -> Account:
    acct = Account(id)
    acct.open(f"c-{id}")
    if balance:
        acct.deposit(balance)
    await Repository(store, Account).save(acct)
    return acct


async def test_withdrawing_more_than_the_balance_raises_and_records_nothing(
    store: InMemoryEventStore,
) -> None:
    acct = await opened(store, "a-1", 100)
    with pytest.raises(InsufficientFunds, match="holds 100, not 101"):
        acct.withdraw(101)
    assert acct.pending == []
    acct.withdraw(100)
    assert acct.balance == 0


async def test_sending_more_than_the_balance_records_nothing_on_either_side(
    store: InMemoryEventStore,
) -> None:
    src, dst = await opened(store, "a-1", 50), await opened(store, "a-2")
    with pytest.raises(InsufficientFunds):
        src.send("t-1", dst, 51)
    assert src.pending == [] and dst.pending == []
    assert (src.balance, dst.balance) == (50, 0)


async def test_a_transfer_records_both_sides_and_save_all_stores_them_together(
    store: InMemoryEventStore,
) -> None:
    accounts = Repository(store, Account)
    src, dst = await opened(store, "a-1", 80), await opened(store, "a-2", 5)
    src.send("t-1", dst, 30)
    assert src.pending == [TransferSent(transfer_id="t-1", to_account="a-2", amount=30)]
    assert dst.pending == [TransferReceived(transfer_id="t-1", from_account="a-1", amount=30)]
    await accounts.save_all([src, dst])
    assert dst.version == src.version + 1  # one batch, stored contiguously
    src, dst = await accounts.load("a-1"), await accounts.load("a-2")
    assert (src.balance, dst.balance) == (50, 35)
    sent = [r.event for r in await store.read("bank.account.a-1")]
    received = [r.event for r in await store.read("bank.account.a-2")]
    assert isinstance(sent[-1], TransferSent) and isinstance(received[-1], TransferReceived)


async def test_a_transfer_with_one_stale_side_stores_nothing(store: InMemoryEventStore) -> None:
    accounts = Repository(store, Account)
    await opened(store, "a-1", 80)
    await opened(store, "a-2")
    src, dst = await accounts.load("a-1"), await accounts.load("a-2")
    await accounts.update("a-2", lambda a: a.deposit(1))  # a-2 moves on after it was loaded
    before = await store.last_sequence("bank.account.a-1")
    src.send("t-1", dst, 30)
    with pytest.raises(ConcurrencyError) as caught:
        await accounts.save_all([src, dst])
    assert caught.value.subject == "bank.account.a-2"
    assert await store.last_sequence("bank.account.a-1") == before
    assert (await accounts.load("a-1")).balance == 80


async def test_a_transfer_to_the_same_account_or_of_a_non_positive_amount_is_refused(
    store: InMemoryEventStore,
) -> None:
    src, dst = await opened(store, "a-1", 80), await opened(store, "a-2")
    with pytest.raises(ValueError, match="same account"):
        src.send("t-1", src, 10)
    for amount in (0, -5):
        with pytest.raises(ValueError, match="positive"):
            src.send("t-1", dst, amount)
        with pytest.raises(ValueError, match="positive"):
            src.deposit(amount)
        with pytest.raises(ValueError, match="positive"):
            src.withdraw(amount)
    assert src.pending == [] and dst.pending == []


async def test_opening_an_account_twice_is_refused_by_the_aggregate_and_by_the_store(
    store: InMemoryEventStore,
) -> None:
    accounts = Repository(store, Account)
    acct = await opened(store, "a-1")
    with pytest.raises(ValueError, match="already open"):
        acct.open("c-2")
    loaded = await accounts.load("a-1")
    with pytest.raises(ValueError, match="already open"):
        loaded.open("c-2")
    # a fresh instance does not know the account exists: the store's expectation (0) catches it
    again = Account("a-1")
    again.open("c-2")
    with pytest.raises(ConcurrencyError) as caught:
        await accounts.save(again)
    assert (caught.value.expected, caught.value.actual) == (0, acct.version)
    assert [r.event_type for r in await store.read("bank.account.a-1")] == ["AccountOpened"]


async def test_opening_with_a_deposit_is_one_append_of_two_events(
    store: InMemoryEventStore,
) -> None:
    acct = await opened(store, "a-1", 40)
    records = await store.read("bank.account.a-1")
    assert [r.event for r in records] == [
        AccountOpened(customer_id="c-a-1"),
        MoneyDeposited(amount=40),
    ]
    assert acct.version == records[-1].sequence == 2


async def test_customers_are_registered_once_with_a_valid_email(
    store: InMemoryEventStore,
) -> None:
    people = Repository(store, Customer)
    c = Customer("c-1")
    with pytest.raises(ValueError, match="not an email"):
        c.register("Ada", "ada.example.com")
    c.register("Ada", "ada@example.com")
    with pytest.raises(ValueError, match="already registered"):
        c.register("Ada", "ada@example.com")
    await people.save(c)
    c = await people.load("c-1")
    c.change_email("mira@example.org")
    with pytest.raises(ValueError, match="not an email"):
        c.change_email("nope")
    await people.save(c)
    assert (await people.load("c-1")).email == "mira@example.org"
    assert Customer.personal_data is True


async def test_an_account_with_no_events_is_not_found(store: InMemoryEventStore) -> None:
    with pytest.raises(AggregateNotFound):
        await Repository(store, Account).load("a-none")
