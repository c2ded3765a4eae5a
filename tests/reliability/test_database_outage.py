"""Availability of the projection workers: a read-model database that goes away for 4 s under
load, and an active worker frozen (SIGSTOP) inside a batch for far longer than its lease.

Promises: the workers ride out the outage (capped backoff, a log line saying what they wait
for) and resume with every event applied exactly once; on PostgreSQL a standby takes over a
frozen worker's lease within about the lease ttl, and the frozen worker, woken, commits nothing.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from projection_worker import (  # type: ignore[import-not-found]
    PwItemAdded,
    create_tables,
    expected_model,
    make_projector,
    read_model,
)
from tcp_proxy import Proxy  # type: ignore[import-not-found]
from test_projection_kill import checkpoint, start_worker  # type: ignore[import-not-found]

from eventkit.projection import checkpoints
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import make_engine, read_transaction, upgrade

from .conftest import record_result

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.postgres]


async def _append(store: Any, items: list[tuple[int, str, int]], count: int) -> None:
    start = len(items)
    for i in range(start, start + count):
        key = f"k{i % 7}"
        seq = await store.append(f"{store.stream}.item.{key}", [PwItemAdded(key=key, n=i)])
        items.append((seq, key, i))


async def test_workers_ride_out_a_database_outage_and_apply_once(
    store: Any, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_url(pg_url)
    proxy = await Proxy(url.host or "127.0.0.1", url.port or 5432).start()
    through = url.set(port=proxy.port).render_as_string(hide_password=False)
    direct = make_engine(pg_url)
    upgrade(direct)
    px = f"t_{uuid.uuid4().hex[:8]}"
    create_tables(direct, px)
    projector = make_projector(px)
    items: list[tuple[int, str, int]] = []
    await _append(store, items, 300)
    engines = [make_engine(through, pool_pre_ping=True) for _ in range(2)]

    def make_runners() -> list[ProjectionRunner]:
        # off the event loop: a runner reads the database when it is made, through the proxy,
        # which runs on this loop
        return [
            ProjectionRunner(projector, store, e, owner=o, lease_ttl=1.5)
            for e, o in zip(engines, ("active", "standby"), strict=True)
        ]

    runners = await asyncio.to_thread(make_runners)
    tasks = [asyncio.create_task(r.run()) for r in runners]
    await _append(store, items, 300)
    proxy.cut()  # the database is unreachable for 4 s, under append load
    loader = asyncio.create_task(_append(store, items, 400))
    await asyncio.sleep(4.0)
    assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
    proxy.restore()
    await loader
    end = await store.last_sequence()
    deadline = time.monotonic() + 60
    while checkpoint(direct, projector.name) < end and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    assert not any(t.done() for t in tasks)  # both workers are still running
    assert checkpoint(direct, projector.name) == end
    assert read_model(direct, px) == expected_model(items)  # each event applied exactly once
    assert any("waiting for the database" in r.getMessage() for r in caplog.records)
    for r in runners:
        r.stop()
    await asyncio.gather(*tasks)
    record_result("database outage 4 s", events=len(items), both_alive=True)
    for e in engines:
        e.dispose()
    direct.dispose()
    await proxy.close()


@pytest.mark.parametrize("rows", [False, True], ids=["projector", "row_projector"])
async def test_a_frozen_worker_is_taken_over_and_fenced(
    store: Any, nats_url: str, pg_url: str, tmp_path: Path, rows: bool
) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    px = f"t_{uuid.uuid4().hex[:8]}"
    name = f"{px}_totals"
    create_tables(engine, px)
    items: list[tuple[int, str, int]] = []
    await _append(store, items, 1200)
    end = await store.last_sequence()
    activity = tmp_path / "activity.log"
    args: tuple[str, ...] = ("--live", "--slow", "0.01", "--lease-ttl", "2")
    args += ("--rows",) if rows else ("--activity", str(activity))
    a = start_worker(nats_url, store.stream, pg_url, px, "A", *args)
    await asyncio.sleep(0.5)
    b = start_worker(nats_url, store.stream, pg_url, px, "B", *args)
    procs = {"A": a, "B": b}
    try:
        deadline = time.monotonic() + 30
        while checkpoint(engine, name) < end // 5 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        with read_transaction(engine) as db:
            lease = checkpoints.get_lease(db, name)
        assert lease is not None and lease.live
        frozen, standby = lease.owner, ("B" if lease.owner == "A" else "A")
        procs[frozen].send_signal(signal.SIGSTOP)  # inside a batch: its 64 events take ~0.6 s
        stopped_at = time.monotonic()
        at_stop = checkpoint(engine, name)
        taken = None
        while time.monotonic() - stopped_at < 30:
            with read_transaction(engine) as db:
                lease = checkpoints.get_lease(db, name)
            if lease is not None and lease.owner == standby and checkpoint(engine, name) > at_stop:
                taken = time.monotonic() - stopped_at
                break
            await asyncio.sleep(0.1)
        assert taken is not None, "the standby never took over while the active worker was frozen"
        procs[frozen].send_signal(signal.SIGCONT)  # wakes up: must not commit its stale batch
        deadline = time.monotonic() + 60
        while checkpoint(engine, name) < end and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert checkpoint(engine, name) == end

        def model() -> Any:  # a row projector writes the totals only
            got, want = read_model(engine, px), expected_model(items)
            return (got[0], want[0]) if rows else (got, want)

        got, want = model()
        assert got == want  # exactly once: the frozen was fenced
        # the standby stops; the worker that was frozen takes the lease back and goes on from SQL
        # (a row projector's cache of before the freeze is dropped when it takes the lease)
        procs[standby].send_signal(signal.SIGTERM)
        procs[standby].wait(timeout=20)
        await _append(store, items, 70)
        end = await store.last_sequence()
        deadline = time.monotonic() + 60
        while checkpoint(engine, name) < end and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert checkpoint(engine, name) == end
        with read_transaction(engine) as db:
            lease = checkpoints.get_lease(db, name)
        assert lease is not None and lease.owner == frozen
        got, want = model()
        assert got == want
        procs[frozen].send_signal(signal.SIGTERM)
        procs[frozen].wait(timeout=20)
    finally:
        for proc in procs.values():  # a failed assertion must not leave workers running
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=20)
    record_result(
        f"frozen worker (SIGSTOP) on PostgreSQL, {'RowProjector' if rows else 'Projector'}",
        lease_ttl_s=2,
        takeover_s=round(taken, 2),
    )
    engine.dispose()


@pytest.mark.parametrize("live", [False, True], ids=["catch_up", "run"])
async def test_a_handler_idle_past_the_bound_halts_with_the_fix_instead_of_looping(
    store: Any, pg_url: str, live: bool
) -> None:
    # a handler that waits between statements longer than twice the lease ttl has its
    # transaction ended by PostgreSQL every time: after a few tries the projector halts and says
    # why, instead of trying the same batch for ever
    engine = make_engine(pg_url)
    upgrade(engine)
    px = f"t_{uuid.uuid4().hex[:8]}"
    create_tables(engine, px)
    items: list[tuple[int, str, int]] = []
    await _append(store, items, 3)
    projector = make_projector(px, slow=1.2)
    runner = ProjectionRunner(projector, store, engine, lease_ttl=0.5)
    result = await asyncio.wait_for(runner.run() if live else runner.catch_up(), 60)
    assert result.halted and result.checkpoint == 0
    assert result.error is not None and "idle" in result.error and "--lease-ttl" in result.error
    with read_transaction(engine) as db:
        cp = checkpoints.get_checkpoint(db, projector.name)
    assert cp.state == "halted" and cp.last_sequence == 0
    assert read_model(engine, px) == ([], [])  # nothing of the ended transactions was kept
    # with a lease ttl the handler fits in, the same events apply
    fits = await ProjectionRunner(projector, store, engine, lease_ttl=5).catch_up()
    assert not fits.halted and read_model(engine, px) == expected_model(items)
    engine.dispose()
