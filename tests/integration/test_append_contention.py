"""Appends without an expected sequence under contention, on a real nats-server: other writers
appending to the same subject is never a reason for one to fail, a conflict is never reported
as the store being unavailable, and a forgotten subject still refuses every one of them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from eventkit.errors import ConcurrencyError, ForgottenError, OvertakenError, StoreUnavailableError
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.testing.contract import ContractDeposited

pytestmark = pytest.mark.nats


def deposit(n: int) -> list[Any]:
    return [ContractDeposited(amount=n)]


async def test_200_concurrent_appends_to_one_subject_all_stored(
    store: JetStreamEventStore,
) -> None:
    subject = f"{store.stream}.acct.shared"
    results = await asyncio.gather(
        *(store.append(subject, deposit(i)) for i in range(200)), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    assert failed == []
    assert len(set(results)) == 200  # each got a sequence of its own
    stored = await store.read(subject)
    assert sorted(r.event.amount for r in stored) == list(range(200))
    assert [r.sequence for r in stored] == sorted(results)  # type: ignore[type-var]


async def test_concurrent_appends_from_several_connections_all_stored(
    store: JetStreamEventStore, nats_url: str
) -> None:
    # four processes' worth of writers (one connection each), 50 appends at once from each
    others = [await JetStreamEventStore.connect(nats_url, stream=store.stream) for _ in range(4)]
    subject = f"{store.stream}.acct.shared"
    try:
        results = await asyncio.gather(
            *(
                s.append(subject, deposit(100 * k + i))
                for k, s in enumerate(others)
                for i in range(50)
            ),
            return_exceptions=True,
        )
    finally:
        for s in others:
            await s.close()
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert len(await store.read(subject)) == 200


async def test_an_overtaken_append_is_sent_again_and_past_its_budget_is_a_conflict(
    store: JetStreamEventStore, nats_url: str
) -> None:
    subject = f"{store.stream}.acct.raced"
    rival = await JetStreamEventStore.connect(nats_url, stream=store.stream)
    try:
        await store.append(subject, deposit(0))
        tails = store.tails

        async def overtaken(subjects: Any) -> Any:
            # another writer appends right after this one read the subject's last message
            found = await tails(subjects)
            await rival.append(subject, deposit(-1))
            return found

        store.tails = overtaken  # type: ignore[method-assign]
        store.retry_for = 5.0
        with pytest.raises(OvertakenError) as caught:
            await store.append(subject, deposit(1))
        assert isinstance(caught.value, ConcurrencyError)
        assert not isinstance(caught.value, StoreUnavailableError)
        assert caught.value.tries > 3 and "without an expected sequence" in str(caught.value)
        assert 1 not in [r.event.amount for r in await store.read(subject)]  # nothing stored

        # overtaken once only: the second try is stored
        once = iter([True])

        async def overtaken_once(subjects: Any) -> Any:
            found = await tails(subjects)
            if next(once, False):
                await rival.append(subject, deposit(-2))
            return found

        store.tails = overtaken_once  # type: ignore[method-assign]
        seq = await store.append(subject, deposit(2))
        last = (await store.read(subject))[-1]
        assert (last.sequence, last.event.amount) == (seq, 2)
    finally:
        await rival.close()


async def test_a_subject_forgotten_amid_concurrent_appends_refuses_the_rest(
    store: JetStreamEventStore, nats_url: str
) -> None:
    subject = f"{store.stream}.person.p-1"
    other = await JetStreamEventStore.connect(nats_url, stream=store.stream)
    try:
        await store.append(subject, deposit(0))

        async def writer(s: JetStreamEventStore, k: int) -> list[str]:
            outcomes = []
            for i in range(40):
                try:
                    await s.append(subject, deposit(k * 1000 + i))
                    outcomes.append("stored")
                except ForgottenError:
                    outcomes.append("forgotten")
            return outcomes

        tasks = [asyncio.create_task(writer(s, k)) for k, s in enumerate([store, other] * 3)]
        await asyncio.sleep(0.05)
        marker = await store.mark_forgotten(subject)
        outcomes = [o for t in await asyncio.gather(*tasks) for o in t]
        assert "forgotten" in outcomes
        after = [m async for m in store.read_raw(subject) if m.sequence > marker]
        assert after == []  # nothing was stored past the marker
        with pytest.raises(ForgottenError):
            await other.append(subject, deposit(-1))
    finally:
        await other.close()
