"""A reactor worker frozen (SIGSTOP) inside its handlers, beside a second worker: the events it
held are handled by the other within about ``ack_wait`` (the reactor's bound, where a projector
has its lease ttl), and when it wakes up its outputs are not stored twice."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from reactor_worker import Jobs, RwJob  # type: ignore[import-not-found]
from test_reactor_workers import done_counts, start  # type: ignore[import-not-found]

from eventkit import JetStreamEventStore

from .conftest import record_result

pytestmark = [pytest.mark.nats, pytest.mark.slow]


def lines(path: Path) -> int:
    return sum(1 for _ in path.open()) if path.exists() else 0


async def test_a_frozen_reactor_workers_events_are_handled_by_the_other_within_ack_wait(
    store: JetStreamEventStore, nats_url: str, tmp_path: Path
) -> None:
    total = 200
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers = [start(nats_url, store.stream, log, "--slow", "0.05") for log in logs]
    try:
        for w in workers:
            assert w.stdout is not None
            assert w.stdout.readline().strip() == b"ready"
        await asyncio.gather(
            *[store.append(f"{store.stream}.job.{n}", [RwJob(n=n)]) for n in range(total)]
        )
        deadline = time.monotonic() + 60
        while lines(logs[0]) < 10 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        workers[0].send_signal(signal.SIGSTOP)  # with events in its handlers
        frozen_at = time.monotonic()
        took = None
        while time.monotonic() - frozen_at < 60:
            if len(await done_counts(store)) == total:
                took = time.monotonic() - frozen_at
                break
            await asyncio.sleep(0.1)
        assert took is not None, "the frozen worker's events were never handled by the other"
        # the other worker's share of work (~0.05 s an event, 8 at a time) plus one ack_wait
        assert took <= 3 * Jobs.ack_wait + total * 0.05 / 8, took
        workers[0].send_signal(signal.SIGCONT)  # wakes up: its outputs are stored already
        await asyncio.sleep(Jobs.ack_wait)
        assert await done_counts(store) == collections.Counter(range(total))
    finally:
        for w in workers:
            w.send_signal(signal.SIGCONT)
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()
    record_result(
        "reactor worker frozen in its handlers", ack_wait_s=Jobs.ack_wait, all_done_s=round(took, 2)
    )
