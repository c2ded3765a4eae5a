"""Reactor benchmarks against a hand-written nats-py consumer, measured in the same run.

Runs its own nats-server from the wheel (tmp store)::

    PYTHONPATH=. .venv/bin/python bench/reactor.py [--events 3000] [--io-events 1500]

1. throughput: a reactor appending one output per event (ctx.append, derived ids) vs a raw
   nats-py durable pull consumer doing the same (explicit ack, one publish with Nats-Msg-Id per
   event); ratio = reactor / raw (target >= 0.8).
2. scale-out: two worker processes vs one on a handler that waits 2 ms per event (concurrency 1
   per worker, so each worker handles one event at a time); ratio = 2 workers / 1 (target 1.7).
3. latency from append to handler start at 1,000 events/s: p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import nats
from nats.js.api import AckPolicy, ConsumerConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventkit import Event, JetStreamEventStore, Reactor, ReactorContext, RecordedEvent, on
from eventkit.reaction import ReactorRunner
from eventkit.server import start_server_process


class BrJob(Event):
    n: int
    sent: float = 0.0


class BrOut(Event):
    n: int


class Outputs(Reactor):
    name = "outputs"
    subjects: ClassVar[list[str]] = []

    @on(BrJob)
    async def job(self, e: BrJob, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        await ctx.append(f"{ctx.store.stream}.out.{e.n % 16}", [BrOut(n=e.n)])


class Waits(Reactor):
    name = "waits"
    concurrency = 1

    span: ClassVar[list[float]] = []

    @on(BrJob)
    async def job(self, e: BrJob, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        Waits.span = [Waits.span[0] if Waits.span else time.time(), time.time()]
        await asyncio.sleep(0.002)


class Latency(Reactor):
    name = "latency"
    deliver_policy = "new"
    seen: ClassVar[list[float]] = []

    @on(BrJob)
    async def job(self, e: BrJob, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        Latency.seen.append(time.time() - e.sent)


async def fill(store: JetStreamEventStore, n: int, prefix: str = "job") -> None:
    for start in range(0, n, 200):
        await asyncio.gather(
            *[
                store.append(f"{store.stream}.{prefix}.{i % 32}", [BrJob(n=i)])
                for i in range(start, min(n, start + 200))
            ]
        )


async def raw_consumer(url: str, stream: str, n: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name="raw", filter_subject=f"{stream}.job.>", ack_policy=AckPolicy.EXPLICIT
        ),
    )
    sub = await js.pull_subscribe_bind("raw", stream=stream)
    t0 = time.perf_counter()
    done = 0
    while done < n:
        for m in await sub.fetch(256, timeout=5):
            seq = m.metadata.sequence.stream
            await js.publish(
                f"{stream}.rawout.{seq % 16}", m.data, headers={"Nats-Msg-Id": f"raw-{seq}"}
            )
            await m.ack()
            done += 1
    elapsed = time.perf_counter() - t0
    await nc.close()
    return n / elapsed


async def reactor_rate(store: JetStreamEventStore, n: int) -> float:
    Outputs.subjects = [f"{store.stream}.job.>"]
    t0 = time.perf_counter()
    stats = await ReactorRunner(Outputs(), store).catch_up()
    elapsed = time.perf_counter() - t0
    assert stats.handled == n, stats
    return n / elapsed


def workers(url: str, stream: str, count: int) -> float:
    """Seconds from the first handler start to the last, over ``count`` worker processes
    (process start-up is not counted)."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", url, "--stream", stream],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    spans = []
    for p in procs:
        out, _ = p.communicate()
        first, last = (float(x) for x in out.split())
        spans.append((first, last))
    return max(s[1] for s in spans) - min(s[0] for s in spans)


async def latency(store: JetStreamEventStore, rate: int, seconds: float) -> tuple[float, float]:
    runner = ReactorRunner(Latency(), store)
    task = asyncio.ensure_future(runner.run())
    await asyncio.sleep(1.0)
    total = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await store.append(f"{store.stream}.lat.{i % 8}", [BrJob(n=i, sent=time.time())])
    while len(Latency.seen) < total:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    runner.stop()
    await task
    q = statistics.quantiles(Latency.seen, n=100)
    return q[49] * 1000, q[98] * 1000


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--io-events", type=int, default=1500)
    ap.add_argument("--worker")
    ap.add_argument("--stream")
    args = ap.parse_args()
    if args.worker:
        store = await JetStreamEventStore.connect(args.worker, stream=args.stream)
        await ReactorRunner(Waits(), store).catch_up()
        await store.close()
        print(*(Waits.span or [0.0, 0.0]))
        return
    server = start_server_process(Path(tempfile.mkdtemp()) / "store")
    try:
        store = await JetStreamEventStore.connect(server.url, stream="benchreact")
        await fill(store, args.events)
        raw = await raw_consumer(server.url, "benchreact", args.events)
        ours = await reactor_rate(store, args.events)
        print(
            f"outputs: reactor {ours:,.0f} ev/s, raw nats-py {raw:,.0f} ev/s, "
            f"ratio {ours / raw:.2f}"
        )
        one_stream, two_stream = "benchio1", "benchio2"
        for s in (one_stream, two_stream):
            st = await JetStreamEventStore.connect(server.url, stream=s)
            await fill(st, args.io_events)
            await st.close()
        one = workers(server.url, one_stream, 1)
        two = workers(server.url, two_stream, 2)
        print(
            f"2 ms handler: 1 worker {args.io_events / one:,.0f} ev/s, 2 workers "
            f"{args.io_events / two:,.0f} ev/s, ratio {one / two:.2f}"
        )
        p50, p99 = await latency(store, 1000, 3.0)
        print(f"latency append -> handler at 1,000 ev/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        await store.close()
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
