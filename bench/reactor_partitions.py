"""What partitions cost a reactor, and what more workers give it.

Runs its own nats-server from the wheel (tmp store)::

    PYTHONPATH=. .venv/bin/python bench/reactor_partitions.py [--events 20000] [--subjects 1000]

1. Overhead, one worker process: an ``ordered = "subject"`` reactor with a handler that does
   nothing, unpartitioned and with 4 and 8 partitions (each partition's consumer reads all the
   reactor's subjects and passes the other partitions' events over). Events per second and
   nats-server CPU seconds, as ratios against the unpartitioned reactor.
2. Scale-out: the same reactor with 8 partitions and a handler that computes for ``--cpu``
   seconds (a worker's CPU is what a second process adds: ``concurrency`` applies per
   partition held, so waiting handlers already overlap in one process), run by 1 and by 2
   worker processes started together on events stored beforehand. Ratio of the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventkit import Event, RecordedEvent, on
from eventkit.reaction.consumer import consumer_name, partition_consumer_name
from eventkit.reaction.context import ReactorContext
from eventkit.reaction.reactor import Reactor
from eventkit.reaction.runner import ReactorRunner
from eventkit.server import start_server_process
from eventkit.store.jetstream import JetStreamEventStore


class BpTicked(Event):
    n: int


def make(name: str, stream: str, partitions: int, cpu: float, concurrency: int) -> Reactor:
    class Bench(Reactor):
        ordered = "subject"

        @on(BpTicked)
        async def ticked(self, e: BpTicked, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
            end = time.process_time() + cpu
            while time.process_time() < end:
                pass

    attrs = {
        "name": name,
        "subjects": [f"{stream}.ent.*"],
        "partitions": partitions,
        "concurrency": concurrency,
    }
    return type("Bench", (Bench,), attrs)()  # type: ignore[return-value]


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def fill(url: str, stream: str, events: int, subjects: int) -> None:
    store = await JetStreamEventStore.connect(url, stream=stream)
    for start in range(0, events, 500):
        await asyncio.gather(
            *(
                store.append(f"{stream}.ent.e{i % subjects}", [BpTicked(n=i)])
                for i in range(start, min(events, start + 500))
            )
        )
    await store.close()


async def _worker(url: str, stream: str, name: str, parts: int, wait: float, conc: int) -> None:
    store = await JetStreamEventStore.connect(url, stream=stream)
    runner = ReactorRunner(make(name, stream, parts, wait, conc), store, lease_ttl=2.0)
    await runner.catch_up()
    await store.close()


def worker(url: str, stream: str, name: str, parts: int, wait: float, conc: int) -> None:
    asyncio.run(_worker(url, stream, name, parts, wait, conc))


async def drained(url: str, stream: str, name: str, partitions: int) -> bool:
    store = await JetStreamEventStore.connect(url, stream=stream)
    try:
        names = (
            [consumer_name(name)]
            if partitions == 1
            else [partition_consumer_name(name, i) for i in range(partitions)]
        )
        for n in names:
            try:
                info = await store.js.consumer_info(stream, n)
            except Exception:
                return False
            if info.num_pending or info.num_ack_pending:
                return False
        return True
    finally:
        await store.close()


def run(url: str, stream: str, name: str, parts: int, wait: float, conc: int, procs: int) -> float:
    """Seconds until ``procs`` worker processes handled every event."""
    ctx = multiprocessing.get_context("spawn")
    ps = [
        ctx.Process(target=worker, args=(url, stream, name, parts, wait, conc))
        for _ in range(procs)
    ]
    start = time.monotonic()
    for p in ps:
        p.start()
    while not asyncio.run(drained(url, stream, name, parts)):
        time.sleep(0.2)
    took = time.monotonic() - start
    for p in ps:
        p.join(timeout=60)
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--cpu", type=float, default=0.001)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server_process(Path(tmp) / "store")
        try:
            url = server.url
            pid = server.pid
            assert pid is not None
            stream = "BENCH"
            asyncio.run(fill(url, stream, args.events, args.subjects))
            print(f"{args.events} events over {args.subjects} subjects stored")
            base = 0.0
            for parts in (1, 4, 8):
                cpu = server_cpu(pid)
                took = run(url, stream, f"noop{parts}", parts, 0.0, 16, 1)
                rate = args.events / took
                used = server_cpu(pid) - cpu
                base = base or rate
                print(
                    f"overhead partitions={parts}: {rate:,.0f} events/s ({rate / base:.2f}x), "
                    f"server CPU {used:.1f}s"
                )
            rates = {}
            for procs in (1, 2):
                took = run(url, stream, f"cpu{procs}", 8, args.cpu, 16, procs)
                rates[procs] = args.events / took
                print(
                    f"scale-out {procs} worker(s), 8 partitions, {args.cpu * 1000:.1f} ms of CPU "
                    f"a handler: {rates[procs]:,.0f} events/s "
                    f"({rates[procs] / rates[1]:.2f}x)"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
