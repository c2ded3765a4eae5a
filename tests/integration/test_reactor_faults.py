"""Reactors on a real nats-server under the faults the projection runner already survived:
long queues on one subject, forget while letters and deliveries are held, stop under ack policy
none, ack policy all after a worker's crash, max_deliver lowered by a rolling deploy."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_gdpr_domain as d  # type: ignore[import-not-found]

from eventkit import App, Event, JetStreamEventStore, RecordedEvent, on
from eventkit.gdpr import forget_subject
from eventkit.projection.sql import make_engine, upgrade
from eventkit.reaction import Reactor, ReactorContext, ReactorRunner
from eventkit.reaction.consumer import ensure_consumer
from eventkit.runtime.deadletters import REDACTED
from eventkit.runtime.parked import ParkedLetters
from eventkit.runtime.supervisor import Supervisor
from eventkit.server import ServerProcess

pytestmark = pytest.mark.nats


class FtJob(Event):
    n: int
    email: str = ""


async def until(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def reactor(name: str, handler: Any, **attrs: Any) -> Reactor:
    body = {"name": name, "job": on(FtJob)(handler), **attrs}
    return type(f"R_{name}", (Reactor,), body)()  # type: ignore[return-value]


async def test_ordered_events_waiting_behind_their_subject_run_once_and_never_park(
    store: JetStreamEventStore,
) -> None:
    runs: Counter[int] = Counter()

    async def job(self: Reactor, e: FtJob, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        runs[e.n] += 1
        await asyncio.sleep(1.0)

    r = reactor("queue", job, ordered="subject", ack_wait=1.5, max_deliver=2, backoff=[0.1])
    for n in range(6):
        await store.append(f"{store.stream}.job.one", [FtJob(n=n)])
    stats = await ReactorRunner(r, store).catch_up()
    assert dict(runs) == {n: 1 for n in range(6)}  # one run each, none twice
    assert stats.parked == 0
    assert await ParkedLetters(store).list("queue") == []


async def test_forget_erases_reactor_letters_and_letters_held_are_never_written_after(
    server: ServerProcess, tmp_path: Path
) -> None:
    store = await JetStreamEventStore.connect(server.url, stream="ftforget")
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    upgrade(engine)
    release = asyncio.Event()
    email = "ada.lovelace@example.com"

    async def job(self: Reactor, e: FtJob, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        if e.n >= 10:  # held until the subject is forgotten, then fails
            await release.wait()
        raise ValueError(f"cannot mail {e.email} (about {rec.subject})")

    r = reactor("mailer", job, max_deliver=1, concurrency=8)
    try:
        person = "ftforget.person.p1"
        other = "ftforget.person.p2"
        await store.append(person, [FtJob(n=1, email=email)])
        await store.append(other, [FtJob(n=2, email=f"quote of {person}")])
        runner = ReactorRunner(r, store)
        await runner.catch_up()
        letters = await ParkedLetters(store).list("mailer")
        assert {x.subject for x in letters} == {person, other}
        await store.append(person, [FtJob(n=10, email=email), FtJob(n=11, email=email)])
        live = ReactorRunner(r, store)
        running = asyncio.ensure_future(live.run())
        await until(lambda: live.stats.in_flight == 2, 20)

        app = App(stream="ftforget", reactors=[r])
        report = await forget_subject(app, store, engine, person)
        assert report.dead_letters == 1
        release.set()  # the held deliveries fail now, after forget returned
        await until(lambda: live.stats.in_flight == 0, 20)
        live.stop()
        await running

        letters = await ParkedLetters(store).list("mailer")
        assert [x.subject for x in letters] == [other]  # nothing new about the person
        assert letters[0].error == REDACTED  # it quoted the forgotten subject
        assert live.stats.parked == 0 and live.stats.passed_over >= 2  # the two held
        await asyncio.sleep(0.5)
        assert d.files_containing(server.store_dir, email.encode()) == []
    finally:
        engine.dispose()
        await store.close()


async def test_stop_under_ack_policy_none_handles_what_it_received(
    store: JetStreamEventStore,
) -> None:
    handled: list[int] = []

    async def job(self: Reactor, e: FtJob, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        await asyncio.sleep(0.05)
        handled.append(e.n)

    r = reactor("noack", job, ack_policy="none", concurrency=1)
    for n in range(24):
        await store.append(f"{store.stream}.job.{n % 4}", [FtJob(n=n)])
    runner = ReactorRunner(r, store)
    running = asyncio.ensure_future(runner.run())
    await until(lambda: len(handled) >= 3, 20)
    runner.stop()
    await running
    second = ReactorRunner(r, store)
    await second.catch_up()
    assert sorted(handled) == list(range(24))  # nothing lost at the stop


async def test_ack_policy_all_never_covers_a_dead_workers_event(
    store: JetStreamEventStore, nats_url: str
) -> None:
    handled: list[int] = []
    frozen = asyncio.Event()

    async def job(self: Reactor, e: FtJob, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        if e.n == 2 and not frozen.is_set():
            frozen.set()
            await asyncio.sleep(3600)  # its process dies here: no ack, no nak
        handled.append(e.n)

    r = reactor("ackall", job, ack_policy="all", ack_wait=1.0, max_deliver=3)
    for n in range(6):
        await store.append(f"{store.stream}.job.{n}", [FtJob(n=n)])
    dying = await JetStreamEventStore.connect(nats_url, stream=store.stream)
    first = ReactorRunner(r, dying)
    running = asyncio.ensure_future(first.run())
    await until(frozen.is_set, 20)
    await dying.close()  # the process is gone: its connection with it
    running.cancel()
    with pytest.raises(BaseException):  # noqa: B017 (whatever the dead worker raised)
        await running
    for n in range(6, 8):  # appended after the death: the next worker's ack must not cover 2..5
        await store.append(f"{store.stream}.job.{n}", [FtJob(n=n)])
    second = ReactorRunner(r, store)  # another process, the same consumer
    await asyncio.wait_for(second.catch_up(), 30)
    assert sorted(set(handled)) == list(range(8))


async def test_lowering_max_deliver_in_a_rolling_deploy_parks_instead_of_dropping(
    store: JetStreamEventStore,
) -> None:
    async def job(self: Reactor, e: FtJob, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        raise RuntimeError("always")

    old = reactor("rolling", job, max_deliver=5, backoff=[0.2])
    new = reactor("rolling", job, max_deliver=2, backoff=[0.2])
    await store.append(f"{store.stream}.job.1", [FtJob(n=1)])
    old_runner = ReactorRunner(old, store)
    supervisor = Supervisor([old_runner])  # as under eventkit run
    running = asyncio.ensure_future(supervisor.run())
    await until(lambda: old_runner.stats.failed >= 1, 20)
    await ensure_consumer(new, store)  # the new deploy's first worker updates the consumer
    await until(lambda: old_runner.stats.failed >= 3 or old_runner.stats.parked >= 1, 20)
    supervisor.stop()
    (outcome,) = await running
    assert outcome.error is None
    await asyncio.wait_for(ReactorRunner(new, store).catch_up(), 30)
    letters = await ParkedLetters(store).list("rolling")
    assert [x.sequence for x in letters] == [1]  # parked, not dropped
