"""Crash safety and one-active-runner, with real worker processes killed by SIGKILL."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from projection_worker import (  # type: ignore[import-not-found]
    PwItemAdded,
    PwNoise,
    create_tables,
    expected_model,
    make_projector,
    read_model,
)

from eventkit.projection import checkpoints
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import make_engine, read_transaction, upgrade

pytestmark = [pytest.mark.nats, pytest.mark.slow]

WORKER = Path(__file__).with_name("projection_worker.py")


async def fill(store: Any, count: int) -> list[tuple[int, str, int]]:
    items = []
    for i in range(count):
        key = f"k{i % 13}"
        seq = await store.append(f"{store.stream}.item.{key}", [PwItemAdded(key=key, n=i)])
        items.append((seq, key, i))
        if i % 10 == 0:
            await store.append(f"{store.stream}.noise.n", [PwNoise(x=i)])
    return items


def start_worker(
    nats_url: str, stream: str, db_url: str, px: str, owner: str, *extra: str
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            "--nats-url",
            nats_url,
            "--stream",
            stream,
            "--db-url",
            db_url,
            "--prefix",
            px,
            "--owner",
            owner,
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    return proc


def checkpoint(engine: Any, name: str) -> int:
    with read_transaction(engine) as db:
        return checkpoints.get_checkpoint(db, name).last_sequence


async def until_checkpoint_passes(
    engine: Any, name: str, before: int, proc: subprocess.Popen[str], timeout: float = 60.0
) -> None:
    """Wait until the checkpoint of ``name`` is past ``before`` (the worker committed a batch)."""
    deadline = time.monotonic() + timeout
    while checkpoint(engine, name) <= before:
        assert proc.poll() is None, "the worker ended before it committed a batch"
        assert time.monotonic() < deadline, "the worker committed nothing within the timeout"
        await asyncio.sleep(0.005)


async def test_sigkill_20_times_then_restart_gives_the_uninterrupted_read_model(
    store: Any, nats_url: str, db_url: str
) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    px, ref = f"t_{uuid.uuid4().hex[:8]}", f"r_{uuid.uuid4().hex[:8]}"
    create_tables(engine, px)
    create_tables(engine, ref)
    items = await fill(store, 2500)
    end = await store.last_sequence()
    # the uninterrupted run
    await ProjectionRunner(make_projector(ref), store, engine).catch_up()
    assert read_model(engine, ref) == expected_model(items)

    rng = random.Random(7)
    seen: list[int] = []
    for _ in range(20):
        before = seen[-1] if seen else 0
        proc = start_worker(
            nats_url, store.stream, db_url, px, "w1", "--slow", "0.002", "--batch-size", "32"
        )
        # Kill at a random point after this worker has committed a batch, so that every kill lands
        # while it is applying, however long the machine takes to start a worker.
        await until_checkpoint_passes(engine, f"{px}_totals", before, proc)
        await asyncio.sleep(rng.uniform(0.0, 0.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen.append(checkpoint(engine, f"{px}_totals"))
        if seen[-1] == end:
            break
    mid_run = [s for s in seen if 0 < s < end]
    assert len(mid_run) >= 10, f"the kills should land while the worker is still applying: {seen}"
    assert len(set(seen)) >= 5
    proc = start_worker(nats_url, store.stream, db_url, px, "w1")
    assert proc.wait(timeout=60) == 0
    assert checkpoint(engine, f"{px}_totals") == end
    assert read_model(engine, px) == read_model(engine, ref)
    engine.dispose()


def intervals(
    activity: Path, killed: str, kill_time: float
) -> dict[str, list[tuple[float, float]]]:
    open_: dict[tuple[str, str], float] = {}
    out: dict[str, list[tuple[float, float]]] = {}
    for line in activity.read_text().splitlines():
        owner, kind, seq, t = line.split()
        if kind == "enter":
            open_[(owner, seq)] = float(t)
        else:
            out.setdefault(owner, []).append((open_.pop((owner, seq)), float(t)))
    for (owner, _), t in open_.items():
        assert owner == killed
        out.setdefault(owner, []).append((t, kill_time))
    return out


async def test_two_runners_never_apply_concurrently_and_fail_over(
    store: Any, nats_url: str, db_url: str, tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    px = f"t_{uuid.uuid4().hex[:8]}"
    name = f"{px}_totals"
    create_tables(engine, px)
    items = await fill(store, 1500)
    end = await store.last_sequence()
    activity = tmp_path / "activity.log"
    args = ("--live", "--slow", "0.002", "--activity", str(activity), "--lease-ttl", "1.5")
    a = start_worker(nats_url, store.stream, db_url, px, "A", *args)
    await asyncio.sleep(0.3)
    b = start_worker(nats_url, store.stream, db_url, px, "B", *args)
    procs = {"A": a, "B": b}
    deadline = time.time() + 20
    while checkpoint(engine, name) < end // 3 and time.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    with read_transaction(engine) as db:
        lease = checkpoints.get_lease(db, name)
    assert lease is not None and lease.live, (lease, time.time(), checkpoint(engine, name), end)
    active, standby = lease.owner, ("B" if lease.owner == "A" else "A")
    kill_time = time.time()
    procs[active].send_signal(signal.SIGKILL)
    procs[active].wait()
    at_kill = checkpoint(engine, name)
    assert at_kill < end
    deadline = time.time() + 40
    while checkpoint(engine, name) < end and time.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert checkpoint(engine, name) == end
    procs[standby].send_signal(signal.SIGTERM)
    assert procs[standby].wait(timeout=20) == 0  # clean stop
    assert read_model(engine, px) == expected_model(items)  # each event applied exactly once

    spans = intervals(activity, active, kill_time)
    first_standby = min(s for s, _ in spans[standby])
    assert first_standby > kill_time, "the standby applied while the active runner was alive"
    for s1, e1 in spans[active]:
        for s2, e2 in spans[standby]:
            assert e1 <= s2 or e2 <= s1, "two runners applied at the same time"
    print(f"failover: standby applied {first_standby - kill_time:.2f}s after SIGKILL (ttl 1.5s)")
    engine.dispose()
