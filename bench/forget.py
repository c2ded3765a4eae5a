"""GDPR benchmarks: forget vs a raw nats-py delete_msg loop, and the cost of encryption.

Runs its own nats-server from the wheel (tmp store) and a tmp SQLite file::

    PYTHONPATH=. .venv/bin/python bench/forget.py [--events 1000] [--appends 2000] [--rounds 3]

Prints each figure and the ratio against its baseline measured in the same run (higher is
better; 1.0 = as fast as the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
from pathlib import Path

from eventkit.app import App
from eventkit.config import Settings
from eventkit.domain.aggregate import Aggregate
from eventkit.domain.events import Event
from eventkit.gdpr import forget_subject
from eventkit.projection.sql import make_engine, upgrade
from eventkit.server import start_server_process
from eventkit.store.jetstream import JetStreamEventStore

STREAM = "benchgdpr"


class BenchNamed(Event):
    name: str
    note: str


class Person(Aggregate):
    personal_data = True
    aggregate_type = "person"


app = App(stream=STREAM, aggregates=[Person])


async def fill(store: JetStreamEventStore, subject: str, n: int) -> list[int]:
    for start in range(0, n, 100):
        batch = [
            BenchNamed(name=f"n{i}", note="x" * 100) for i in range(start, min(n, start + 100))
        ]
        await store.append(subject, batch)
    return [m.sequence async for m in store.read_raw(subject)]


async def bench_forget(store: JetStreamEventStore, engine: object, n: int, rounds: int) -> None:
    ours, raw = [], []
    for r in range(rounds):
        plain, base = f"{STREAM}.thing.f{r}", f"{STREAM}.thing.b{r}"
        await fill(store, plain, n)
        seqs = await fill(store, base, n)
        t0 = time.perf_counter()
        for seq in seqs:
            await store.js.delete_msg(STREAM, seq)
        raw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        report = await forget_subject(app, store, engine, plain)  # type: ignore[arg-type]
        ours.append(time.perf_counter() - t0)
        assert report.messages == n
    o, b = statistics.median(ours), statistics.median(raw)
    print(f"forget a {n}-event subject:        {o * 1000:8.1f} ms  ({n / o:,.0f} msgs/s)")
    print(f"raw nats-py delete_msg loop:       {b * 1000:8.1f} ms  ({n / b:,.0f} msgs/s)")
    print(f"  ratio forget / raw (throughput):  {b / o:.2f}   (target >= 0.8)")


async def bench_append(store: JetStreamEventStore, n: int, rounds: int) -> None:
    enc: list[float] = []
    plain: list[float] = []
    for r in range(rounds):
        for subject, out in ((f"{STREAM}.person.p{r}", enc), (f"{STREAM}.thing.t{r}", plain)):
            await store.append(subject, [BenchNamed(name="warm", note="x")])
            t0 = time.perf_counter()
            for i in range(n):
                await store.append(subject, [BenchNamed(name=f"n{i}", note="x" * 100)])
            out.append(time.perf_counter() - t0)
    e, p = statistics.median(enc), statistics.median(plain)
    print(f"append {n} single events, encrypted: {n / e:8,.0f} events/s")
    print(f"append {n} single events, plain:     {n / p:8,.0f} events/s")
    print(f"  ratio encrypted / plain:          {p / e:.2f}   (target >= 0.8)")
    enc_r: list[float] = []
    plain_r: list[float] = []
    for _ in range(rounds):
        for subject, out in ((f"{STREAM}.person.p0", enc_r), (f"{STREAM}.thing.t0", plain_r)):
            t0 = time.perf_counter()
            events = await store.read(subject)
            out.append(time.perf_counter() - t0)
            assert len(events) == n + 1
    e, p = statistics.median(enc_r), statistics.median(plain_r)
    print(f"replay {n + 1} events, encrypted:      {e * 1000:8.1f} ms")
    print(f"replay {n + 1} events, plain:          {p * 1000:8.1f} ms")
    print(f"  ratio encrypted / plain (speed):  {p / e:.2f}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--appends", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server_process(Path(tmp) / "store")
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(engine)
        try:
            key = base64.b64encode(os.urandom(32)).decode()
            settings = Settings.from_env(
                {"EVENTKIT_NATS_URL": server.url, "EVENTKIT_MASTER_KEY": key}
            )
            store = await app.connect(settings)
            print(f"nats-server {store.server_version}, stream {STREAM}, R1 file storage")
            await bench_forget(store, engine, args.events, args.rounds)
            await bench_append(store, args.appends, args.rounds)
            await store.close()
        finally:
            engine.dispose()
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
