"""Row projectors against a real nats-server, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    select,
)

from eventkit import Event, RecordedEvent, RowProjector, on
from eventkit.errors import ConfigError, ProjectionError
from eventkit.projection import checkpoints, letters
from eventkit.projection.replay import plan_replay, replay
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import read_transaction, transaction
from eventkit.store.records import RecordedEvent as Rec

pytestmark = pytest.mark.nats


class RpOpened(Event):
    owner: str


class RpMoved(Event):
    amount: int
    customer: str = ""


class RpClosed(Event):
    pass


class RpBad(Event):
    pass


def _tables(px: str) -> tuple[MetaData, Table, Table]:
    md = MetaData()
    accounts = Table(
        f"{px}_accounts",
        md,
        Column("id", String(50), primary_key=True),
        Column("owner", String(50)),
        Column("balance", Integer, nullable=False, default=0),
        Column("events", Integer, nullable=False, default=lambda: 0),
        Column("rate", Numeric(10, 2), nullable=False, default=Decimal("1.50")),
        Column("touched", DateTime(timezone=True)),
    )
    totals = Table(
        f"{px}_totals",
        md,
        Column("customer", String(50), primary_key=True),
        Column("currency", String(3), primary_key=True),
        Column("total", Integer, nullable=False, default=0),
    )
    return md, accounts, totals


SEEN: list[tuple[type, type]] = []


def _projectors(px: str, accounts: Table, totals: Table) -> tuple[Any, Any]:
    class Accounts(RowProjector):
        name = f"{px}_acc"
        subjects = [f"{px}.account.>"]
        table = accounts
        max_retries = 0
        retry_backoff = 0.0

        @on(RpOpened)
        def opened(self, e: RpOpened, rec: Rec[Any], row: dict[str, Any]) -> None:
            row["owner"] = e.owner
            row["events"] += 1

        @on(RpMoved)
        def moved(self, e: RpMoved, rec: Rec[Any], row: dict[str, Any]) -> None:
            SEEN.append((type(row["rate"]), type(row["touched"])))
            row["balance"] += e.amount
            row["events"] += 1
            row["touched"] = rec.time

        @on(RpClosed)
        def closed(self, e: RpClosed, rec: Rec[Any], row: dict[str, Any]) -> None:
            row.clear()

        @on(RpBad)
        def bad(self, e: RpBad, rec: Rec[Any], row: dict[str, Any]) -> None:
            raise ValueError("bad event")

    class Totals(RowProjector):
        name = f"{px}_tot"
        subjects = [f"{px}.account.>"]
        table = totals

        def key(self, rec: RecordedEvent[Any]) -> Any:
            return (rec.event.customer, "EUR")

        @on(RpMoved)
        def moved(self, e: RpMoved, rec: Rec[Any], row: dict[str, Any]) -> None:
            row["total"] += e.amount

    return Accounts(), Totals()


@pytest.fixture
def px() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def _append(store: Any, px: str, account: str, *events: Event) -> None:
    await store.append(f"{store.stream}.{px}.account.{account}", list(events))


def _filters(px: str, store: Any) -> list[str]:
    return [f"{store.stream}.{px}.account.>"]


def _make(px: str, store: Any, engine: Engine) -> tuple[Table, Table, Any, Any]:
    md, accounts, totals = _tables(px)
    md.create_all(engine)
    acc, tot = _projectors(px, accounts, totals)
    # the subjects of the class name the test stream
    type(acc).subjects = _filters(px, store)
    type(tot).subjects = _filters(px, store)
    return accounts, totals, acc, tot


def _rows(engine: Engine, table: Table) -> dict[Any, dict[str, Any]]:
    with read_transaction(engine) as db:
        pk = [c.name for c in table.primary_key.columns]
        out = {}
        for m in db.execute(select(table)).mappings():
            k = m[pk[0]] if len(pk) == 1 else tuple(m[c] for c in pk)
            out[k] = dict(m)
        return out


async def test_folds_batches_into_rows_with_defaults_types_and_deletes(
    store: Any, engine: Engine, px: str
) -> None:
    accounts, _totals, acc, _ = _make(px, store, engine)
    for i in range(6):
        await _append(store, px, f"a{i}", RpOpened(owner=f"o{i}"))
    for n in range(1, 21):  # 20 events per entity, interleaved
        for i in range(6):
            await _append(store, px, f"a{i}", RpMoved(amount=n, customer=f"c{i % 2}"))
    await _append(store, px, "a5", RpClosed())
    SEEN.clear()
    result = await ProjectionRunner(acc, store, engine, batch_size=17).catch_up()
    assert not result.halted and result.checkpoint == await store.last_sequence()
    rows = _rows(engine, accounts)
    assert sorted(rows) == [f"a{i}" for i in range(5)]  # a5 deleted by row.clear()
    for i in range(5):
        r = rows[f"a{i}"]
        assert r["owner"] == f"o{i}" and r["balance"] == 210 and r["events"] == 21
        assert r["rate"] == Decimal("1.50")  # the column default of a new key
    # handlers saw Python values of the column types, aware datetimes included (after a read)
    assert {t for t, _ in SEEN} == {Decimal}
    assert datetime in {t for _, t in SEEN}
    # a deleted key starts from the defaults again
    await _append(store, px, "a5", RpMoved(amount=7))
    await ProjectionRunner(acc, store, engine).catch_up()
    r5 = _rows(engine, accounts)["a5"]
    assert r5["balance"] == 7 and r5["events"] == 1 and r5["owner"] is None


async def test_custom_composite_key_sums_over_entities(store: Any, engine: Engine, px: str) -> None:
    _accounts, totals, _acc, tot = _make(px, store, engine)
    for n in range(1, 11):
        for i in range(4):
            await _append(store, px, f"a{i}", RpMoved(amount=n, customer=f"c{i % 2}"))
    await ProjectionRunner(tot, store, engine, batch_size=7).catch_up()
    rows = _rows(engine, totals)
    assert rows == {
        ("c0", "EUR"): {"customer": "c0", "currency": "EUR", "total": 110},
        ("c1", "EUR"): {"customer": "c1", "currency": "EUR", "total": 110},
    }
    assert not type(tot).declares_forget()  # a mixed row: the forget report lists it


async def test_reset_replay_and_forget_are_derived(store: Any, engine: Engine, px: str) -> None:
    accounts, _totals, acc, _ = _make(px, store, engine)
    for i in range(3):
        await _append(store, px, f"a{i}", RpOpened(owner="x"), RpMoved(amount=5))
    await ProjectionRunner(acc, store, engine).catch_up()
    before = _rows(engine, accounts)
    plan = await plan_replay(acc, store, engine, from_start=True)
    assert plan.method == "reset"
    result = await replay(plan, acc, store, engine)
    assert not result.halted
    assert _rows(engine, accounts) == before  # not doubled: reset emptied the table first
    # a replay from a point would add the amounts again: refused, with the reason
    with pytest.raises(ProjectionError, match="idempotent"):
        await plan_replay(acc, store, engine, from_sequence=1)
    assert type(acc).declares_forget()
    with transaction(engine) as db:
        acc.forget(f"{store.stream}.{px}.account.a1", db)
    assert sorted(_rows(engine, accounts)) == ["a0", "a2"]


async def test_bad_event_in_a_batch_halts_there_with_what_precedes_it_committed(
    store: Any, engine: Engine, px: str
) -> None:
    accounts, _totals, acc, _ = _make(px, store, engine)
    await _append(store, px, "a0", RpOpened(owner="x"), RpMoved(amount=1))
    await _append(store, px, "a1", RpOpened(owner="y"))
    bad_seq = (await store.last_sequence()) + 1
    await _append(store, px, "a0", RpBad())
    await _append(store, px, "a1", RpMoved(amount=9))
    result = await ProjectionRunner(acc, store, engine, batch_size=100).catch_up()
    assert result.halted and f"seq {bad_seq}" in (result.error or "")
    assert result.checkpoint == bad_seq - 1
    rows = _rows(engine, accounts)
    assert rows["a0"]["balance"] == 1 and rows["a1"]["balance"] == 0
    with read_transaction(engine) as db:
        assert checkpoints.get_checkpoint(db, acc.name).last_sequence == bad_seq - 1


async def test_park_policy_parks_the_bad_event_and_folds_the_rest(
    store: Any, engine: Engine, px: str
) -> None:
    accounts, _totals, acc, _ = _make(px, store, engine)
    type(acc).on_error = "park"
    await _append(store, px, "a0", RpOpened(owner="x"))
    await _append(store, px, "a0", RpBad())
    await _append(store, px, "a0", RpMoved(amount=4))
    result = await ProjectionRunner(acc, store, engine, batch_size=100).catch_up()
    assert not result.halted and result.checkpoint == await store.last_sequence()
    assert _rows(engine, accounts)["a0"]["balance"] == 4
    with read_transaction(engine) as db:
        assert [d.event_type for d in letters.list_dead_letters(db, acc.name)] == ["RpBad"]


async def test_a_failed_write_leaves_rows_and_checkpoint_as_they_were(
    store: Any, engine: Engine, px: str
) -> None:
    """The upsert and the checkpoint share one transaction: a batch whose write fails in the
    database leaves neither the rows nor the checkpoint moved."""
    accounts, _totals, acc, _ = _make(px, store, engine)
    await _append(store, px, "a0", RpOpened(owner="x"), RpMoved(amount=3))
    first = await ProjectionRunner(acc, store, engine).catch_up()
    bad_seq = (await store.last_sequence()) + 1
    await _append(store, px, "a0", RpMoved(amount=1))
    await _append(store, px, "a1", RpOpened(owner="o" * 60))  # too long for String(50) on PG

    class Strict(type(acc)):  # type: ignore[misc]
        name = acc.name  # the same read model and checkpoint, a buggy handler

        @on(RpOpened)
        def opened(self, e: RpOpened, rec: Rec[Any], row: dict[str, Any]) -> None:
            row["owner"] = e.owner
            row["nope"] = 1  # not a column: the write is refused

    result = await ProjectionRunner(Strict(), store, engine, batch_size=100).catch_up()
    assert result.halted and "nope" in (result.error or "")
    # the batch split: the event before the bad one is committed, the bad one is not
    assert result.checkpoint == bad_seq
    rows = _rows(engine, accounts)
    assert rows["a0"]["balance"] == 4 and "a1" not in rows
    assert first.checkpoint < result.checkpoint


def test_table_without_primary_key_or_with_composite_key_needs_key() -> None:
    md = MetaData()
    nokey = Table("rp_nokey", md, Column("x", Integer))
    with pytest.raises(ConfigError, match="no primary key"):
        type("NoKey", (RowProjector,), {"table": nokey})
    composite = Table(
        "rp_comp", md, Column("a", String, primary_key=True), Column("b", String, primary_key=True)
    )
    with pytest.raises(ConfigError, match="composite primary key"):
        type("Comp", (RowProjector,), {"table": composite})
    with pytest.raises(ConfigError, match="must be a SQLAlchemy Table"):
        type("NotTable", (RowProjector,), {"table": "accounts"})
    table = Table("rp_cache", md, Column("id", String, primary_key=True))
    for bad in (-1, "big", True, 1.5):
        with pytest.raises(ConfigError, match="row_cache must be a whole number"):
            type("BadCache", (RowProjector,), {"table": table, "row_cache": bad})
