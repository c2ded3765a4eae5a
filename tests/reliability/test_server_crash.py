"""Scenario 2: a single server SIGKILLed and restarted (same port, same store directory).

Promise: no acknowledged append is lost or stored twice; a reader rides out a restart within
``retry_for``, or else gets a clear error (not a hang) and, resumed from its position, sees every
event exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from eventkit.errors import StoreUnavailableError
from eventkit.server import ServerProcess, free_port
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.testing.waiting import wait_until

from ._domain import RelAdded
from ._load import LoadLog, check_stream, writer
from .conftest import env_float, new_stream, record_result

pytestmark = [pytest.mark.nats, pytest.mark.slow]


async def test_kill_during_appends_loses_nothing(server: ServerProcess) -> None:
    stream = new_stream("crash")
    store = await JetStreamEventStore.connect(server.url, stream=stream, retry_for=30.0)
    load_seconds = env_float("EVENTKIT_RELIABILITY_LOAD_SECONDS", 3.0)
    try:
        log = LoadLog()
        stop = asyncio.Event()
        tasks = [asyncio.create_task(writer(store, log, stop, prefix=f"w{i}")) for i in range(4)]
        await asyncio.sleep(load_seconds / 2)
        acked_before = len(log.acked)
        killed_at = time.monotonic()
        server.kill()
        await asyncio.sleep(1.0)  # appends keep retrying while the server is down
        await asyncio.to_thread(server.start)
        restarted_at = time.monotonic()
        await wait_until(lambda: log.resume_after(restarted_at) is not None, 30)
        await asyncio.sleep(load_seconds / 2)
        stop.set()
        await asyncio.gather(*tasks)

        check = await check_stream(store, log)
        resumed = log.resume_after(killed_at)
        record_result(
            "2a single server kill -9 during appends",
            acked=check.acked,
            acked_before_kill=acked_before,
            lost=len(check.lost),
            duplicated=len(check.duplicated),
            unacked=len(log.failed),
            unacked_but_stored=check.unacked_stored,
            down_s=round(restarted_at - killed_at, 2),
            resume_after_kill_s=round(resumed or -1, 2),
            resume_after_restart_s=round(log.resume_after(restarted_at) or -1, 2),
        )
        assert log.resume_after(restarted_at) is not None, "appends did not resume after restart"
        assert check.lost == [], f"acknowledged appends missing: {check.lost[:5]}"
        assert check.duplicated == [], f"event ids stored twice: {check.duplicated[:5]}"
        assert check.acked > acked_before
        assert log.failed == [], [a.error for a in log.failed[:3]]
    finally:
        await store.close()


async def _fill(store: JetStreamEventStore, stream: str, total: int) -> None:
    for start in range(0, total, 500):
        subject = f"{stream}.load.s-{start // 500 % 7}"
        await store.append(subject, [RelAdded(amount=1) for _ in range(500)])


async def test_replay_rides_out_a_server_restart(server: ServerProcess) -> None:
    """Reads are retried while unanswered (for ``retry_for``), like appends: a replay that
    meets a crash and a restart just goes on, and sees every event once."""
    stream = new_stream("replay")
    store = await JetStreamEventStore.connect(server.url, stream=stream, retry_for=30.0)
    total = 20_000
    try:
        await _fill(store, stream, total)
        applied: Counter[int] = Counter()
        restart: asyncio.Task[None] | None = None
        killed_at = 0.0
        async for r in store.read_all():
            applied[r.sequence] += 1
            if restart is None and r.sequence >= total // 3:
                server.kill()
                killed_at = time.monotonic()

                async def later() -> None:
                    await asyncio.sleep(2.0)
                    await asyncio.to_thread(server.start)

                restart = asyncio.create_task(later())
        finished_after = time.monotonic() - killed_at
        assert restart is not None
        await restart
        record_result(
            "2b single server kill -9 during a replay, restarted after 2 s",
            events=total,
            read_before_kill=total // 3,
            missing=total - len(applied),
            applied_twice=sum(1 for n in applied.values() if n > 1),
            finished_s_after_kill=round(finished_after, 2),
        )
        assert sorted(applied) == list(range(1, total + 1))
        assert all(n == 1 for n in applied.values())
    finally:
        await store.close()


async def test_replay_against_a_dead_server_fails_clearly_and_resumes_exactly_once(
    server: ServerProcess,
) -> None:
    stream = new_stream("replay")
    store = await JetStreamEventStore.connect(server.url, stream=stream, retry_for=2.0)
    total = 20_000
    try:
        await _fill(store, stream, total)
        applied: Counter[int] = Counter()
        position = 0
        interrupted: Exception | None = None
        killed = False
        t0 = 0.0
        try:
            async for r in store.read_all():
                applied[r.sequence] += 1
                position = r.sequence
                if not killed and position >= total // 3:
                    server.kill()
                    killed = True
                    t0 = time.monotonic()
        except StoreUnavailableError as e:
            interrupted = e
        interrupted_after = time.monotonic() - t0
        await asyncio.to_thread(server.start)
        # resume from the last position, as a checkpointing reader does
        async for r in store.read_all(from_sequence=position + 1):
            applied[r.sequence] += 1
            position = r.sequence
        record_result(
            "2b' single server kill -9 during a replay, not restarted within retry_for (2 s)",
            events=total,
            read_before_kill=total // 3,
            error=type(interrupted).__name__ if interrupted else None,
            error_after_s=round(interrupted_after, 2),
            missing=total - len(applied),
            applied_twice=sum(1 for n in applied.values() if n > 1),
        )
        assert interrupted is not None, "the replay read past a dead server without an error"
        assert interrupted_after < 2.0 + store.read_timeout + 2.0, "a clear error, not a hang"
        assert sorted(applied) == list(range(1, total + 1))
        assert all(n == 1 for n in applied.values())
    finally:
        await store.close()


async def test_connect_to_a_down_server_fails_clearly() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(StoreUnavailableError) as err:
        await asyncio.wait_for(JetStreamEventStore.connect(url, stream="down"), 6)
    assert "cannot connect" in str(err.value)
