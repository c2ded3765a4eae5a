"""Scale-out of one partitioned projector over worker processes, measured in one run.

Runs its own nats-server from the wheel (tmp store) and a fresh PostgreSQL schema::

    PYTHONPATH=. .venv/bin/python bench/partitions.py [--events 4000] [--workers 1,2,4]

An I/O-bound projector (its handler waits 2 ms per event, then upserts one row per entity on
PostgreSQL), ``partitions = 16``. For each worker count: the workers start live, wait until
they share the partitions, then the events are appended and the clock runs until every
partition's checkpoint is at the end. Baseline in the same run: the same projector without
partitions, one plain runner. The runs are interleaved over ``--rounds`` and the best of each
is kept (the machine is shared: its load moves between runs). ``BP_NO_WRITE=1``: the handler
only waits (no SQL write), to see the runner's scaling apart from the database's. ``--kill``:
4 workers, one SIGKILLed a third of the way; prints how long its partitions waited for a new
owner and the longest time no partition moved. ``--rebalance``: the pause each kind of
rebalance causes under load, in one run: 4 workers with nothing happening (the baseline), a
fourth worker joining 3, one of 4 leaving (SIGTERM), one of 4 SIGKILLed, each a third of the
way; per kind, the longest time one partition did not move while behind (and as a multiple of
the lease ttl and of the baseline's). ``BP_ROWS=1``: a CPU-bound ``RowProjector`` instead (no
wait), for its ratio and what bounds it.
Targets: 2 workers >= 1.8x one worker, 4 workers >= 3.2x.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventkit import Event, JetStreamEventStore, Projector, RecordedEvent, RowProjector, on
from eventkit.projection import partition_rows as pr
from eventkit.projection.runner import runner_for
from eventkit.projection.sql import make_engine, read_transaction, upgrade
from eventkit.server import start_server_process

PG = os.environ.get(
    "EVENTKIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PARTITIONS = 16
WAIT = 0.002
LEASE_TTL = 3.0
NO_WRITE = os.environ.get("BP_NO_WRITE") == "1"
ROWS = os.environ.get("BP_ROWS") == "1"


class BpTicked(Event):
    n: int


def make(prefix: str, partitions: int) -> Projector:
    md = MetaData()
    rows = Table(
        f"{prefix}_rows",
        md,
        Column("subject", String(100), primary_key=True),
        Column("n", Integer, nullable=False),
    )

    class Waits(Projector):
        @on(BpTicked)
        def ticked(self, e: BpTicked, rec: RecordedEvent[Any], db: Session) -> None:
            time.sleep(WAIT)  # an I/O-bound handler: it waits, it does not compute
            if NO_WRITE:
                return
            stmt = insert(rows).values(subject=rec.subject, n=e.n)
            db.execute(stmt.on_conflict_do_update(index_elements=["subject"], set_={"n": e.n}))

    Waits.metadata = md
    attrs = {"name": f"{prefix}_waits", "partitions": partitions}
    if ROWS:
        return make_rows(prefix, partitions)
    return type("Waits", (Waits,), attrs)()  # type: ignore[no-any-return]


def make_rows(prefix: str, partitions: int) -> Projector:
    """``BP_ROWS=1``: a CPU-bound ``RowProjector`` (the fold and the bulk upsert, no wait)."""
    md = MetaData()
    table = Table(
        f"{prefix}_rows",
        md,
        Column("subject", String(100), primary_key=True),
        Column("n", Integer, nullable=False),
        Column("count", Integer, nullable=False, default=0),
    )

    class Folds(RowProjector):
        def key(self, rec: RecordedEvent[Any]) -> Any:
            return rec.subject

        @on(BpTicked)
        def ticked(self, e: BpTicked, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            row["n"] = e.n
            row["count"] += 1

    Folds.metadata = md
    attrs = {"name": f"{prefix}_waits", "partitions": partitions, "table": table}
    return type("Folds", (Folds,), attrs)()  # type: ignore[no-any-return]


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_schema(schema: str) -> str:
    return f"{PG}?options=-csearch_path%3D{schema}"


async def worker(url: str, stream: str, db: str, prefix: str, partitions: int) -> None:
    store = await JetStreamEventStore.connect(url, stream=stream)
    engine = make_engine(db)
    runner = runner_for(
        make(prefix, partitions), store, engine, lease_ttl=LEASE_TTL, batch_size=256 if ROWS else 64
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, runner.stop)
    print("started", flush=True)
    await runner.run()
    await store.close()


def at_end(engine: Any, name: str, end: int, partitions: int) -> bool:
    from eventkit.projection import checkpoints as cps

    with read_transaction(engine) as db:
        if partitions == 1:
            return cps.get_checkpoint(db, name).last_sequence >= end
        rows = pr.rows(db, name)
    return bool(rows) and all(r.last_sequence >= end for r in rows)


def owners(engine: Any, name: str) -> int:
    with read_transaction(engine) as db:
        return len({r.owner for r in pr.rows(db, name) if r.live})


async def one(
    url: str,
    db: str,
    workers: int,
    partitions: int,
    events: int,
    kill: bool = False,
    rebalance: str = "",
) -> float:
    """Seconds from the first append until every event is applied (``kill``: SIGKILL one
    worker a third of the way and print how long applying paused; ``rebalance``: "none",
    "join", "leave" or "kill" a third of the way, and return the longest stall of one
    partition instead)."""
    prefix = f"b{uuid.uuid4().hex[:6]}"
    stream = f"bp_{prefix}"
    engine = make_engine(db)
    make(prefix, partitions).metadata.create_all(engine)  # type: ignore[union-attr]
    store = await JetStreamEventStore.connect(url, stream=stream)

    async def append_all() -> None:
        for i in range(0, events, 200):
            await asyncio.gather(
                *(
                    store.append(f"{stream}.ent.e{j % 400}", [BpTicked(n=j)])
                    for j in range(i, min(events, i + 200))
                )
            )

    if ROWS:  # the events first: the clock runs from the workers' start (catching up)
        await append_all()
    procs = []
    started = time.perf_counter()

    def spawn() -> Any:
        return subprocess.Popen(
            [sys.executable, __file__, "--worker", url, stream, db, prefix, str(partitions)],
            stdout=subprocess.PIPE,
            text=True,
        )

    if rebalance == "join":
        workers -= 1  # the last one joins a third of the way
    for _ in range(workers):
        procs.append(spawn())
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "started"
        name = f"{prefix}_waits"
        if ROWS:
            pass
        elif partitions > 1:
            deadline = time.monotonic() + 60
            while owners(engine, name) < workers:
                assert time.monotonic() < deadline, "workers did not share the partitions"
                await asyncio.sleep(0.1)
        else:
            await asyncio.sleep(2.0)
        start = started if ROWS else time.perf_counter()
        if not ROWS:
            await append_all()
        end = await store.last_sequence()
        appended = time.perf_counter() - start
        if kill:
            await killed_pause(engine, name, end, procs[1])
        stall = 0.0
        if rebalance:
            acts = {
                "none": lambda: None,
                "join": lambda: procs.append(spawn()),
                "leave": lambda: procs[1].send_signal(signal.SIGTERM),
                "kill": lambda: procs[1].send_signal(signal.SIGKILL),
            }
            stall, none_moved = await rebalance_pause(engine, name, end, acts[rebalance])
            print(
                f"  {rebalance:<6}: longest stall of one partition {stall:.2f}s "
                f"({stall / LEASE_TTL:.2f} ttl); longest time no partition moved "
                f"{none_moved:.2f}s",
                flush=True,
            )
        while not at_end(engine, name, end, partitions):  # noqa: ASYNC110 (polling SQL)
            await asyncio.sleep(0.05)
        took = time.perf_counter() - start
        with engine.connect() as conn:
            table = Table(f"{prefix}_rows", MetaData(), autoload_with=conn)
            written = len(conn.execute(select(table)).all())
            assert written == (0 if NO_WRITE else min(400, events))
        cpu = sum(cpu_seconds(p.pid) for p in procs if p.poll() is None)
        print(
            f"  {workers} worker(s), partitions={partitions}: {took:.2f}s "
            f"({events / took:.0f} ev/s; appending took {appended:.2f}s; "
            f"workers' CPU {cpu:.1f}s)",
            flush=True,
        )
        return stall if rebalance else took
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
        await store.js.delete_stream(stream)
        await store.close()
        engine.dispose()


def longest_stall(samples: list[tuple[float, dict[int, int], dict[int, str]]], end: int) -> float:
    """The longest time one partition's checkpoint did not move while it was behind ``end``."""
    longest = 0.0
    for part in samples[0][1]:
        changed = samples[0][0]
        for a, b in itertools.pairwise(samples):
            if b[1][part] != a[1][part]:
                changed = b[0]
            if a[1][part] < end:
                longest = max(longest, b[0] - changed)
    return longest


async def rebalance_pause(engine: Any, name: str, end: int, act: Any) -> tuple[float, float]:
    """Call ``act()`` once a third of the events are applied; the longest stall of one partition
    and the longest time no partition moved, until every partition is at the end."""
    samples: list[tuple[float, dict[int, int], dict[int, str]]] = []
    acted = False
    while True:
        with read_transaction(engine) as db:
            rows = pr.rows(db, name)
        seqs = {r.partition: r.last_sequence for r in rows}
        samples.append((time.perf_counter(), seqs, {}))
        if not acted and sum(seqs.values()) >= len(seqs) * end / 3:
            act()
            acted = True
        if seqs and min(seqs.values()) >= end:
            break
        await asyncio.sleep(0.02)
    none_moved, changed = 0.0, samples[0][0]
    for a, b in itertools.pairwise(samples):
        if a[1] != b[1]:
            changed = b[0]
        none_moved = max(none_moved, b[0] - changed)
    return longest_stall(samples, end), none_moved


async def killed_pause(engine: Any, name: str, end: int, victim: Any) -> None:
    """SIGKILL ``victim`` once a third of the events are applied; print the longest time no
    partition moved and how long each of the victim's partitions waited for a new owner."""
    samples: list[tuple[float, dict[int, int], dict[int, str]]] = []

    def sample() -> None:
        with read_transaction(engine) as db:
            rows = pr.rows(db, name)
        samples.append(
            (
                time.perf_counter(),
                {r.partition: r.last_sequence for r in rows},
                {r.partition: r.owner for r in rows if r.live},
            )
        )

    killed_at = 0.0
    lost: set[int] = set()
    while True:
        sample()
        _, seqs, owners_now = samples[-1]
        if not killed_at and sum(seqs.values()) >= len(seqs) * end / 3:
            victim.send_signal(signal.SIGKILL)
            killed_at = time.perf_counter()
            lost = {p for p, o in owners_now.items() if f":{victim.pid}:" in o}
        if seqs and min(seqs.values()) >= end:
            break
        await asyncio.sleep(0.02)
    longest, changed = 0.0, samples[0][0]
    for a, b in itertools.pairwise(samples):
        if a[1] != b[1]:
            changed = b[0]
        longest = max(longest, b[0] - changed)
    gaps: list[float] = []
    for part in lost:
        before = next(s[1][part] for s in samples if s[0] >= killed_at)
        moved = next((s[0] for s in samples if s[0] > killed_at and s[1][part] > before), None)
        if moved is not None:
            gaps.append(moved - killed_at)
    print(
        f"  SIGKILL of one of the workers: its {len(lost)} partitions applying again "
        f"{min(gaps, default=0):.1f}-{max(gaps, default=0):.1f}s after the kill (lease ttl "
        f"{LEASE_TTL:g}s); longest time no partition moved: {longest:.1f}s",
        flush=True,
    )


async def rebalances(url: str, db: str, events: int, rounds: int) -> None:
    """``--rebalance``: each kind interleaved over ``rounds``; the worst stall of each."""
    kinds = ["none", "join", "leave", "kill"]
    stalls: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for k in kinds:
            stalls[k].append(await one(url, db, 4, PARTITIONS, events, rebalance=k))
    base = max(stalls["none"])
    print(f"\n{'rebalance':<10}{'stall s':>9}{'x ttl':>8}{'x none':>8}   (worst of {rounds})")
    for k in kinds:
        worst = max(stalls[k])
        print(f"{k:<10}{worst:>9.2f}{worst / LEASE_TTL:>8.2f}{worst / base:>8.2f}")


async def main(events: int, counts: list[int], rounds: int, kill: bool, rebalance: bool) -> None:
    schema = f"bp_{uuid.uuid4().hex[:8]}"
    dsn = PG.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    db = with_schema(schema)
    upgrade(make_engine(db))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            srv = start_server_process(Path(tmp) / "store")
            try:
                print(
                    f"{events} events over 400 entities, handler waits {WAIT * 1000:g} ms, "
                    f"PostgreSQL"
                )
                runs: dict[int, list[float]] = {}
                # interleaved: the machine's load moves between runs
                if rebalance:
                    await rebalances(srv.url, db, events, rounds)
                    return
                for _ in range(0 if kill else rounds):
                    runs.setdefault(0, []).append(await one(srv.url, db, 1, 1, events))
                    for w in counts:
                        runs.setdefault(w, []).append(await one(srv.url, db, w, PARTITIONS, events))
                if kill:
                    await one(srv.url, db, 4, PARTITIONS, events, kill=True)
                    return
                base = min(runs.pop(0))  # the best of each: the least disturbed by others
                times = {w: min(ts) for w, ts in runs.items()}
            finally:
                srv.stop()
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    one_worker = times.get(1, base)
    print(f"\n{'workers':<10}{'seconds':>9}{'x one worker':>14}{'x unpartitioned':>17}")
    print(f"{'plain':<10}{base:>9.2f}{one_worker / base:>14.2f}{1:>17.2f}")
    for w, t in times.items():
        print(f"{w:<10}{t:>9.2f}{one_worker / t:>14.2f}{base / t:>17.2f}")
    print("targets: 2 workers >= 1.8x, 4 workers >= 3.2x one worker")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, stream, db, prefix, parts = sys.argv[2:7]
        if os.environ.get("BP_LOG"):
            import logging

            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
        asyncio.run(worker(url, stream, db, prefix, int(parts)))
        sys.exit(0)
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=4000)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--kill", action="store_true", help="4 workers, one SIGKILLed: the pause")
    ap.add_argument("--rebalance", action="store_true", help="the pause of each rebalance kind")
    a = ap.parse_args()
    counts = [int(x) for x in a.workers.split(",")]
    asyncio.run(main(a.events, counts, a.rounds, a.kill, a.rebalance))
