"""Reactors on a real nats-server: delivery, derived ids, parking, retries, deadlines."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from eventkit import Event, JetStreamEventStore, RecordedEvent, Write, on
from eventkit.reaction import (
    ConsumerChangedError,
    Reactor,
    ReactorContext,
    ReactorRunner,
    derived_id,
    reset_consumer,
)
from eventkit.reaction.context import CAUSATION, CORRELATION
from eventkit.reaction.schedule import request_retry
from eventkit.runtime.parked import ParkedLetters

pytestmark = pytest.mark.nats


class RtPing(Event):
    n: int


class RtPong(Event):
    n: int


class RtDue(Event):
    n: int


async def append_pings(store: JetStreamEventStore, ns: range, entity: str = "e") -> None:
    for n in ns:
        await store.append(f"{store.stream}.ping.{entity}{n % 3}", [RtPing(n=n)])


async def pongs(store: JetStreamEventStore) -> list[RecordedEvent[Any]]:
    return [r async for r in store.read_all(subjects=[f"{store.stream}.pong.>"])]


def reactor_class(**attrs: Any) -> type[Reactor]:
    seen: list[int] = attrs.pop("seen", [])

    async def got_ping(
        self: Reactor, e: RtPing, rec: RecordedEvent[Any], ctx: ReactorContext
    ) -> None:
        seen.append(e.n)
        await ctx.append(f"{rec.subject.split('.')[0]}.pong.{rec.entity_id}", [RtPong(n=e.n)])

    body: dict[str, Any] = {"got_ping": on(RtPing)(got_ping), **attrs}
    body.setdefault("name", "pinger")
    body.setdefault("subjects", [])
    return type("Pinger", (Reactor,), body)


async def test_each_event_gets_one_output_with_derived_id_and_headers(
    store: JetStreamEventStore,
) -> None:
    await append_pings(store, range(10))
    cls = reactor_class(subjects=[f"{store.stream}.ping.>"])
    stats = await ReactorRunner(cls(), store).catch_up()
    out = await pongs(store)
    assert sorted(r.event.n for r in out) == list(range(10))
    assert stats.handled == 10
    pings = [r async for r in store.read_all(subjects=[f"{store.stream}.ping.>"])]
    by_n = {r.event.n: r for r in pings}
    for r in out:
        cause = by_n[r.event.n].event_id
        assert r.event_id == derived_id("pinger", cause, 0)
        assert r.headers[CAUSATION] == cause
        assert r.headers[CORRELATION] == cause
    # a second run has nothing left to do
    assert (await ReactorRunner(cls(), store).catch_up()).handled == 0


async def test_redelivery_after_output_stores_nothing_twice(store: JetStreamEventStore) -> None:
    await append_pings(store, range(3))
    cls = reactor_class(subjects=[f"{store.stream}.ping.>"], name="dup")
    r = cls()
    recs = [x async for x in store.read_all()]
    for rec in recs:  # the handler ran once, the worker died before the ack
        await r.handle(rec, ReactorContext("dup", rec, store))
    await ReactorRunner(r, store).catch_up()  # every event is delivered (again)
    assert sorted(x.event.n for x in await pongs(store)) == [0, 1, 2]


@pytest.mark.parametrize(
    ("policy", "extra", "expected"),
    [
        ("all", {}, list(range(9))),
        ("last", {}, [8]),
        ("last_per_subject", {}, [6, 7, 8]),
        ("by_start_sequence", {"start_sequence": 5}, [4, 5, 6, 7, 8]),
    ],
)
async def test_deliver_policies(
    store: JetStreamEventStore, policy: str, extra: dict[str, Any], expected: list[int]
) -> None:
    await append_pings(store, range(9))
    seen: list[int] = []
    cls = reactor_class(
        subjects=[f"{store.stream}.ping.>"], deliver_policy=policy, seen=seen, **extra
    )
    await ReactorRunner(cls(), store).catch_up()
    assert sorted(seen) == expected


async def test_deliver_new_and_by_start_time(store: JetStreamEventStore) -> None:
    await append_pings(store, range(3))
    await asyncio.sleep(0.05)
    cut = datetime.now(UTC)
    await asyncio.sleep(0.05)
    await append_pings(store, range(3, 5))
    seen_time: list[int] = []
    by_time = reactor_class(
        subjects=[f"{store.stream}.ping.>"],
        name="bytime",
        deliver_policy="by_start_time",
        start_time=cut,
        seen=seen_time,
    )
    await ReactorRunner(by_time(), store).catch_up()
    assert sorted(seen_time) == [3, 4]
    seen_delta: list[int] = []
    by_delta = reactor_class(
        subjects=[f"{store.stream}.ping.>"],
        name="bydelta",
        deliver_policy="by_start_time",
        start_at_time_delta=timedelta(hours=1),
        seen=seen_delta,
    )
    await ReactorRunner(by_delta(), store).catch_up()
    assert sorted(seen_delta) == [0, 1, 2, 3, 4]
    seen_new: list[int] = []
    new = reactor_class(
        subjects=[f"{store.stream}.ping.>"], name="new", deliver_policy="new", seen=seen_new
    )
    await ReactorRunner(new(), store).catch_up()  # creates the consumer at the end
    await append_pings(store, range(5, 7))
    await ReactorRunner(new(), store).catch_up()
    assert sorted(seen_new) == [5, 6]


class Poison(Reactor):
    name = "poison"
    max_deliver = 2
    backoff: ClassVar[list[float]] = [0.05]
    ack_wait = 2.0
    broken: ClassVar[bool] = True
    seen: ClassVar[list[int]] = []

    @on(RtPing)
    async def ping(self, e: RtPing, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        if e.n == 1 and Poison.broken:
            raise RuntimeError("bad ping")
        Poison.seen.append(e.n)


async def test_max_deliver_parks_and_dlq_retry_redelivers(store: JetStreamEventStore) -> None:
    Poison.seen.clear()
    Poison.broken = True
    await append_pings(store, range(4))
    stats = await ReactorRunner(Poison(), store).catch_up()
    assert sorted(Poison.seen) == [0, 2, 3]
    assert stats.parked == 1
    letters = await ParkedLetters(store).list("poison")
    assert [(x.name, x.sequence, x.attempts) for x in letters] == [("poison", 2, 2)]
    assert "bad ping" in letters[0].error
    Poison.broken = False
    await request_retry(store, "poison", 2)
    await ReactorRunner(Poison(), store).catch_up()
    assert sorted(Poison.seen) == [0, 1, 2, 3]
    assert await ParkedLetters(store).list("poison") == []


async def test_changed_options_need_a_reset(store: JetStreamEventStore) -> None:
    await append_pings(store, range(2))
    first = reactor_class(name="chg", subjects=[f"{store.stream}.ping.>"])
    await ReactorRunner(first(), store).catch_up()
    updatable = reactor_class(name="chg", subjects=[f"{store.stream}.ping.>"], ack_wait=12.0)
    await ReactorRunner(updatable(), store).catch_up()  # updated in place
    seen: list[int] = []
    moved = reactor_class(
        name="chg", subjects=[f"{store.stream}.ping.>"], deliver_policy="last", seen=seen
    )
    with pytest.raises(ConsumerChangedError, match=r"deliver_policy.*eventkit reactor reset chg"):
        await ReactorRunner(moved(), store).catch_up()
    assert seen == []
    assert await reset_consumer("chg", store)
    await ReactorRunner(moved(), store).catch_up()
    assert seen == [1]


class Timer(Reactor):
    name = "timer"
    fired: ClassVar[list[int]] = []

    @on(RtPing)
    async def ping(self, e: RtPing, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        await ctx.schedule(RtDue(n=e.n), after=timedelta(seconds=1.5))

    @on(RtDue)
    async def due(self, e: RtDue, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        Timer.fired.append(e.n)
        await ctx.append(f"{ctx.store.stream}.pong.t", [RtPong(n=e.n)])


async def catch_up_until(
    store: JetStreamEventStore, done: Any, what: str, timeout: float = 60.0
) -> None:
    """Start a Timer worker, catch up, stop it; again until ``done()`` (a deadline fires when the
    server says so, which a loaded machine may delay past its nominal time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await ReactorRunner(Timer(), store).catch_up()
        if done():
            return
        assert loop.time() < deadline, f"{what} within {timeout}s: {Timer.fired}"
        await asyncio.sleep(0.2)


async def test_deadline_fires_after_worker_restart(store: JetStreamEventStore) -> None:
    Timer.fired.clear()
    await append_pings(store, range(2))
    started = time.monotonic()
    await ReactorRunner(Timer(), store).catch_up()  # schedules; the worker then stops
    if time.monotonic() - started < 1.5:  # (a stalled machine may reach the due time)
        assert Timer.fired == []  # not before it is due
    await catch_up_until(store, lambda: sorted(Timer.fired) == [0, 1], "both deadlines")
    assert sorted(Timer.fired) == [0, 1]
    # deadlines are invisible to plain readers of the stream's events
    types = [r.event_type async for r in store.read_all()]
    assert "RtDue" not in types


async def test_deadline_fires_after_a_server_restart(
    store: JetStreamEventStore, nats_server: Any
) -> None:
    Timer.fired.clear()
    await store.append(f"{store.stream}.ping.s", [RtPing(n=7)])
    await ReactorRunner(Timer(), store).catch_up()  # the schedule is stored
    nats_server.restart()  # before it is due
    await catch_up_until(store, lambda: Timer.fired == [7], "the deadline")
    assert Timer.fired == [7]


class Replayer(Reactor):
    name = "replayer"
    replay_policy = "original"
    seen: ClassVar[list[tuple[float, datetime]]] = []

    @on(RtPing)
    async def ping(self, e: RtPing, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        Replayer.seen.append((asyncio.get_running_loop().time(), rec.time))


async def test_replay_original_keeps_the_streams_timing(store: JetStreamEventStore) -> None:
    Replayer.seen.clear()
    await store.append(f"{store.stream}.ping.r", [RtPing(n=0)])
    await store.append(f"{store.stream}.ping.r", [RtPing(n=1)])
    await asyncio.sleep(1.2)  # a gap in the stored timestamps (measured below, not assumed)
    await store.append(f"{store.stream}.ping.r", [RtPing(n=2)])
    await ReactorRunner(Replayer(), store).catch_up()
    _, (hb, tb), (hc, tc) = Replayer.seen
    stored_gap = (tc - tb).total_seconds()
    assert stored_gap >= 1.2
    # the server holds the third event back for the stored gap (instant replay would hand it
    # over at once); a busy machine only lengthens the wait, and half a second covers a late
    # handling of the second event
    assert hc - hb >= stored_gap - 0.5


class Ordered(Reactor):
    name = "ordered"
    ordered = "subject"
    ack_wait = 2.0
    seen: ClassVar[dict[str, list[int]]] = {}

    @on(RtPing)
    async def ping(self, e: RtPing, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        await asyncio.sleep(0.001 * (e.n % 3))  # later events would overtake earlier ones
        Ordered.seen.setdefault(str(id(self)), []).append(e.n)  # one list per worker


async def test_ordered_by_subject_keeps_order_and_one_worker_receives(
    store: JetStreamEventStore, nats_url: str
) -> None:
    Ordered.seen.clear()
    other = await JetStreamEventStore.connect(nats_url, stream=store.stream)
    runners = [ReactorRunner(Ordered(), s) for s in (store, other)]
    tasks = [asyncio.ensure_future(r.run()) for r in runners]
    try:
        await asyncio.sleep(0.5)
        await store.append_many([Write(f"{store.stream}.ping.o", [RtPing(n=n) for n in range(60)])])
        deadline = asyncio.get_running_loop().time() + 20
        while sum(len(v) for v in Ordered.seen.values()) < 60:
            assert asyncio.get_running_loop().time() < deadline, Ordered.seen
            await asyncio.sleep(0.05)
        assert len(Ordered.seen) == 1  # one pinned worker receives, the other stands by
        ((pinned_id, order),) = Ordered.seen.items()
        assert order == list(range(60))
        pinned = next(i for i, r in enumerate(runners) if str(id(r.reactor)) == pinned_id)
        runners[pinned].stop()  # the standby takes over once the pin times out
        await tasks[pinned]
        await store.append(f"{store.stream}.ping.o", [RtPing(n=60)])
        deadline = asyncio.get_running_loop().time() + 30
        while len(Ordered.seen) < 2:
            assert asyncio.get_running_loop().time() < deadline, Ordered.seen
            await asyncio.sleep(0.1)
        assert [v for k, v in Ordered.seen.items() if k != pinned_id] == [[60]]
    finally:
        for r in runners:
            r.stop()
        await asyncio.gather(*tasks)
        await other.close()


@pytest.mark.parametrize("ack_policy", ["all", "none"])
async def test_ack_policies_all_and_none_deliver_each_event(
    store: JetStreamEventStore, ack_policy: str
) -> None:
    await append_pings(store, range(6))
    seen: list[int] = []
    cls = reactor_class(
        name=f"ack{ack_policy}",
        subjects=[f"{store.stream}.ping.>"],
        ack_policy=ack_policy,
        seen=seen,
    )
    await ReactorRunner(cls(), store).catch_up()
    assert sorted(seen) == list(range(6))
    await ReactorRunner(cls(), store).catch_up()  # nothing is delivered a second time
    assert sorted(seen) == list(range(6))


class FlakyOnce(Reactor):
    """Fails the first attempt at ping 2, then works."""

    name = "flaky"
    backoff: ClassVar[list[float]] = [0.05]
    max_deliver = 3
    failed: ClassVar[set[int]] = set()
    seen: ClassVar[list[int]] = []

    @on(RtPing)
    async def got(self, e: RtPing, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        if e.n == 2 and e.n not in self.failed:
            self.failed.add(e.n)
            raise RuntimeError("flaky once")
        self.seen.append(e.n)


async def test_ack_all_retries_a_failed_event_before_acking_later_ones(
    store: JetStreamEventStore,
) -> None:
    # an ack under ack_policy "all" acknowledges every event before it: a failed event must be
    # retried before any later event is acknowledged, or it is lost
    FlakyOnce.failed.clear()
    FlakyOnce.seen.clear()
    await append_pings(store, range(6))
    cls = type("FlakyAll", (FlakyOnce,), {"name": "flakyall", "ack_policy": "all"})
    stats = await ReactorRunner(cls(), store).catch_up()
    assert sorted(FlakyOnce.seen) == list(range(6)) and FlakyOnce.failed == {2}
    assert FlakyOnce.seen == sorted(FlakyOnce.seen)  # one at a time, in stream order
    assert stats.failed == 1 and stats.parked == 0
    await ReactorRunner(cls(), store).catch_up()  # nothing left unacknowledged
    assert sorted(FlakyOnce.seen) == list(range(6))


async def test_ack_none_parks_a_failed_event_at_once_and_dlq_retry_applies_it(
    store: JetStreamEventStore,
) -> None:
    # no acks means no redelivery: the failed event is parked on its first failure, not lost
    FlakyOnce.failed.clear()
    FlakyOnce.seen.clear()
    await append_pings(store, range(6))
    cls = type("FlakyNone", (FlakyOnce,), {"name": "flakynone", "ack_policy": "none"})
    stats = await ReactorRunner(cls(), store).catch_up()
    assert sorted(FlakyOnce.seen) == [0, 1, 3, 4, 5] and stats.parked == 1
    letters = await ParkedLetters(store).list("flakynone")
    assert [(x.sequence, x.attempts) for x in letters] == [(3, 1)] and "flaky" in letters[0].error
    await request_retry(store, "flakynone", 3)
    await ReactorRunner(cls(), store).catch_up()
    assert sorted(FlakyOnce.seen) == list(range(6))
    assert await ParkedLetters(store).list("flakynone") == []


async def test_status_counts_the_workers_running_a_reactor(store: JetStreamEventStore) -> None:
    from eventkit.reaction.status import reactor_status
    from eventkit.runtime.presence import EXPIRES, Presence

    await append_pings(store, range(3))
    cls = reactor_class(name="counted", subjects=[f"{store.stream}.ping.>"])
    runners = [ReactorRunner(cls(), store) for _ in range(2)]
    tasks = [asyncio.create_task(r.run()) for r in runners]

    async def shown() -> tuple[str, int]:
        (row,) = await reactor_status([cls()], store)
        return row.state, row.workers

    async def until(expected: tuple[str, int]) -> None:
        for _ in range(100):
            if await shown() == expected:
                return
            await asyncio.sleep(0.05)
        assert await shown() == expected

    try:
        await until(("running", 2))  # two workers, busy or not (no waiting pull is counted)
        # a worker that died without a word is not counted once its last beat is too old
        dead = Presence(store, "counted")
        await dead.beat({"handled": 0})
        await until(("running", 3))
        assert dead._kv is not None
        stale = {"worker": dead.worker, "at": time.time() - EXPIRES - 1}
        await dead._kv.put(dead.key, json.dumps(stale).encode())
        await until(("running", 2))
        runners[0].stop()
        await tasks[0]
        await until(("running", 1))  # a clean stop removes its entry at once
    finally:
        for r in runners:
            r.stop()
        await asyncio.gather(*tasks)
    await until(("stopped", 0))
