"""A projection worker frozen (SIGSTOP) inside a batch, lease ttl 2 s, on PostgreSQL and on SQLite,
with two standbys run as an operator runs them (``eventkit run``): one waiting before the freeze,
one started during it.

Promises: on PostgreSQL a standby takes the lease about a ttl after the freeze (at most 1.5 ttl:
the frozen session is ended a ttl after its last statement), and the frozen worker, woken, commits
nothing. On SQLite the frozen worker holds the file's write lock, which nothing can take from
it: the standby waits (past SQLite's 30 s busy timeout, never exiting) and takes over within
three ttls of the frozen worker's death. Every event is applied exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from projection_worker import (  # type: ignore[import-not-found]
    PwItemAdded,
    create_tables,
    expected_model,
    read_model,
)
from test_projection_kill import checkpoint, start_worker  # type: ignore[import-not-found]

from eventkit.projection import checkpoints
from eventkit.projection.sql import make_engine, read_transaction, upgrade

from .conftest import record_result

pytestmark = [pytest.mark.nats, pytest.mark.slow]

TTL = 2.0
INTEGRATION = Path(__file__).resolve().parents[1] / "integration"


async def append_items(store: Any, items: list[tuple[int, str, int]], count: int) -> None:
    for i in range(len(items), len(items) + count):
        key = f"k{i % 7}"
        seq = await store.append(f"{store.stream}.item.{key}", [PwItemAdded(key=key, n=i)])
        items.append((seq, key, i))


class Standby:
    """``eventkit run <projector> --lease-ttl 2 --owner <owner>``, its output collected."""

    def __init__(
        self, owner: str, nats_url: str, stream: str, db_url: str, px: str, home: Path
    ) -> None:
        self.proc = start_cli(owner, nats_url, stream, db_url, px, home)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    async def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, f"no {text!r} in {''.join(self.lines)}"
            await asyncio.sleep(0.1)


def start_cli(
    owner: str, nats_url: str, stream: str, db_url: str, px: str, home: Path
) -> subprocess.Popen[str]:
    env = dict(
        os.environ,
        PW_PREFIX=px,
        PW_STREAM=stream,
        EVENTKIT_NATS_URL=nats_url,
        EVENTKIT_DATABASE_URL=db_url,
        EVENTKIT_HOME=str(home),
        PYTHONPATH=os.pathsep.join([str(INTEGRATION), os.environ.get("PYTHONPATH", "")]),
    )
    command = [sys.executable, "-m", "eventkit", "--app", "projection_worker:cli_app", "run"]
    command += [f"{px}_totals", "--lease-ttl", str(TTL), "--owner", owner, "--json"]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def lease_owner(engine: Any, name: str) -> str | None:
    """Who holds the lease as last committed (expired or not)."""
    with read_transaction(engine) as db:
        lease = checkpoints.get_lease(db, name)
    return lease.owner if lease is not None else None


async def taken_over_within(engine: Any, name: str, since: float, limit: float) -> float | None:
    """Seconds from ``since`` until a standby holds the lease (None: not within ``limit``
    seconds). Its first batch comes after; how long that takes depends on the machine's load."""
    while time.monotonic() - since < limit:
        if lease_owner(engine, name) in ("B", "C"):
            return time.monotonic() - since
        await asyncio.sleep(0.05)
    return None


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_a_worker_frozen_inside_a_batch_is_taken_over_in_bounded_time(
    store: Any, nats_url: str, tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    db_url = str(request.getfixturevalue("sqlite_url" if database == "sqlite" else "pg_url"))
    engine = make_engine(db_url)
    upgrade(engine)
    px = f"t_{uuid.uuid4().hex[:8]}"
    name = f"{px}_totals"
    create_tables(engine, px)
    items: list[tuple[int, str, int]] = []
    await append_items(store, items, 4000)  # ~80 s of work at 20 ms an event
    end = await store.last_sequence()
    a = start_worker(nats_url, store.stream, db_url, px, "A", "--live", "--slow", "0.02",
                     "--lease-ttl", str(TTL))  # fmt: skip
    procs: dict[str, subprocess.Popen[str]] = {"A": a}
    home = tmp_path / "home"
    try:
        b = Standby("B", nats_url, store.stream, db_url, px, home)
        procs["B"] = b.proc
        # on SQLite a standby's start waits for A's write lock (up to the 30 s busy timeout on a
        # loaded machine): A's work is long enough to be in the middle of it even then
        await b.wait_for("standing by")
        deadline = time.monotonic() + 30
        while checkpoint(engine, name) < 200 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert lease_owner(engine, name) == "A"
        at = checkpoint(engine, name)
        assert at < end - 500, f"A is not in the middle of its catch-up ({at}): {b.lines}"
        a.send_signal(signal.SIGSTOP)  # inside a batch: its 64 events take ~1.3 s
        frozen_at = time.monotonic()
        c = Standby("C", nats_url, store.stream, db_url, px, home)  # started during the freeze
        procs["C"] = c.proc
        if database == "postgres":
            taken = await taken_over_within(engine, name, frozen_at, 30)
            assert taken is not None, "the standby never took over the frozen worker"
            # about the ttl: the frozen session is ended a ttl after its last statement
            assert taken <= 1.5 * TTL, f"taken over {taken:.1f}s after the freeze"
            a.send_signal(signal.SIGCONT)  # wakes up: must not commit its stale batch
        else:
            # the frozen worker holds SQLite's write lock: the standbys wait, past the busy
            # timeout (30 s), and do not exit
            while time.monotonic() - frozen_at < 36:
                for standby in (b, c):
                    assert standby.proc.poll() is None, "".join(standby.lines)
                await asyncio.sleep(0.5)
            assert lease_owner(engine, name) == "A"  # nobody could write meanwhile
            a.kill()  # the frozen worker dies: its transaction is rolled back
            a.wait(timeout=20)
            taken = await taken_over_within(engine, name, time.monotonic(), 30)
            assert taken is not None, "the standby never took over after the frozen worker died"
            assert taken <= 3 * TTL, f"taken over {taken:.1f}s after the frozen worker died"
        await append_items(store, items, 50)
        end = await store.last_sequence()
        deadline = time.monotonic() + 60
        while checkpoint(engine, name) < end and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert checkpoint(engine, name) == end
        assert read_model(engine, px) == expected_model(items)  # each event applied once
        assert b.proc.poll() is None and c.proc.poll() is None  # the standbys still run
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=20)
        engine.dispose()
    after = "the freeze" if database == "postgres" else "the frozen worker's death"
    record_result(
        f"worker frozen inside a batch, {database}, standby `eventkit run`",
        lease_ttl_s=TTL,
        **{f"taken_over_s_after {after}": round(taken, 2)},
    )
