"""Reactor workers as processes: a SIGKILL between output and ack, three competing workers."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reactor_worker import Jobs, RwDone, RwJob  # type: ignore[import-not-found]

from eventkit import JetStreamEventStore
from eventkit.reaction import ReactorRunner

pytestmark = pytest.mark.nats

WORKER = Path(__file__).with_name("reactor_worker.py")


def start(nats_url: str, stream: str, activity: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            "--nats-url",
            nats_url,
            "--stream",
            stream,
            "--activity",
            str(activity),
            *extra,
        ],
        stdout=subprocess.PIPE,
    )


async def done_counts(store: JetStreamEventStore) -> collections.Counter[int]:
    out: collections.Counter[int] = collections.Counter()
    async for r in store.read_all(subjects=[f"{store.stream}.done.>"]):
        assert isinstance(r.event, RwDone)
        out[r.event.n] += 1
    return out


async def test_sigkill_after_output_before_ack_stores_the_output_once(
    store: JetStreamEventStore, nats_url: str, tmp_path: Path
) -> None:
    for n in range(5):
        await store.append(f"{store.stream}.job.{n}", [RwJob(n=n)])
    w = start(nats_url, store.stream, tmp_path / "a.log", "--kill-after-output", "1", "--once")
    assert w.wait(60) == -signal.SIGKILL
    first = await done_counts(store)
    assert sum(first.values()) >= 1  # at least one output stored before the kill
    Jobs.kill_after = 0
    Jobs.activity = None
    await ReactorRunner(Jobs(), store).catch_up()  # its unacked events come back after ack_wait
    assert await done_counts(store) == collections.Counter(range(5))


async def test_three_workers_share_the_work_and_finish_a_killed_ones(
    store: JetStreamEventStore, nats_url: str, tmp_path: Path
) -> None:
    total = 5000
    logs = [tmp_path / f"w{i}.log" for i in range(3)]
    workers = [start(nats_url, store.stream, log, "--slow", "0.001") for log in logs]
    try:
        for w in workers:
            assert w.stdout is not None
            assert w.stdout.readline().strip() == b"ready"

        async def append_jobs(ns: range) -> None:
            for start_n in range(ns.start, ns.stop, 500):
                await asyncio.gather(
                    *[
                        store.append(f"{store.stream}.job.{n % 50}", [RwJob(n=n)])
                        for n in range(start_n, min(start_n + 500, ns.stop))
                    ]
                )

        # half the jobs, the first worker killed once it has handled some (with events in
        # flight), then the other half: the survivors' share does not depend on how the
        # machine scheduled the three processes
        await append_jobs(range(0, total // 2))
        deadline = time.monotonic() + 120

        def first_busy_or_half_done() -> bool:
            return (
                sum(1 for _ in logs[0].open()) >= 100
                or sum(sum(1 for _ in log.open()) for log in logs) >= total // 2
            )

        while not first_busy_or_half_done() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        await append_jobs(range(total // 2, total))
        while time.monotonic() < deadline:
            counts = await done_counts(store)
            if len(counts) == total:
                break
            await asyncio.sleep(0.5)
        info = await store.js.consumer_info(store.stream, "eventkit_reactor_jobs")
        deadline = time.monotonic() + 30
        while (info.num_ack_pending or info.num_pending) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            info = await store.js.consumer_info(store.stream, "eventkit_reactor_jobs")
        counts = await done_counts(store)
        assert counts == collections.Counter(range(total))  # each output stored exactly once
        per_worker = [sum(1 for _ in log.open()) for log in logs]
        assert per_worker[0] > 0, per_worker  # the killed worker had its share
        # the survivors took over the rest: every job the first worker did not handle, and
        # at least the half appended after it died
        assert per_worker[1] + per_worker[2] >= max(total - per_worker[0], total // 2), per_worker
    finally:
        for w in workers[1:]:
            w.send_signal(signal.SIGTERM)
        for w in workers[1:]:
            assert w.wait(30) == 0  # SIGTERM drains and exits cleanly
