"""Scenario 1: kill -9 the stream leader of an R3 stream under sustained append load.

Promise: every acknowledged append is stored exactly once, appends resume on their own (the store
retries transient errors for ``retry_for`` seconds), a follower of the stream ends equal to the
stream's fold, and the killed node catches up when it comes back.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from eventkit.errors import StoreUnavailableError
from eventkit.projection.runner import ProjectionRunner
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.testing.cluster import Cluster
from eventkit.testing.waiting import wait_until

from ._load import LoadLog, check_stream, fold_totals, writer
from ._readmodel import read_model, sqlite_engine, totals_projector
from .conftest import env_float, record_result

pytestmark = [pytest.mark.nats, pytest.mark.cluster, pytest.mark.slow]

WRITERS = 4


class Follower:
    """Tails the stream with read_all from its last sequence; counts applications per sequence."""

    def __init__(self, store: JetStreamEventStore) -> None:
        self.store = store
        self.last = 0
        self.totals: dict[str, int] = {}
        self.applied: Counter[int] = Counter()
        self.read_errors = 0

    async def run(self, stop: asyncio.Event) -> None:
        while True:
            caught_up = await self.poll()
            if stop.is_set() and caught_up:
                return
            await asyncio.sleep(0.05)

    async def poll(self) -> bool:
        try:
            end = await self.store.last_sequence()
            async for r in self.store.read_all(from_sequence=self.last + 1):
                self.applied[r.sequence] += 1
                self.totals[r.subject] = self.totals.get(r.subject, 0) + r.event.amount
                self.last = r.sequence
            return self.last >= end
        except StoreUnavailableError:
            self.read_errors += 1
            return False


async def wait_checkpoint(runner: ProjectionRunner, target: int, timeout: float) -> None:
    await wait_until(lambda: runner.checkpoint >= target, timeout)


async def test_leader_kill_loses_nothing_and_duplicates_nothing(
    cluster: Cluster, r3_stream: str, tmp_path: Path
) -> None:
    stream = r3_stream
    store = await JetStreamEventStore.connect(
        cluster.urls, stream=stream, replicas=3, retry_for=30.0
    )
    follower_store = await JetStreamEventStore.connect(cluster.urls, stream=stream, replicas=3)
    load_seconds = env_float("EVENTKIT_RELIABILITY_LOAD_SECONDS", 3.0)
    try:
        log = LoadLog()
        stop = asyncio.Event()
        follower = Follower(follower_store)
        tasks = [
            asyncio.create_task(writer(store, log, stop, prefix=f"w{i}")) for i in range(WRITERS)
        ]
        follow = asyncio.create_task(follower.run(stop))
        engine = sqlite_engine(tmp_path / "rm.db")
        runner = ProjectionRunner(totals_projector(), follower_store, engine)
        projecting = asyncio.create_task(runner.run())
        await asyncio.sleep(load_seconds / 2)

        leader = await cluster.stream_leader(store.js, stream)
        acked_before = len(log.acked)
        killed_at = time.monotonic()
        cluster.node(leader).kill()

        # keep the load on until appends resumed, then a little longer
        await wait_until(lambda: log.resume_after(killed_at) is not None, 45)
        await asyncio.sleep(load_seconds / 2)
        stop.set()
        await asyncio.gather(*tasks)
        await asyncio.wait_for(follow, 60)

        resumed = log.resume_after(killed_at)
        new_leader = await cluster.stream_leader(store.js, stream)
        check = await check_stream(store, log)

        cluster.node(leader).restart()
        catch_up = await cluster.wait_stream_current(store.js, stream)
        stored_after = await store.last_sequence()

        expected = fold_totals([r async for r in store.read_all()])
        await wait_checkpoint(runner, stored_after, 60)
        runner.stop()
        result = await asyncio.wait_for(projecting, 30)
        rm_totals, rm_applied = read_model(engine)
        record_result(
            "1 cluster leader kill -9",
            acked=check.acked,
            acked_before_kill=acked_before,
            lost=len(check.lost),
            duplicated=len(check.duplicated),
            unacked=len(log.failed),
            unacked_but_stored=check.unacked_stored,
            resume_s=round(resumed or -1, 2),
            max_append_latency_s=round(log.max_latency(), 2),
            killed=leader,
            new_leader=new_leader,
            catch_up_s=round(catch_up, 2),
            follower_read_errors=follower.read_errors,
            runner_checkpoint=result.checkpoint,
            runner_applied_twice=sum(1 for n in rm_applied.values() if n > 1),
        )

        assert resumed is not None, "appends did not resume within 45 s of the leader kill"
        assert new_leader != leader
        assert check.lost == [], f"acknowledged appends missing: {check.lost[:5]}"
        assert check.duplicated == [], f"event ids stored twice: {check.duplicated[:5]}"
        assert check.acked > acked_before, "no append was acknowledged after the kill"
        assert stored_after == check.stored  # nothing changed while the node caught up
        assert [s for s, n in follower.applied.items() if n > 1] == []
        assert follower.totals == expected
        assert follower.last == stored_after
        # the projection runner, live through the failover, ends at the stream's fold
        assert not result.halted, result.error
        assert result.checkpoint == stored_after
        assert [s for s, n in rm_applied.items() if n > 1] == []
        assert len(rm_applied) == stored_after
        assert rm_totals == expected
    finally:
        await store.close()
        await follower_store.close()
