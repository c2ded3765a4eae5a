"""Faults every worker kind must ride out, each run for a projector and for a reactor:
a server restart while idle, and ``eventkit reactor reset`` while a worker runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from eventkit import JetStreamEventStore, Reactor, ReactorContext, RecordedEvent, on
from eventkit.projection.runner import ProjectionRunner
from eventkit.reaction import ReactorRunner
from eventkit.runtime.supervisor import Supervisor
from eventkit.server import ServerProcess

from ._domain import RelAdded
from ._readmodel import applied_count, sqlite_engine, totals_projector
from .conftest import new_stream, record_result

pytestmark = [pytest.mark.nats, pytest.mark.slow]

HERE = Path(__file__).resolve().parent


class Counting(Reactor):
    name = "rel_counting"
    handled: ClassVar[list[int]] = []

    @on(RelAdded)
    async def added(self, e: RelAdded, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        Counting.handled.append(rec.sequence)


def worker(kind: str, store: JetStreamEventStore, tmp_path: Path) -> tuple[Any, Callable[[], int]]:
    """A live worker of ``kind`` and how many events it applied."""
    if kind == "reactor":
        Counting.handled.clear()
        return ReactorRunner(Counting(), store), lambda: len(set(Counting.handled))
    engine = sqlite_engine(tmp_path / "rm.db")
    return ProjectionRunner(totals_projector(), store, engine), lambda: applied_count(engine)


async def until(cond: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not cond():
        assert time.monotonic() - started < timeout, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.parametrize("kind", ["projector", "reactor"])
async def test_idle_worker_resumes_soon_after_a_server_restart(
    kind: str, server: ServerProcess, tmp_path: Path
) -> None:
    stream = new_stream("idle")
    store = await JetStreamEventStore.connect(server.url, stream=stream, retry_for=30.0)
    try:
        runner, applied = worker(kind, store, tmp_path)
        supervisor = Supervisor([runner])
        running = asyncio.ensure_future(supervisor.run())
        await store.append(f"{stream}.c.1", [RelAdded(amount=1)])
        await until(lambda: applied() == 1, 30)
        await asyncio.sleep(1.0)  # idle: only its pull requests are outstanding
        server.kill()
        await asyncio.to_thread(server.start)
        await store.append(f"{stream}.c.1", [RelAdded(amount=2)])  # the server answers
        resumed = await until(lambda: applied() == 2, 30)
        record_result(f"idle {kind} after a server restart", resumed_s=round(resumed, 2))
        assert resumed < 5.0, f"the idle {kind} took {resumed:.1f}s to pull again"
        supervisor.stop()
        (outcome,) = await asyncio.wait_for(running, 30)
        assert outcome.error is None
    finally:
        await store.close()


def cli_env(url: str, stream: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "EVENTKIT_NATS_URL": url,
        "EVENTKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
        "EVENTKIT_APP": "_worker_app:app",
        "RW_STREAM": stream,
        "PYTHONPATH": f"{HERE}{os.pathsep}{HERE.parents[1]}",
    }


def eventkit_run(url: str, stream: str, tmp_path: Path, *names: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "eventkit", "run", "--json", *names],
        env=cli_env(url, stream, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def count_outputs(store: JetStreamEventStore) -> int:
    return len([r async for r in store.read_all(subjects=[f"{store.stream}.out.>"])])


async def wait_outputs(store: JetStreamEventStore, n: int, timeout: float) -> float:
    started = time.monotonic()
    while await count_outputs(store) < n:
        assert time.monotonic() - started < timeout, f"fewer than {n} outputs in {timeout}s"
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def test_reset_while_a_worker_runs_is_refused_and_forced_reset_is_survived(
    server: ServerProcess, tmp_path: Path
) -> None:
    stream = new_stream("reset")
    store = await JetStreamEventStore.connect(server.url, stream=stream)
    proc = eventkit_run(server.url, stream, tmp_path, "echo")
    try:
        await store.append(f"{stream}.in.1", [RelAdded(amount=1)])
        await wait_outputs(store, 1, 60)
        env = cli_env(server.url, stream, tmp_path)
        refused = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "eventkit", "reactor", "reset", "echo", "--yes"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0 and "is running" in refused.stderr + refused.stdout
        forced = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "eventkit", "reactor", "reset", "echo", "--yes", "--force"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert forced.returncode == 0, forced.stderr
        await store.append(f"{stream}.in.2", [RelAdded(amount=2)])
        await wait_outputs(store, 2, 30)  # the worker set its consumer up again
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        await store.close()
    assert proc.returncode == 0, err


@pytest.mark.cluster
@pytest.mark.parametrize("kind", ["projector", "reactor"])
async def test_a_worker_survives_the_kill_of_its_consumers_leader(
    kind: str, cluster: Any, tmp_path: Path
) -> None:
    stream = new_stream("leader")
    store = await JetStreamEventStore.connect(
        cluster.urls, stream=stream, replicas=3, retry_for=30.0
    )
    worker_store = await JetStreamEventStore.connect(
        cluster.urls, stream=stream, replicas=3, retry_for=30.0
    )
    runner, applied = worker(kind, worker_store, tmp_path)
    supervisor = Supervisor([runner])  # what eventkit run does
    running = asyncio.ensure_future(supervisor.run())
    try:
        for n in range(5):
            await store.append(f"{stream}.in.{n}", [RelAdded(amount=n)])
        await until(lambda: applied() == 5, 60)
        consumer = runner.consumer.name if kind == "reactor" else runner._puller.name
        info = await store.js.consumer_info(stream, consumer)
        leader = info.cluster.leader if info.cluster else None
        assert leader
        cluster.node(leader).kill()
        killed_at = time.monotonic()
        for n in range(5, 10):
            await store.append(f"{stream}.in.{n}", [RelAdded(amount=n)])
        await until(lambda: applied() == 10, 90)
        record_result(
            f"R3 {kind} consumer leader kill -9",
            applied_again_after_s=round(time.monotonic() - killed_at, 2),
        )
        assert not running.done(), "the supervisor ended"
        cluster.node(leader).restart()
        await cluster.wait_stream_current(store.js, stream)  # whole again for the next test
    finally:
        supervisor.stop()
        (outcome,) = await asyncio.wait_for(running, 60)
        await worker_store.close()
        await store.close()
    assert outcome.error is None
