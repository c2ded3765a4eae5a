"""How a partitioned projector should read the stream: measured before choosing.

Runs its own nats-server from the wheel (tmp store)::

    PYTHONPATH=. .venv/bin/python bench/partition_reads.py [--events 100000] [--subjects 10000]

1. Fact check: a stream ``subject_transform`` with ``{{partition(N,k)}}`` puts each subject in
   the partition eventkit's :func:`~eventkit.runtime.partitions.partition_of` computes
   (FNV-1a 32 over the token, mod N), for every subject written.
2. Reading one partition's share of a stream of many subjects, N = 8 partitions, each way
   measured as wall time and nats-server CPU time (``/proc/<pid>/stat``) to read the whole:
   - ``whole/worker``: one whole-stream consumer per worker, the client keeps its partitions
     by hash (2 workers: the stream read twice);
   - ``whole/partition``: one whole-stream consumer per partition, each keeping 1/N;
   - ``filtered/partition``: one consumer filtered on the partition token per partition (this
     needs the partition in the stored subject, i.e. a stream transform);
   - ``filtered/worker``: one consumer per worker with one filter per partition it owns.
   Ratios are against reading the whole stream once with one consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from nats.js.api import StreamConfig, SubjectTransform

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventkit.runtime.partitions import default_key, partition_of
from eventkit.runtime.pulling import Puller
from eventkit.server import start_server_process

N = 8


def server_cpu(pid: int) -> float:
    """Seconds of CPU the process used (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Store:
    def __init__(self, nc: Any, stream: str) -> None:
        self.nc, self.js, self.stream = nc, nc.jetstream(), stream


async def drain(
    nc: Any, stream: str, name: str, filters: list[str], total: int, keep: Any = None
) -> int:
    """Read ``total`` messages through a durable consumer; return how many ``keep`` kept."""
    puller = Puller(_Store(nc, stream), name, filters, batch=1024, name=name)
    puller.whole = not filters  # no filter: the whole stream
    await puller.start(1)
    seen = kept = 0
    try:
        while seen < total:
            msgs = await puller.take(1024, 2.0)
            if not msgs:
                break
            seen += len(msgs)
            if keep is None:
                kept += len(msgs)
            else:
                kept += sum(1 for m in msgs if keep(m.subject))
    finally:
        await puller.stop()
        await nc.jetstream().delete_consumer(stream, name)
    return kept


async def main(events: int, subjects: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = start_server_process(Path(tmp) / "store")
        try:
            await run(srv, events, subjects)
        finally:
            srv.stop()


async def run(srv: Any, events: int, subjects: int) -> None:
    nc = await nats.connect(srv.url)
    js = nc.jetstream()
    # the stored subject carries the partition: pt.<p>.<type>.<id>
    await js.add_stream(
        StreamConfig(
            name="pt",
            subjects=["in.>"],
            subject_transform=SubjectTransform(
                src="in.*.*",
                dest=f"pt.{{{{partition({N},1,2)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}",
            ),
        )
    )
    ids = [f"a-{i}" for i in range(subjects)]
    t0 = time.perf_counter()
    futs = []
    for i in range(events):
        futs.append(await js.publish_async(f"in.account.{ids[i % subjects]}", b"{}"))
        if len(futs) >= 4000:
            await asyncio.gather(*futs)
            futs.clear()
    await asyncio.gather(*futs)
    print(f"stored {events} events over {subjects} subjects in {time.perf_counter() - t0:.1f}s")

    # 1. the server's partition of every subject is ours
    wrong = 0
    for i, entity in enumerate(ids):
        msg = await js.get_last_msg("pt", f"pt.*.account.{entity}")
        server_p = int(msg.subject.split(".")[1])
        if server_p != partition_of(default_key(f"pt.account.{entity}"), N):
            wrong += 1
        if i >= 2000:
            break
    checked = min(len(ids), 2001)
    print(f"fact: partition(N,1,2) == FNV-1a 32 of the tokens joined, mod N: {checked} subjects, ")
    print(f"      {wrong} differ")

    def keeper(parts: set[int]) -> Any:
        return lambda s: partition_of("account" + s.rsplit(".", 1)[1], N) in parts

    async def measure(label: str, plan: list[tuple[list[str], Any]]) -> tuple[float, float]:
        cpu0, w0 = server_cpu(srv.pid), time.perf_counter()
        kept = 0
        for i, (filters, keep) in enumerate(plan):
            kept += await drain(nc, "pt", f"b{i}", filters, events, keep)
        wall, cpu = time.perf_counter() - w0, server_cpu(srv.pid) - cpu0
        assert kept == events, (label, kept)
        return wall, cpu

    base_w, base_c = await measure("once", [([], None)])
    print(f"{'way':<22}{'wall s':>8}{'server cpu s':>14}{'wall x':>8}{'cpu x':>8}")
    print(f"{'whole stream once':<22}{base_w:>8.2f}{base_c:>14.2f}{1:>8.2f}{1:>8.2f}")
    half = [set(range(0, N, 2)), set(range(1, N, 2))]
    ways = {
        "whole/worker (2)": [([], keeper(h)) for h in half],
        "whole/partition": [([], keeper({p})) for p in range(N)],
        "filtered/partition": [([f"pt.{p}.>"], None) for p in range(N)],
        "filtered/worker (2)": [([f"pt.{p}.>" for p in sorted(h)], None) for h in half],
    }
    for label, plan in ways.items():
        w, c = await measure(label, plan)
        print(f"{label:<22}{w:>8.2f}{c:>14.2f}{w / base_w:>8.2f}{c / base_c:>8.2f}")
    await nc.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--subjects", type=int, default=10_000)
    a = ap.parse_args()
    asyncio.run(main(a.events, a.subjects))
