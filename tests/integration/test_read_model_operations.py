"""Operating versions and the row cache: a retired worker stops saying why, a switch succeeds
under steady writes, the row cache keeps only what reads back exactly and stays within its
byte budget."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import pytest
from _versions import Kit, running, wait_for  # type: ignore[import-not-found]
from sqlalchemy import REAL, Column, Engine, Integer, MetaData, String, Table, Text, select

from eventkit import Event, RowProjector, on
from eventkit.projection.bluegreen import switch
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import read_transaction
from eventkit.store.records import RecordedEvent

pytestmark = pytest.mark.nats


async def test_a_retired_worker_stops_and_says_what_to_deploy(
    store: Any, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    kit = Kit(store, engine)
    await kit.pay("k", 1)
    old = ProjectionRunner(kit.V1(), store, engine, idle_timeout=0.05, lease_ttl=1.0)
    task = asyncio.create_task(old.run())
    await wait_for(lambda: old.state == "live", "the old worker")
    await ProjectionRunner(kit.V2(), store, engine).catch_up()
    caplog.set_level(logging.WARNING, "eventkit")
    await switch(kit.V2(), store, engine)
    await kit.pay("k", 1)  # what the old worker would apply, were it not fenced
    result = await asyncio.wait_for(task, 20)  # it stops: no standby for ever
    assert not result.halted
    assert "is retired: version 2 is live" in (result.error or "")
    assert "deploy the code of version 2" in (result.error or "")
    assert "stop that runner" not in caplog.text
    assert any("is retired: version 2 is live" in r.getMessage() for r in caplog.records)
    await ProjectionRunner(kit.V2(), store, engine).catch_up()
    assert kit.totals() == {"k": 20}


async def test_a_switch_succeeds_under_steady_writes(store: Any, engine: Engine) -> None:
    kit = Kit(store, engine)
    for i in range(50):
        await kit.pay(f"k{i % 10}", 1)
    stop = asyncio.Event()
    paid: dict[str, int] = {}

    async def writer() -> None:  # about 200 events a second, all along the switch
        i = 0
        while not stop.is_set():
            key = f"k{i % 10}"
            await kit.pay(key, 1)
            paid[key] = paid.get(key, 0) + 1
            i += 1
            await asyncio.sleep(0.005)

    await ProjectionRunner(kit.V1(), store, engine).catch_up()
    v1 = ProjectionRunner(kit.V1(), store, engine, idle_timeout=0.05)
    v2 = ProjectionRunner(kit.V2(), store, engine, idle_timeout=0.05)
    writing = asyncio.create_task(writer())
    try:
        async with running(v1), running(v2):
            await wait_for(lambda: v2.checkpoint >= 50, "the build")
            await asyncio.sleep(0.5)
            done = await switch(kit.V2(), store, engine, timeout=30)
            assert "version 2 is live" in done
            await asyncio.sleep(0.5)
            stop.set()
            await writing
            last = await store.last_sequence()
            await wait_for(lambda: v2.checkpoint >= last, "the new live version")
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await writing
    assert sum(paid.values()) > 50  # the writes went on through the switch
    expected = {f"k{i}": 10 * (5 + paid.get(f"k{i}", 0)) for i in range(10)}
    assert kit.totals() == expected  # every event once, by version 2


class FlScored(Event):
    points: int


async def test_cached_rows_read_back_exactly_a_real_column(store: Any, engine: Engine) -> None:
    """A ``REAL`` is single precision on PostgreSQL: a double kept in memory is not what the
    next batch would read from SQL, so those rows are not cached (same result either way)."""
    px = f"fl{uuid.uuid4().hex[:8]}"
    md = MetaData()
    for suffix in ("on", "off"):
        Table(
            f"{px}_{suffix}",
            md,
            Column("id", String(40), primary_key=True),
            Column("score", REAL, nullable=False, default=0.0),
        )
    md.create_all(engine)

    def make(suffix: str, cache: int) -> RowProjector:
        class Scores(RowProjector):
            name = f"{px}_{suffix}"
            subjects = [f"{store.stream}.{px}.>"]
            table = md.tables[f"{px}_{suffix}"]
            batch_size = 2
            row_cache = cache

            @on(FlScored)
            def scored(self, e: FlScored, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
                row["score"] = row["score"] + e.points / 11

        return Scores()

    for i in range(21):
        await store.append(f"{store.stream}.{px}.k", [FlScored(points=100 + i)])
    await ProjectionRunner(make("on", 50_000), store, engine).catch_up()
    await ProjectionRunner(make("off", 0), store, engine).catch_up()
    with read_transaction(engine) as db:
        on_ = db.execute(select(md.tables[f"{px}_on"].c.score)).scalar_one()
        off = db.execute(select(md.tables[f"{px}_off"].c.score)).scalar_one()
    assert on_ == off


class WrNoted(Event):
    text: str


async def test_the_row_cache_stays_within_its_byte_budget(store: Any, engine: Engine) -> None:
    px = f"wr{uuid.uuid4().hex[:8]}"
    md = MetaData()
    Table(
        f"{px}_notes",
        md,
        Column("id", String(40), primary_key=True),
        Column("body", Text),
        Column("n", Integer, nullable=False, default=0),
    )
    md.create_all(engine)

    class Notes(RowProjector):
        name = px
        subjects = [f"{store.stream}.{px}.>"]
        table = md.tables[f"{px}_notes"]
        row_cache_bytes = 200_000  # room for about 80 of these rows

        @on(WrNoted)
        def noted(self, e: WrNoted, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            row["body"] = e.text * 100  # about 2 KB per row
            row["n"] += 1

    for i in range(400):
        await store.append(f"{store.stream}.{px}.k{i}", [WrNoted(text=f"{i:020d}")])
    runner = ProjectionRunner(Notes(), store, engine)
    await runner.catch_up()
    rows = runner._rows
    assert rows is not None
    assert 0 < rows.bytes <= 200_000
    assert 40 <= len(rows) <= 100  # bounded by bytes, not by the 50,000 rows
    with read_transaction(engine) as db:
        assert db.execute(select(md.tables[f"{px}_notes"].c.n)).scalars().all() == [1] * 400
