"""A partitioned reactor over several worker processes: every event handled, each entity's events
in stream order, partitions moving when workers die, freeze and join."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats.js.errors
import pytest
from reactor_partition_worker import (  # type: ignore[import-not-found]
    RpTicked,
    append_ticks,
    check_outputs,
    make_reactor,
    outputs,
)

from eventkit import Event, RecordedEvent, on
from eventkit.errors import ConfigError
from eventkit.reaction.consumer import PartitionsChangedError, partition_consumer_name
from eventkit.reaction.context import ReactorContext
from eventkit.reaction.partitioned import Keyer, PartitionedReactorRunner
from eventkit.reaction.reactor import Reactor
from eventkit.reaction.runner import ReactorRunner
from eventkit.runtime.partitions import default_key, partition_of
from eventkit.runtime.presence import workers

WORKER = Path(__file__).with_name("reactor_partition_worker.py")
TTL = 1.5
ACK_WAIT = 2.0


class Workers:
    """Worker processes of one partitioned reactor, stopped at the end of the test."""

    def __init__(self, nats_url: str, stream: str, prefix: str) -> None:
        self.args = ["--nats-url", nats_url, "--stream", stream, "--prefix", prefix]
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.members: dict[str, str] = {}
        """Worker name -> its member id (in the heartbeats)."""

    def start(self, name: str, *extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), *self.args, "--owner", name, "--ttl", str(TTL),
             "--ack-wait", str(ACK_WAIT), *extra],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        word, member = proc.stdout.readline().split()
        assert word == "started"
        self.procs[name] = proc
        self.members[name] = member
        return proc

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers_of(nats_url: str) -> Iterator[Callable[[str, str], Workers]]:
    made: list[Workers] = []

    def make(stream: str, prefix: str) -> Workers:
        made.append(Workers(nats_url, stream, prefix))
        return made[-1]

    yield make
    for w in made:
        w.stop_all()


async def holders(store: Any, reactor: str) -> dict[int, set[str]]:
    """Partition -> the members holding it, from the workers' heartbeats within the ttl."""
    out: dict[int, set[str]] = {}
    for entry in (await workers(store, [reactor]))[reactor]:
        if time.time() - float(entry.get("at", 0)) <= TTL:
            for part in entry.get("held", []):
                out.setdefault(part, set()).add(str(entry["worker"]))
    return out


async def settled(store: Any, reactor: str, partitions: int, members: set[str]) -> bool:
    """Every partition held by one of ``members``, and each of them holding some."""
    found = await holders(store, reactor)
    owners = [next(iter(v)) for v in found.values() if len(v) == 1]
    return len(owners) == partitions == len(found) and set(owners) == members


async def until(check: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> float:
    """Wait until ``await check()`` is true; the seconds it took (fails after ``timeout``)."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        await asyncio.sleep(step)
    return time.monotonic() - start


async def all_handled(store: Any, expected: dict[str, list[int]]) -> bool:
    seen = await outputs(store)
    return sum(len(v) for v in seen.values()) >= sum(len(v) for v in expected.values())


# -- several processes --------------------------------------------------------------------------


@pytest.mark.nats
async def test_three_workers_handle_every_event_once_in_per_entity_order(
    store: Any, workers_of: Callable[[str, str], Workers]
) -> None:
    px = f"r_{uuid.uuid4().hex[:8]}"
    w = workers_of(store.stream, px)
    for i in range(3):
        w.start(f"w{i}", "--partitions", "6", "--slow", "0.002")
    # the events come while the workers still hand partitions to each other
    expected = await append_ticks(store, 1200, 60)
    await until(lambda: all_handled(store, expected), 60, "every event handled")
    members = set(w.members.values())
    await until(lambda: settled(store, f"{px}_seen", 6, members), 20, "three sharing six")
    more = await append_ticks(store, 600, 60)
    for e, seqs in more.items():
        expected.setdefault(e, []).extend(seqs)
    await until(lambda: all_handled(store, expected), 60, "the later events handled")
    by_worker = check_outputs(await outputs(store), expected)
    assert set(by_worker) == {"w0", "w1", "w2"}


@pytest.mark.nats
async def test_a_killed_and_a_frozen_worker_lose_their_partitions_and_nothing_is_lost(
    store: Any, workers_of: Callable[[str, str], Workers]
) -> None:
    px = f"r_{uuid.uuid4().hex[:8]}"
    name = f"{px}_seen"
    w = workers_of(store.stream, px)
    for i in range(3):
        w.start(f"w{i}", "--partitions", "6", "--slow", "0.05")
    members = set(w.members.values())
    await until(lambda: settled(store, name, 6, members), 30, "three sharing six")
    # 40 events on each of 30 entities, 50 ms each: each entity's chain takes 2 s or more
    expected = await append_ticks(store, 1200, 30)

    async def started() -> bool:
        by = {w for v in (await outputs(store)).values() for _, w in v}
        return {"w1", "w2"} <= by

    await until(started, 30, "w1 and w2 handling")
    assert not await all_handled(store, expected)
    w.signal("w1", signal.SIGKILL)
    w.signal("w2", signal.SIGSTOP)
    took = await until(lambda: settled(store, name, 6, {w.members["w0"]}), 30, "w0 holding all")
    print(f"the killed and the frozen worker's partitions moved in {took:.1f}s")
    # their heartbeats stop counting after the ttl; then every partition has its new owner
    assert took < 4 * TTL + 5, f"took {took:.1f}s"
    # their pins lapse after the pin timeout, what they held comes back after the ack wait
    await until(lambda: all_handled(store, expected), 60, "every event handled")
    check_outputs(await outputs(store), expected)
    w.signal("w2", signal.SIGCONT)  # it wakes and takes a share again
    both = {w.members["w0"], w.members["w2"]}
    await until(lambda: settled(store, name, 6, both), 30, "the woken worker sharing again")
    more = await append_ticks(store, 120, 30)
    for e, seqs in more.items():
        expected.setdefault(e, []).extend(seqs)
    await until(lambda: all_handled(store, expected), 60, "the later events handled")
    check_outputs(await outputs(store), expected)


@pytest.mark.nats
async def test_a_worker_that_joins_takes_a_share_and_one_that_stops_hands_it_back(
    store: Any, workers_of: Callable[[str, str], Workers]
) -> None:
    px = f"r_{uuid.uuid4().hex[:8]}"
    name = f"{px}_seen"
    w = workers_of(store.stream, px)
    w.start("w0", "--partitions", "4", "--slow", "0.02")
    expected = await append_ticks(store, 600, 20)  # about 0.6 s of work per entity
    w.start("w1", "--partitions", "4", "--slow", "0.02")
    both = {w.members["w0"], w.members["w1"]}
    took = await until(lambda: settled(store, name, 4, both), 20, "w1 holding a share")
    print(f"the joining worker took its share in {took:.1f}s")
    more = await append_ticks(store, 300, 20)
    for e, seqs in more.items():
        expected.setdefault(e, []).extend(seqs)
    w.signal("w0", signal.SIGTERM)
    assert w.procs["w0"].wait(timeout=30) == 0
    # a clean stop unpins: the partitions move within the ttl, not the pin timeout
    took = await until(lambda: settled(store, name, 4, {w.members["w1"]}), 20, "w1 holding all")
    print(f"the stopped worker's partitions moved in {took:.1f}s")
    assert took < 2 * TTL + 3, f"took {took:.1f}s"
    await until(lambda: all_handled(store, expected), 60, "every event handled")
    by_worker = check_outputs(await outputs(store), expected)
    assert by_worker.get("w1", 0) > 0 and by_worker.get("w0", 0) > 0


# -- one process --------------------------------------------------------------------------------


@pytest.mark.nats
async def test_catch_up_handles_every_partition_and_status_shows_each(store: Any) -> None:
    from eventkit.reaction.status import reactor_status

    px = f"r_{uuid.uuid4().hex[:8]}"
    reactor = make_reactor(px, store.stream, 4, worker="solo", ack_wait=ACK_WAIT)
    expected = await append_ticks(store, 200, 20)
    runner = ReactorRunner(reactor, store, lease_ttl=TTL)
    assert isinstance(runner, PartitionedReactorRunner)
    stats = await asyncio.wait_for(runner.catch_up(), 60)
    assert stats.handled == 200
    check_outputs(await outputs(store), expected)
    (row,) = await reactor_status([reactor], store)
    assert row.pending == 0 and row.in_flight == 0
    assert [p["partition"] for p in row.partitions] == [0, 1, 2, 3]
    assert all(p["pending"] == 0 for p in row.partitions)


@pytest.mark.nats
async def test_changing_the_partitions_of_a_reactor_that_ran_is_refused(store: Any) -> None:
    px = f"r_{uuid.uuid4().hex[:8]}"
    await append_ticks(store, 10, 5)
    await asyncio.wait_for(
        ReactorRunner(make_reactor(px, store.stream, 4), store, lease_ttl=TTL).catch_up(), 60
    )
    for n in (8, 1):
        with pytest.raises(PartitionsChangedError) as raised:
            await ReactorRunner(make_reactor(px, store.stream, n), store).catch_up()
        text = str(raised.value)
        assert f"has 4 partition(s) on the server but the class declares partitions = {n}" in text
        assert "eventkit reactor reset" in text
    from eventkit.reaction.consumer import reset_consumer

    assert await reset_consumer(f"{px}_seen", store)
    for part in range(4):
        name = partition_consumer_name(f"{px}_seen", part)
        with pytest.raises(nats.js.errors.NotFoundError):
            await store.js.consumer_info(store.stream, name)


@pytest.mark.nats
async def test_a_parked_event_of_a_partitioned_reactor_is_retried_from_the_dlq(
    store: Any,
) -> None:
    from eventkit.reaction.schedule import request_retry
    from eventkit.runtime.parked import ParkedLetters

    failing = {True}
    handled: list[int] = []

    class Fragile(Reactor):
        name = f"r_{uuid.uuid4().hex[:8]}_fragile"
        subjects = [f"{store.stream}.ent.*"]
        partitions = 4
        ordered = "subject"
        max_deliver = 1

        @on(RpTicked)
        async def ticked(self, e: RpTicked, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
            if e.n == 3 and failing:
                raise RuntimeError("the provider said no")
            handled.append(e.n)

    await append_ticks(store, 8, 4)
    runner = ReactorRunner(Fragile(), store, lease_ttl=TTL)
    task = asyncio.ensure_future(runner.run())
    letters = ParkedLetters(store)
    try:

        async def parked() -> bool:
            return len(await letters.list(Fragile.name)) == 1

        await until(parked, 20, "the failing event parked")
        await until(lambda: asyncio.sleep(0, len(handled) == 7), 20, "the others handled")
        (letter,) = await letters.list(Fragile.name)
        failing.clear()
        await request_retry(store, Fragile.name, letter.sequence)

        async def retried() -> bool:
            return 3 in handled and not await letters.list(Fragile.name)

        await until(retried, 20, "the parked event handled and its letter gone")
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
    assert sorted(handled) == list(range(8))


@pytest.mark.nats
async def test_forget_erases_a_partitioned_reactors_letters_and_it_goes_on(
    store: Any, tmp_path: Path
) -> None:
    from eventkit.app import App
    from eventkit.gdpr.forget import forget_subject
    from eventkit.projection.sql import make_engine, upgrade
    from eventkit.runtime.parked import ParkedLetters

    handled: list[str] = []

    class Mailer(Reactor):
        name = f"r_{uuid.uuid4().hex[:8]}_mailer"
        subjects = [f"{store.stream}.ent.*"]
        partitions = 3
        ordered = "subject"
        max_deliver = 1

        @on(RpTicked)
        async def ticked(self, e: RpTicked, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
            if e.n < 0:
                raise ValueError(f"cannot mail about {rec.subject}")
            handled.append(rec.subject)

    person, other = f"{store.stream}.ent.p1", f"{store.stream}.ent.p2"
    await store.append(person, [RpTicked(n=-1)])
    await store.append(other, [RpTicked(n=-2)])
    await asyncio.wait_for(ReactorRunner(Mailer(), store, lease_ttl=TTL).catch_up(), 60)
    letters = ParkedLetters(store)
    assert {x.subject for x in await letters.list(Mailer.name)} == {person, other}
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    upgrade(engine)
    try:
        report = await forget_subject(
            App(stream=store.stream, reactors=[Mailer()]), store, engine, person
        )
    finally:
        engine.dispose()
    assert report.dead_letters == 1
    assert [x.subject for x in await letters.list(Mailer.name)] == [other]
    await store.append(other, [RpTicked(n=3)])  # the partitions go on past the erasure
    await asyncio.wait_for(ReactorRunner(Mailer(), store, lease_ttl=TTL).catch_up(), 60)
    assert handled == [other]


@pytest.mark.nats
async def test_the_cli_runs_a_partitioned_reactor_once_and_shows_each_partition(
    store: Any, nats_url: str, tmp_path: Path
) -> None:
    px = f"r_{uuid.uuid4().hex[:8]}"
    expected = await append_ticks(store, 100, 10)
    env = {
        **os.environ,
        "EVENTKIT_NATS_URL": nats_url,
        "EVENTKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "RP_STREAM": store.stream,
        "RP_PREFIX": px,
        "RP_PARTITIONS": "3",
        "COLUMNS": "200",
    }
    script = Path(sys.executable).parent / "eventkit"

    def ek(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), "--app", "reactor_partition_worker:cli_app", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=WORKER.parent,
            timeout=120,
        )

    ran = ek("run", "--once", "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    check_outputs(await outputs(store), expected)
    (row,) = json.loads(ek("status", "--json").stdout)
    assert row["name"] == f"{px}_seen" and row["pending"] == 0 and row["in_flight"] == 0
    assert [(p["partition"], p["pending"]) for p in row["partitions"]] == [(0, 0), (1, 0), (2, 0)]
    text = ek("status").stdout
    assert f"{px}_seen: partitions" in text
    env["RP_PARTITIONS"] = "5"
    changed = ek("run", "--once")
    assert changed.returncode != 0
    said = " ".join((changed.stdout + changed.stderr).split())
    assert "has 3 partition(s) on the server but the class declares partitions = 5" in said
    assert "Traceback" not in changed.stderr


def test_the_client_computes_the_partition_nats_computes() -> None:
    reactor = make_reactor("r_x", "S", 8)
    keyer = Keyer(reactor, type("Store", (), {"stream": "S"})())
    assert keyer.key("S.ent.a-1", {}, b"", 1, 0) == default_key("S.ent.a-1") == "enta-1"
    # a deadline goes to the partition of the subject it concerns
    due = "S._eventkit.reactor.r_x_seen.due"
    assert keyer.key(due, {"Eventkit-Due-Subject": "S.ent.a-1"}, b"", 2, 0) == "enta-1"
    assert 0 <= partition_of("enta-1", 8) < 8

    class Msg:
        def __init__(self, subject: str) -> None:
            self.subject, self.reply, self.headers, self.data = subject, "", None, b""

    # the consumer takes the whole stream: what the reactor does not follow is no partition's
    assert keyer.of_message(Msg("S.other.a-1")) == -1
    assert keyer.of_message(Msg("S.ent.a-1")) == partition_of("enta-1", 8)


# -- class definition ---------------------------------------------------------------------------


class RpOther(Event):
    n: int


def _reactor(**attrs: Any) -> type[Reactor]:
    class Base(Reactor):
        @on(RpOther)
        async def other(self, e: RpOther, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
            pass

    return type("Defined", (Base,), {"name": "defined", **attrs})


def test_partitions_are_accepted_with_ordered_subject() -> None:
    cls = _reactor(partitions=8, ordered="subject")
    assert cls.partitions == 8 and not cls.keys_partitions()
    assert cls().options()["partitions"] == 8
    assert "partitions" not in _reactor(ordered="subject")().options()  # consumers made before


@pytest.mark.parametrize(
    ("attrs", "said"),
    [
        ({"partitions": 0}, "partitions must be a whole number from 1 to 1024"),
        ({"partitions": 2000}, "partitions must be a whole number from 1 to 1024"),
        ({"partitions": "4"}, "partitions must be a whole number from 1 to 1024"),
        ({"partitions": True}, "partitions must be a whole number from 1 to 1024"),
        ({"partitions": 4}, "partitions = 4 needs ordered = 'subject'"),
        (
            {"partitions": 4, "ordered": "subject", "ack_policy": "all"},
            "partitions = 4 needs ack_policy = 'explicit'",
        ),
        (
            {"partitions": 4, "ordered": "subject", "partition_key": "customer"},
            "partition_key must be a method",
        ),
    ],
)
def test_bad_partitions_are_refused_at_class_definition(attrs: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _reactor(**attrs)
    assert said in str(raised.value)


def test_a_partition_key_hook_keys_the_events_it_handles() -> None:
    class ByCustomer(Reactor):
        name = "by-customer"
        partitions = 4
        ordered = "subject"

        def partition_key(self, rec: RecordedEvent[Any]) -> str:
            return f"c{rec.event.n % 2}"

        @on(RpTicked)
        async def ticked(self, e: RpTicked, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
            pass

    assert ByCustomer.keys_partitions()


async def test_a_taken_over_partition_hands_the_previous_owners_events_over_in_order() -> None:
    """The server redelivers a dead owner's events before later ones, but not sorted."""
    from eventkit.reaction.takeover import TakeoverConsumer

    class Msg:
        def __init__(self, seq: int, deliveries: int) -> None:
            self.subject, self.data, self.headers = "S.ent.a", b"", None
            self.reply = f"$JS.ACK.S.c.{deliveries}.{seq}.{seq}.0.0"

    class FakePuller:
        nc, name, filters, ack = None, "c", ["S.>"], "explicit"

        def __init__(self) -> None:
            self.batches = [[Msg(9, 2), Msg(4, 2)], [Msg(6, 2)], [Msg(12, 1), Msg(13, 1)], []]

        async def take(self, limit: int, timeout: float) -> list[Msg]:
            return self.batches.pop(0)

        def buffered(self) -> list[Msg]:
            return []

    consumer = TakeoverConsumer(FakePuller())  # type: ignore[arg-type]
    consumer.gate(high=10)
    assert await consumer.take(16, 0.1) == []
    assert [d.sequence for d in consumer.buffered()] == [9, 4]  # kept alive (in-progress acks)
    assert await consumer.take(16, 0.1) == []
    assert [d.sequence for d in await consumer.take(16, 0.1)] == [4, 6, 9, 12, 13]
    assert await consumer.take(16, 0.1) == []  # the gate is open: as delivered
