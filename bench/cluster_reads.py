"""What read-your-writes costs on a replicated stream: loads on an R3 stream of a 3-node cluster
with the freshness check (the default) against the same loads without it, in the same run.

    python bench/cluster_reads.py [--aggregates 200] [--events 10] [--rounds 5]

Each round loads every aggregate once from a process connected to a follower, alternating the
two modes; the ratio is with/without (1.0 = free). Stale reads are counted in both modes: a load
that misses the writer's last event.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventkit import Aggregate, Event, Repository, on
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.testing.cluster import Cluster


class BenchTicked(Event):
    n: int


class BenchClock(Aggregate):
    aggregate_type = "clock"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.n = 0

    def tick(self) -> None:
        self.record(BenchTicked(n=self.n + 1))

    @on(BenchTicked)
    def _ticked(self, e: BenchTicked) -> None:
        self.n = e.n


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--aggregates", type=int, default=200)
    ap.add_argument("--events", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster.start(Path(tmp), size=3)
        try:
            stream = f"bench_{uuid.uuid4().hex[:6]}"
            cluster.wait_meta_leader(30)
            writer = await JetStreamEventStore.connect(cluster.urls[0], stream=stream, replicas=3)
            reader = await JetStreamEventStore.connect(cluster.urls[1], stream=stream, replicas=3)
            wrepo, rrepo = Repository(writer, BenchClock), Repository(reader, BenchClock)
            ids = [uuid.uuid4().hex for _ in range(args.aggregates)]
            for i in ids:
                c = BenchClock(i)
                for _ in range(args.events):
                    c.tick()
                await wrepo.save(c)
            times = {"checked": 0.0, "off": 0.0}
            stale = {"checked": 0, "off": 0}
            for _ in range(args.rounds):
                for mode in ("checked", "off"):
                    reader.replicas = 3 if mode == "checked" else 1  # 1: no check
                    t0 = time.perf_counter()
                    for i in ids:
                        # the writer adds one event, the reader learns its sequence (as a
                        # process that just wrote would), then loads
                        c = await wrepo.load(i)
                        c.tick()
                        await wrepo.save(c)
                        reader._fresh.note(f"{stream}.clock.{i}", c.version)
                        loaded = await rrepo.load(i)
                        if loaded.version < c.version:
                            stale[mode] += 1
                    times[mode] += time.perf_counter() - t0
            n = args.rounds * args.aggregates
            for mode in times:
                print(
                    f"{mode:>13}: {n / times[mode]:,.0f} save+load/s, {stale[mode]} stale loads "
                    f"of {n}"
                )
            print(f"ratio checked/off: {times['off'] / times['checked']:.2f}")
            print(f"stale replica answers read again: {reader._fresh.stale_reads}")
            await writer.close()
            await reader.close()
        finally:
            cluster.stop()


if __name__ == "__main__":
    asyncio.run(main())
