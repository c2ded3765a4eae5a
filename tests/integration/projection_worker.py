"""Test domain for the projection tests, and a worker process the kill tests start and SIGKILL.

Run as a script::

    python tests/integration/projection_worker.py --nats-url URL --stream S --db-url URL \
        --prefix t_ab12 --owner w1 [--live] [--activity FILE] [--slow 0.001]
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, delete, select, update
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eventkit import Event, RecordedEvent, on
from eventkit.projection.projector import Projector


class PwItemAdded(Event):
    key: str
    n: int


class PwNoise(Event):
    x: int


class PwPoison(Event):
    reason: str


def tables(prefix: str) -> tuple[MetaData, Table, Table]:
    md = MetaData()
    totals = Table(
        f"{prefix}_totals",
        md,
        Column("key", String(50), primary_key=True),
        Column("total", Integer, nullable=False),
        Column("count", Integer, nullable=False),
    )
    log = Table(
        f"{prefix}_log",
        md,
        Column("seq", Integer, primary_key=True),  # a double apply would violate this
        Column("key", String(50), nullable=False),
        Column("n", Integer, nullable=False),
    )
    return md, totals, log


def make_projector(
    prefix: str,
    *,
    name: str | None = None,
    on_error: str = "halt",
    idempotent: bool = False,
    with_rewind: bool = False,
    activity: str | None = None,
    owner: str = "",
    slow: float = 0.0,
    subjects: list[str] | None = None,
    max_retries: int = 1,
) -> Projector:
    """A non-idempotent totals projector over tables ``<prefix>_totals`` / ``<prefix>_log``."""
    _, totals, log = tables(prefix)
    fail_once: set[int] = set()

    def record(kind: str, seq: int) -> None:
        if activity is None:
            return
        with open(activity, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(f"{owner} {kind} {seq} {time.time():.6f}\n")
            fcntl.flock(f, fcntl.LOCK_UN)

    class Totals(Projector):
        @on(PwItemAdded)
        def added(self, e: PwItemAdded, rec: RecordedEvent[Any], db: Session) -> None:
            record("enter", rec.sequence)
            if slow:
                time.sleep(slow)
            row = db.execute(select(totals.c.total).where(totals.c.key == e.key)).first()
            if row is None:
                db.execute(totals.insert().values(key=e.key, total=e.n, count=1))
            else:
                db.execute(
                    update(totals)
                    .where(totals.c.key == e.key)
                    .values(total=totals.c.total + e.n, count=totals.c.count + 1)
                )
            db.execute(log.insert().values(seq=rec.sequence, key=e.key, n=e.n))
            record("exit", rec.sequence)

        @on(PwPoison)
        def poison(self, e: PwPoison, rec: RecordedEvent[Any], db: Session) -> None:
            if e.reason == "flaky" and rec.sequence not in fail_once:
                fail_once.add(rec.sequence)
                raise RuntimeError("flaky once")
            if e.reason != "flaky":
                raise ValueError(f"poison: {e.reason}")

        def reset(self, db: Session) -> None:
            db.execute(delete(totals))
            db.execute(delete(log))

        def forget(self, subject: str, db: Session) -> None:
            pass

    attrs: dict[str, Any] = {
        "name": name or f"{prefix}_totals",
        "on_error": on_error,
        "idempotent": idempotent,
        "max_retries": max_retries,
        "retry_backoff": 0.01,
        "subjects": subjects or [],
    }
    if with_rewind:

        def rewind(self: Projector, to_sequence: int, db: Session) -> None:
            rows = db.execute(select(log.c.key, log.c.n).where(log.c.seq > to_sequence)).all()
            for key, n in rows:
                db.execute(
                    update(totals)
                    .where(totals.c.key == key)
                    .values(total=totals.c.total - n, count=totals.c.count - 1)
                )
            db.execute(delete(log).where(log.c.seq > to_sequence))

        attrs["rewind"] = rewind
    return type("Totals", (Totals,), attrs)()  # type: ignore[no-any-return]


def make_row_projector(prefix: str, *, slow: float = 0.0) -> Projector:
    """The same totals as a ``RowProjector`` (``<prefix>_totals`` only: no log), keyed by the
    item's key, its rows kept in the runner's row cache between batches."""
    from eventkit import RowProjector

    _, totals_table, _ = tables(prefix)

    class RowTotals(RowProjector):
        name = f"{prefix}_totals"
        table = totals_table

        def key(self, rec: RecordedEvent[Any]) -> Any:
            return rec.event.key

        @on(PwItemAdded)
        def added(self, e: PwItemAdded, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            if slow:
                time.sleep(slow)
            row["total"] = (row["total"] or 0) + e.n
            row["count"] = (row["count"] or 0) + 1

    return RowTotals()


async def append_items(store: Any, count: int, start: int = 0) -> list[tuple[int, str, int]]:
    """Append ``count`` ItemAdded with a Noise event every 5th; return (seq, key, n) of items."""
    out = []
    for i in range(start, start + count):
        key = f"k{i % 7}"
        seq = await store.append(f"{store.stream}.item.{key}", [PwItemAdded(key=key, n=i)])
        out.append((seq, key, i))
        if i % 5 == 0:
            await store.append(f"{store.stream}.noise.x", [PwNoise(x=i)])
    return out


def create_tables(engine: Engine, prefix: str) -> None:
    md, _, _ = tables(prefix)
    md.create_all(engine)


def read_model(engine: Engine, prefix: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    _, totals, log = tables(prefix)
    with engine.connect() as conn:
        t = [tuple(r) for r in conn.execute(select(totals).order_by(totals.c.key))]
        lg = [tuple(r) for r in conn.execute(select(log).order_by(log.c.seq))]
    return t, lg


def expected_model(events: list[tuple[int, str, int]]) -> tuple[list[tuple[Any, ...]], list[Any]]:
    sums: dict[str, list[int]] = {}
    for _, key, n in events:
        s = sums.setdefault(key, [0, 0])
        s[0] += n
        s[1] += 1
    return [(k, v[0], v[1]) for k, v in sorted(sums.items())], sorted(events)


# -- fixtures (imported by the test modules) ---------------------------------------------------
# -- the worker process ------------------------------------------------------------------------
async def _main(args: argparse.Namespace) -> int:
    from eventkit.projection.runner import ProjectionRunner
    from eventkit.projection.sql import make_engine
    from eventkit.store.jetstream import JetStreamEventStore

    store = await JetStreamEventStore.connect(args.nats_url, stream=args.stream)
    engine = make_engine(args.db_url)
    projector = (
        make_row_projector(args.prefix, slow=args.slow)
        if args.rows
        else make_projector(args.prefix, activity=args.activity, owner=args.owner, slow=args.slow)
    )
    runner = ProjectionRunner(
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
    print(f"done {result.checkpoint}", flush=True)
    await store.close()
    engine.dispose()
    return 4 if result.halted else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nats-url", required=True)
    ap.add_argument("--stream", required=True)
    ap.add_argument("--db-url", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--owner", required=True)
    ap.add_argument("--live", action="store_true")
    ap.add_argument("--activity")
    ap.add_argument("--slow", type=float, default=0.0)
    ap.add_argument("--lease-ttl", type=float, default=1.5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rows", action="store_true", help="the RowProjector of the same totals")
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    sys.exit(asyncio.run(_main(ap.parse_args())))


if __name__ == "__main__":
    main()


def cli_app() -> Any:
    """The App the CLI tests load (``--app projection_worker:cli_app``), from PW_* variables."""
    from eventkit.app import App

    px = os.environ["PW_PREFIX"]
    return App(
        stream=os.environ["PW_STREAM"],
        projectors=[
            make_projector(px),
            make_projector(f"{px}i", name=f"{px}_idem", idempotent=True),
        ],
    )
