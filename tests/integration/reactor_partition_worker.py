"""A partitioned reactor whose outputs let a test check order and exactly-once, and a worker
process running this process's share of it (the scale-out tests start, SIGKILL and SIGSTOP it).

For each event ``<stream>.ent.<id>`` it handles, the reactor appends one ``RpSeen`` (the source
sequence and the worker) to ``<stream>.seen.<id>`` through ``ctx.append``: a second handling of
the same event gets the same derived id and stores nothing, so the outputs of one entity, in
stream order, are its source sequences once each, ascending unless order broke.

Run as a script::

    python tests/integration/reactor_partition_worker.py --nats-url URL --stream S \
        --prefix r_ab12 --partitions 8 [--slow 0.01] [--ttl 1.5] [--ack-wait 2] [--once] \
        [--replicas 3]    # with --nats-url URL1,URL2,URL3: a cluster's stream
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eventkit import Event, RecordedEvent, on
from eventkit.reaction.context import ReactorContext
from eventkit.reaction.reactor import Reactor


class RpTicked(Event):
    n: int


class RpSeen(Event):
    source: int
    worker: str


def make_reactor(
    prefix: str,
    stream: str,
    partitions: int,
    *,
    worker: str = "",
    slow: float = 0.0,
    ack_wait: float = 30.0,
) -> Reactor:
    """The reactor ``<prefix>_seen`` over ``<stream>.ent.*``, ``partitions`` partitions."""

    class Seen(Reactor):
        ordered = "subject"

        @on(RpTicked)
        async def ticked(self, e: RpTicked, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
            if slow:
                await asyncio.sleep(slow)
            entity = rec.subject.rsplit(".", 1)[1]
            await ctx.append(
                f"{stream}.seen.{entity}", [RpSeen(source=rec.sequence, worker=worker)]
            )

    attrs = {
        "name": f"{prefix}_seen",
        "subjects": [f"{stream}.ent.*"],
        "partitions": partitions,
        "ack_wait": ack_wait,
        "backoff": [0.1],
    }
    return type("Seen", (Seen,), attrs)()  # type: ignore[return-value]


async def append_ticks(store: Any, events: int, subjects: int) -> dict[str, list[int]]:
    """Append ``events`` ticks round the ``subjects``; each entity's sequences in order."""
    out: dict[str, list[int]] = {}
    step = min(subjects, 200)
    for start in range(0, events, step):
        upto = min(events, start + step)
        batch = [(f"e{i % subjects}", i) for i in range(start, upto)]
        seqs = await asyncio.gather(
            *(store.append(f"{store.stream}.ent.{e}", [RpTicked(n=i)]) for e, i in batch)
        )
        for (e, _), seq in zip(batch, seqs, strict=True):
            out.setdefault(e, []).append(seq)
    for seqs in out.values():
        seqs.sort()
    return out


async def outputs(store: Any) -> dict[str, list[tuple[int, str]]]:
    """Per entity, the (source sequence, worker) of its outputs, in stream order."""
    out: dict[str, list[tuple[int, str]]] = {}
    async for rec in store.read_all(subjects=[f"{store.stream}.seen.*"]):
        out.setdefault(rec.subject.rsplit(".", 1)[1], []).append(
            (rec.event.source, rec.event.worker)
        )
    return out


def check_outputs(
    seen: dict[str, list[tuple[int, str]]], expected: dict[str, list[int]]
) -> dict[str, int]:
    """Assert each event has one output and each entity's outputs are in its order; per
    worker, how many events it handled."""
    got = {e: [s for s, _ in v] for e, v in seen.items()}
    wrong = {e: (got.get(e), want) for e, want in sorted(expected.items()) if got.get(e) != want}
    assert not wrong and set(got) == set(expected), (
        f"outputs differ from the events appended (lost, doubled or reordered): "
        f"{len(wrong)} entities, e.g. {[(e, seen.get(e)) for e in list(wrong)[:1]]} "
        f"instead of {[expected[e] for e in list(wrong)[:1]]}"
    )
    by: dict[str, int] = {}
    for v in seen.values():
        for _, w in v:
            by[w] = by.get(w, 0) + 1
    return by


async def _main(args: argparse.Namespace) -> int:
    from eventkit.reaction.runner import ReactorRunner
    from eventkit.runtime.supervisor import Supervisor
    from eventkit.store.jetstream import JetStreamEventStore

    store = await JetStreamEventStore.connect(
        args.nats_url.split(","), stream=args.stream, replicas=args.replicas, retry_for=30.0
    )
    reactor = make_reactor(
        args.prefix,
        args.stream,
        args.partitions,
        worker=args.owner,
        slow=args.slow,
        ack_wait=args.ack_wait,
    )
    runner = ReactorRunner(reactor, store, lease_ttl=args.ttl)
    supervisor = Supervisor([runner], once=args.once)  # as ``eventkit run`` runs it
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.stop)
    print(f"started {runner.member}", flush=True)  # type: ignore[attr-defined]
    (outcome,) = await supervisor.run()
    print(f"done {runner.stats.handled} {outcome.error or ''}".strip(), flush=True)
    await store.close()
    return 1 if outcome.error else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nats-url", required=True, help="one URL, or a cluster's, comma-separated")
    ap.add_argument("--replicas", type=int, default=1, help="the stream's (3 on an R3 cluster)")
    ap.add_argument("--stream", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--owner", default=f"w{os.getpid()}")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--slow", type=float, default=0.0)
    ap.add_argument("--ttl", type=float, default=1.5)
    ap.add_argument("--ack-wait", type=float, default=2.0)
    ap.add_argument("--once", action="store_true")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    sys.exit(asyncio.run(_main(ap.parse_args())))


if __name__ == "__main__":
    main()


def cli_app() -> Any:
    """The App the CLI tests load (``--app reactor_partition_worker:cli_app``), from RP_*."""
    from eventkit.app import App

    stream = os.environ["RP_STREAM"]
    reactor = make_reactor(
        os.environ["RP_PREFIX"], stream, int(os.environ["RP_PARTITIONS"]), ack_wait=2.0
    )
    return App(stream=stream, reactors=[reactor])
