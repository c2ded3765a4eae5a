"""A lease change moves delivery: a worker frozen between batches (SIGSTOP) keeps pull requests
outstanding on the projector's consumer; the standby that takes the lease over must receive
what is appended next, not the frozen worker's requests."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from projection_worker import PwItemAdded, create_tables  # type: ignore[import-not-found]
from test_projection_kill import checkpoint, start_worker  # type: ignore[import-not-found]

from eventkit.projection import checkpoints
from eventkit.projection.sql import make_engine, read_transaction, upgrade

from .conftest import record_result

pytestmark = [pytest.mark.nats, pytest.mark.slow]


async def append(store: Any, count: int) -> int:
    for i in range(count):
        await store.append(f"{store.stream}.item.k{i % 5}", [PwItemAdded(key=f"k{i % 5}", n=i)])
    return int(await store.last_sequence())


def owner(engine: Any, name: str) -> str | None:
    with read_transaction(engine) as db:
        lease = checkpoints.get_lease(db, name)
    return lease.owner if lease is not None and lease.live else None


async def test_the_standby_receives_what_is_appended_after_it_took_over(
    store: Any, nats_url: str, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'rm.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    px = f"t_{uuid.uuid4().hex[:8]}"
    name = f"{px}_totals"
    create_tables(engine, px)
    end = await append(store, 20)
    args = ("--live", "--lease-ttl", "2")
    a = start_worker(nats_url, store.stream, db_url, px, "A", *args)
    procs = [a]
    try:
        deadline = time.monotonic() + 30
        while checkpoint(engine, name) < end:
            assert time.monotonic() < deadline, "A never caught up"
            await asyncio.sleep(0.05)
        b = start_worker(nats_url, store.stream, db_url, px, "B", *args)
        procs.append(b)
        await asyncio.sleep(1.0)  # A idle between batches, its pull requests outstanding
        a.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 30
        while owner(engine, name) != "B":
            assert time.monotonic() < deadline, "B never took the lease"
            await asyncio.sleep(0.1)
        appended_at = time.monotonic()
        end = await append(store, 10)
        while checkpoint(engine, name) < end:
            assert time.monotonic() - appended_at < 60, "B never applied the new events"
            await asyncio.sleep(0.05)
        took = time.monotonic() - appended_at
        record_result(
            "standby after a lease change, frozen worker's pulls", applied_s=round(took, 2)
        )
        assert took < 5.0, f"the new lease holder applied new events only after {took:.1f}s"
        a.send_signal(signal.SIGCONT)  # wakes up: it must not take deliveries back
        end = await append(store, 10)
        deadline = time.monotonic() + 30
        while checkpoint(engine, name) < end:
            assert time.monotonic() < deadline, "events after A woke up were not applied"
            await asyncio.sleep(0.05)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(timeout=20)
        engine.dispose()
