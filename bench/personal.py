"""Personal data at scale: a runner over N events spread over M encrypted subjects, beside the
same stream without encryption, in one run (each replay in a child process of its own).

    python bench/personal.py [--events 1000000] [--subjects 100000] [--batch 1000]

Prints, for the encrypted and the plain stream: events/s of a catch-up into SQLite, peak RSS of
the replaying process, the key cache's size, and the ratios encrypted/plain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Column, Integer, MetaData, String, Table
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.orm import Session

from eventkit import Event, RecordedEvent, on
from eventkit.gdpr.keys import KeyStore
from eventkit.projection.projector import Projector
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import make_engine, upgrade
from eventkit.server import start_server_process
from eventkit.store.base import Write
from eventkit.store.codec import Codec
from eventkit.store.jetstream import JetStreamEventStore

MASTER = bytes(range(32))
md = MetaData()
totals = Table(
    "bench_totals", md, Column("subject", String, primary_key=True), Column("n", Integer)
)


class BenchVisit(Event):
    page: str


class Visits(Projector):
    name = "bench_visits"
    batch_size = 1000

    @on(BenchVisit)
    def visited(self, e: BenchVisit, rec: RecordedEvent[Any], db: Session) -> None:
        db.execute(
            insert(totals)
            .values(subject=rec.subject, n=1)
            .on_conflict_do_update(index_elements=["subject"], set_={"n": totals.c.n + 1})
        )


async def connect(url: str, stream: str, encrypted: bool) -> JetStreamEventStore:
    if not encrypted:
        return await JetStreamEventStore.connect(url, stream=stream)
    keys = KeyStore(master_key=MASTER, personal=[f"{stream}.person.*"])
    store = await JetStreamEventStore.connect(url, stream=stream, codec=Codec(cipher=keys))
    await keys.attach(store)
    return store


async def fill(url: str, stream: str, encrypted: bool, events: int, subjects: int) -> None:
    """``events`` events round-robin over ``subjects`` subjects, 500 subjects per atomic append,
    each write with its subject's expected sequence (as a repository sends it)."""
    store = await connect(url, stream, encrypted)
    names = [f"{stream}.person.p{i:07d}" for i in range(subjects)]
    last: dict[str, int] = {}
    done = 0
    while done < events:
        chunk = [names[(done + k) % subjects] for k in range(min(500, events - done, subjects))]
        writes = [Write(s, [BenchVisit(page=f"/{s}")], last.get(s, 0)) for s in chunk]
        for s, seq in zip(chunk, await store.append_many(writes), strict=True):
            last[s] = seq
        done += len(chunk)
    await store.close()


async def child(url: str, stream: str, db: str, encrypted: bool) -> None:
    store = await connect(url, stream, encrypted)
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    md.create_all(engine)
    t0 = time.perf_counter()
    result = await ProjectionRunner(Visits(), store, engine, batch_size=1000).catch_up()
    elapsed = time.perf_counter() - t0
    cipher = store.codec.cipher
    out = {
        "events": result.processed,
        "seconds": elapsed,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cached_keys": len(cipher.cache) if isinstance(cipher, KeyStore) else 0,
    }
    print(json.dumps(out), flush=True)
    await store.close()


def replay(url: str, stream: str, db: Path, encrypted: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", url, stream, str(db)]
    if encrypted:
        cmd.append("--encrypted")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--subjects", type=int, default=100_000)
    ap.add_argument("--child", nargs=3, metavar=("URL", "STREAM", "DB"))
    ap.add_argument("--encrypted", action="store_true")
    args = ap.parse_args()
    if args.child:
        await child(*args.child, encrypted=args.encrypted)
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server_process(Path(tmp) / "store")
        try:
            rows = {}
            for name, encrypted in (("plain", False), ("encrypted", True)):
                t0 = time.perf_counter()
                await fill(server.url, name, encrypted, args.events, args.subjects)
                print(f"{name}: filled {args.events} events in {time.perf_counter() - t0:.0f}s")
                rows[name] = replay(server.url, name, Path(tmp) / f"{name}.db", encrypted)
                r = rows[name]
                print(
                    f"{name}: {r['events']} events in {r['seconds']:.1f}s "
                    f"({r['events'] / r['seconds']:,.0f} ev/s), peak RSS {r['rss_mb']:.0f} MB, "
                    f"{r['cached_keys']} keys cached",
                    flush=True,
                )
            p, e = rows["plain"], rows["encrypted"]
            rate = (e["events"] / e["seconds"]) / (p["events"] / p["seconds"])
            print(f"encrypted/plain: speed {rate:.2f}, RSS {e['rss_mb'] / p['rss_mb']:.2f}")
        finally:
            server.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    asyncio.run(main())
