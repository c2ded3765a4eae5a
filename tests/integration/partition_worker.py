"""A partitioned projector whose read model checks order and exactly-once itself, and a worker
process running this process's share of it (the scale-out tests start, SIGKILL and SIGSTOP it).

Each entity row records the last stream sequence applied to it and refuses to go back (an
event applied out of order or twice raises); each applied event is one row keyed by its
sequence (a second apply violates the key), with the worker that applied it.

Run as a script::

    python tests/integration/partition_worker.py --nats-url URL --stream S --db-url URL \
        --prefix t_ab12 --partitions 8 [--live] [--slow 0.002] [--rows]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, select, update
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eventkit import Event, RecordedEvent, RowProjector, on
from eventkit.projection.projector import Projector


class PtTicked(Event):
    n: int


class WentBack(RuntimeError):
    """An entity's event came at or below the last sequence applied to it."""


def tables(prefix: str) -> tuple[MetaData, Table, Table]:
    md = MetaData()
    entities = Table(
        f"{prefix}_entities",
        md,
        Column("subject", String(200), primary_key=True),
        Column("last_seq", Integer, nullable=False),
        Column("count", Integer, nullable=False),
    )
    applied = Table(
        f"{prefix}_applied",
        md,
        Column("seq", Integer, primary_key=True),  # a double apply violates the key
        Column("worker", String(100), nullable=False),
    )
    return md, entities, applied


def create_tables(engine: Engine, prefix: str) -> None:
    tables(prefix)[0].create_all(engine)


def make_projector(
    prefix: str,
    partitions: int,
    *,
    worker: str = "",
    slow: float = 0.0,
    subjects: list[str] | None = None,
) -> Any:
    """The ordered, exactly-once-checking projector over ``<prefix>_entities/_applied``."""
    _, entities, applied = tables(prefix)

    class Ordered(Projector):
        @on(PtTicked)
        def ticked(self, e: PtTicked, rec: RecordedEvent[Any], db: Session) -> None:
            if slow:
                time.sleep(slow)
            last = db.execute(
                select(entities.c.last_seq).where(entities.c.subject == rec.subject)
            ).scalar()
            if last is None:
                row = {"subject": rec.subject, "last_seq": rec.sequence, "count": 1}
                db.execute(entities.insert().values(**row))
            elif last >= rec.sequence:
                raise WentBack(f"{rec.subject}: seq {rec.sequence} after {last}")
            else:
                db.execute(
                    update(entities)
                    .where(entities.c.subject == rec.subject)
                    .values(last_seq=rec.sequence, count=entities.c.count + 1)
                )
            db.execute(applied.insert().values(seq=rec.sequence, worker=worker))

        def reset(self, db: Session) -> None:
            db.execute(entities.delete())
            db.execute(applied.delete())

    attrs = {"name": f"{prefix}_ordered", "partitions": partitions, "subjects": subjects or []}
    return type("Ordered", (Ordered,), attrs)()


def make_row_projector(prefix: str, partitions: int, *, slow: float = 0.0) -> Any:
    """The same per-entity order check as a ``RowProjector`` on ``<prefix>_entities``."""
    _, entities, _ = tables(prefix)

    class OrderedRows(RowProjector):
        table = entities

        def key(self, rec: RecordedEvent[Any]) -> Any:
            return rec.subject

        @on(PtTicked)
        def ticked(self, e: PtTicked, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            if slow:
                time.sleep(slow)
            if row["last_seq"] is not None and row["last_seq"] >= rec.sequence:
                raise WentBack(f"{rec.subject}: seq {rec.sequence} after {row['last_seq']}")
            row["last_seq"] = rec.sequence
            row["count"] = (row["count"] or 0) + 1

    attrs = {"name": f"{prefix}_rows", "partitions": partitions}
    return type("OrderedRows", (OrderedRows,), attrs)()


async def append_ticks(store: Any, events: int, subjects: int) -> dict[str, list[int]]:
    """Append ``events`` ticks round the ``subjects``; each subject's sequences in order."""
    out: dict[str, list[int]] = {}
    step = min(subjects, 200)
    for start in range(0, events, step):
        upto = min(events, start + step)
        batch = [(f"{store.stream}.ent.e{i % subjects}", i) for i in range(start, upto)]
        seqs = await asyncio.gather(*(store.append(s, [PtTicked(n=i)]) for s, i in batch))
        for (s, _), seq in zip(batch, seqs, strict=True):
            out.setdefault(s, []).append(seq)
    for seqs in out.values():
        seqs.sort()
    return out


def check_model(engine: Engine, prefix: str, expected: dict[str, list[int]]) -> dict[str, int]:
    """Assert every event was applied once, each entity at its last sequence; per worker, how
    many events it applied."""
    _, entities, applied = tables(prefix)
    with engine.connect() as conn:
        rows = {r.subject: (r.last_seq, r.count) for r in conn.execute(select(entities))}
        done = [(r.seq, r.worker) for r in conn.execute(select(applied))]
    want = {s: (seqs[-1], len(seqs)) for s, seqs in expected.items()}
    assert rows == want, "entities differ from the events appended"
    seqs = sorted(s for s, _ in done)
    assert seqs == sorted(q for v in expected.values() for q in v)
    by: dict[str, int] = {}
    for _, w in done:
        by[w] = by.get(w, 0) + 1
    return by


async def _main(args: argparse.Namespace) -> int:
    from eventkit.projection.runner import runner_for
    from eventkit.projection.sql import make_engine
    from eventkit.store.jetstream import JetStreamEventStore

    store = await JetStreamEventStore.connect(args.nats_url, stream=args.stream)
    engine = make_engine(args.db_url)
    projector = (
        make_row_projector(args.prefix, args.partitions, slow=args.slow)
        if args.rows
        else make_projector(args.prefix, args.partitions, worker=args.owner, slow=args.slow)
    )
    runner = runner_for(
        projector,
        store,
        engine,
        owner=args.owner,
        lease_ttl=args.lease_ttl,
        batch_size=args.batch_size,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.stop)
    print("started", flush=True)
    result = await (runner.run() if args.live else runner.catch_up())
    print(f"done {result.checkpoint} {result.processed}", flush=True)
    await store.close()
    engine.dispose()
    return 4 if result.halted else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nats-url", required=True)
    ap.add_argument("--stream", required=True)
    ap.add_argument("--db-url", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--owner", default=f"w{os.getpid()}")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--live", action="store_true")
    ap.add_argument("--slow", type=float, default=0.0)
    ap.add_argument("--lease-ttl", type=float, default=1.5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rows", action="store_true", help="the RowProjector of the same check")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    sys.exit(asyncio.run(_main(ap.parse_args())))


if __name__ == "__main__":
    main()


def cli_app() -> Any:
    """The App the CLI tests load (``--app partition_worker:cli_app``), from PT_* variables."""
    from eventkit.app import App

    return App(
        stream=os.environ["PT_STREAM"],
        projectors=[make_projector(os.environ["PT_PREFIX"], int(os.environ["PT_PARTITIONS"]))],
    )
