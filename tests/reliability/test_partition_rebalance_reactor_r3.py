"""A partitioned reactor (``ordered = "subject"``) on an R3 stream, in worker processes: a node
that leads the stream and/or a partition's consumer is killed -9 while a third worker joins (a
rebalance), under appends; every event still has one output (derived ids), and once the workers
have settled each entity's outputs are in its stream order and the joining worker takes its share.
While the pins move with the consumers' leaders, an entity's order can break (ADR-42: a pin is not
exclusive across a leader change): counted in the results, not asserted."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats.errors
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from reactor_partition_worker import (  # type: ignore[import-not-found]
    append_ticks,
    outputs,
)
from test_partitioned_reactors import (  # type: ignore[import-not-found]
    Workers,
    all_handled,
    settled,
    until,
)

from eventkit import JetStreamEventStore
from eventkit.errors import StoreUnavailableError
from eventkit.reaction.consumer import partition_consumers
from eventkit.testing.cluster import Cluster

from .conftest import record_result

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.cluster]

PARTITIONS = 4
SUBJECTS = 20


async def consumer_leaders(store: JetStreamEventStore, reactor: str) -> dict[int, str]:
    """Partition -> the node leading its consumer."""
    found = await partition_consumers(reactor, store)
    return {p: str(i.cluster.leader) for p, i in found.items() if i.cluster and i.cluster.leader}


def merge(into: dict[str, list[int]], more: dict[str, list[int]]) -> None:
    for e, seqs in more.items():
        into.setdefault(e, []).extend(seqs)


def sources(seen: dict[str, list[tuple[int, str]]]) -> dict[str, list[int]]:
    return {e: [s for s, _ in v] for e, v in seen.items()}


def inversion(seqs: list[int]) -> tuple[int, int]:
    """The first two outputs of an entity out of stream order."""
    return next((a, b) for a, b in itertools.pairwise(seqs) if a > b)


def steady(check: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
    """``check``, false while the cluster cannot answer it (a node just killed)."""

    async def run() -> bool:
        try:
            return await check()
        except (StoreUnavailableError, nats.errors.Error, TimeoutError):
            return False

    return run


async def test_a_leader_kill_during_a_reactor_join_loses_and_doubles_nothing_then_keeps_order(
    cluster: Cluster, r3_stream: str
) -> None:
    store = await JetStreamEventStore.connect(
        cluster.urls, stream=r3_stream, replicas=3, retry_for=30.0
    )
    px = "r3r"
    name = f"{px}_seen"
    w = Workers(",".join(cluster.urls), r3_stream, px)
    start: Callable[[str], Any] = lambda who: w.start(  # noqa: E731
        who, "--partitions", str(PARTITIONS), "--slow", "0.005", "--replicas", "3"
    )
    killed = ""
    try:
        start("w0")
        start("w1")
        expected = await append_ticks(store, 200, SUBJECTS)
        await until(steady(lambda: all_handled(store, expected)), 60, "the first events handled")
        two = {w.members["w0"], w.members["w1"]}
        await until(steady(lambda: settled(store, name, PARTITIONS, two)), 30, "two share four")

        leaders = await consumer_leaders(store, name)
        stream_leader = await cluster.stream_leader(store.js, r3_stream)
        # the stream's leader when it also leads a partition's consumer, else that consumer's
        killed = stream_leader if stream_leader in leaders.values() else leaders[0]
        load = asyncio.create_task(append_ticks(store, 400, SUBJECTS))
        start("w2")  # joins: partitions move from w0 and w1 to it
        cluster.node(killed).kill()
        killed_at = time.monotonic()
        merge(expected, await asyncio.wait_for(load, 60))
        await until(steady(lambda: all_handled(store, expected)), 60, "every event handled")
        took = time.monotonic() - killed_at
        three = set(w.members.values())
        await until(steady(lambda: settled(store, name, PARTITIONS, three)), 30, "three share")
        got = sources(await outputs(store))
        # nothing lost, each output stored once (derived ids)
        assert {e: sorted(v) for e, v in got.items()} == expected
        # each entity's order: it may break while the partition's pin moves with its consumer's
        # leader (ADR-42: not exclusive then); counted, reported, not asserted
        broken = {e: v for e, v in got.items() if v != expected[e]}

        # then order holds (the pin is exclusive while its consumer keeps its leader), and the
        # joined worker takes its share: rounds of one event on each of 60 entities (every
        # partition has some) until it has handled some (right after a failover, the workers'
        # views of who is there can still differ for a moment: the pin decides meanwhile)
        later: dict[str, list[int]] = {}
        joined: list[str] = []
        rounds = 0
        while "w2" not in joined:
            assert rounds < 10, f"the joined worker handled none of {rounds} rounds: {joined}"
            rounds += 1
            merge(later, await append_ticks(store, 60, 60))
            total = {e: expected.get(e, []) + later.get(e, []) for e in {*expected, *later}}
            await until(steady(lambda t=total: all_handled(store, t)), 60, "later events handled")
            seen = await outputs(store)
            joined = [who for e in later for _, who in seen[e][len(got.get(e, [])) :]]
        merge(expected, later)
        after = sources(seen)
        assert {e: sorted(v) for e, v in after.items()} == expected
        for e, seqs in later.items():
            before = len(got.get(e, []))
            assert after[e][before:] == seqs, f"{e}: {after[e][before:]} instead of {seqs}"
        assert all(p.poll() is None for p in w.procs.values()), "a worker ended"
        record_result(
            "R3 leader kill -9 while a partitioned reactor's worker joins",
            killed_stream_leader=killed == stream_leader,
            partition_consumers_led=sum(1 for n in leaders.values() if n == killed),
            all_handled_after_kill_s=round(took, 2),
            entities_out_of_order=len(broken),
            inversions=[inversion(v) for v in broken.values()],
            rounds_until_the_joined_worker_handled=rounds,
        )
        cluster.node(killed).restart()
        await cluster.wait_stream_current(store.js, r3_stream)  # whole again for the next test
    finally:
        w.stop_all()
        if killed and not cluster.node(killed).is_running():
            cluster.node(killed).restart()
        await store.close()
