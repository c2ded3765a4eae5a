"""The row cache of a RowProjector's runner: rows it wrote are kept between batches, and every
way the rows can change outside the runner makes it read them from SQL again: a dead letter
retried while it runs, another runner taking the lease, a failed batch, a forget, values the
column converts (SQLite) and JSON values changed in place."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import JSON, Column, Engine, Integer, MetaData, String, Table, select, update
from sqlalchemy.exc import OperationalError

from eventkit import Event, RecordedEvent, RowProjector, on
from eventkit.projection import checkpoints
from eventkit.projection.deadletters import list_dead_letters, retry_dead_letters
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import make_engine, transaction, upgrade

pytestmark = pytest.mark.nats


class RcAdded(Event):
    amount: int
    poison: bool = False


class RcTagged(Event):
    tag: str


class RcLabel(Event):
    label: Any = None


def _projector(
    stream: str, *, size: int = 50_000, park: bool = False, px: str = ""
) -> tuple[RowProjector, Table, MetaData, dict[str, bool]]:
    """A totals row projector (``px``: the same tables and name again, as another process of
    the same code has them)."""
    px = px or f"rc_{uuid.uuid4().hex[:8]}"
    md = MetaData()
    tbl = Table(
        f"{px}_totals",
        md,
        Column("id", String(50), primary_key=True),
        Column("total", Integer, nullable=False, default=0),
        Column("events", Integer, nullable=False, default=0),
    )
    broken = {"on": True}

    class Totals(RowProjector):
        name = f"{px}_totals"
        table = tbl
        subjects = [f"{stream}.acct.>"]
        batch_size = 4
        row_cache = size
        on_error = "park" if park else "halt"
        max_retries = 0
        idempotent = False

        @on(RcAdded)
        def added(self, e: RcAdded, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            if e.poison and broken["on"]:
                raise ValueError("poison")
            row["total"] += e.amount
            row["events"] += 1

    return Totals(), tbl, md, broken


def _totals(engine: Engine, table: Table) -> dict[str, tuple[int, int]]:
    with transaction(engine) as db:
        return {r.id: (r.total, r.events) for r in db.execute(select(table))}


async def _add(store: Any, key: str, *amounts: int, poison: bool = False) -> None:
    for a in amounts:
        await store.append(f"{store.stream}.acct.{key}", [RcAdded(amount=a, poison=poison)])


@contextlib.asynccontextmanager
async def _live(runner: ProjectionRunner) -> AsyncIterator[None]:
    """The runner live in the background for the block, stopped cleanly after it."""
    task = asyncio.create_task(runner.run())
    try:
        yield
    finally:
        runner.stop()
        await asyncio.wait_for(task, 10)


async def _caught_up(store: Any, runner: ProjectionRunner, what: str) -> None:
    last = await store.last_sequence()
    for _ in range(200):
        if runner.checkpoint == last:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_rows_are_kept_between_batches_with_the_same_result(
    store: Any, engine: Engine
) -> None:
    cached, table, md, _ = _projector(store.stream)
    md.create_all(engine)
    for i in range(12):
        await _add(store, f"k{i % 3}", i + 1)
    runner = ProjectionRunner(cached, store, engine)
    result = await runner.catch_up()
    assert result.checkpoint == await store.last_sequence()
    assert runner._rows is not None and runner._rows.hits >= 6  # later batches: no reads
    expected = {f"k{j}": (sum(i + 1 for i in range(12) if i % 3 == j), 4) for j in range(3)}
    assert _totals(engine, table) == expected

    uncached, table2, md2, _ = _projector(store.stream, size=0)
    md2.create_all(engine)
    plain = ProjectionRunner(uncached, store, engine)
    await plain.catch_up()
    assert plain._rows is None
    assert _totals(engine, table2) == expected


async def test_a_dead_letter_retried_while_the_runner_runs_is_not_lost(
    store: Any, engine: Engine
) -> None:
    projector, table, md, broken = _projector(store.stream, park=True)
    md.create_all(engine)
    await _add(store, "x", 1, 2)
    await _add(store, "x", 100, poison=True)  # parked
    await _add(store, "x", 3)
    runner = ProjectionRunner(projector, store, engine, lease_ttl=2)
    async with _live(runner):
        await _caught_up(store, runner, "the first events")
        assert _totals(engine, table) == {"x": (6, 3)}  # x is in the runner's cache now
        broken["on"] = False  # the fix is deployed: the retry (another process) applies it
        (letter,) = list_dead_letters(engine, projector.name)
        other, _, _, fixed = _projector(store.stream, park=True, px=projector.name[:11])
        fixed["on"] = False
        [outcome] = await retry_dead_letters([other], store, engine, letter_id=letter.id)
        assert outcome.ok, outcome
        assert _totals(engine, table) == {"x": (106, 4)}
        await _add(store, "x", 4)  # folded on the retried row, not on the cached one
        await _caught_up(store, runner, "the event after the retry")
    assert _totals(engine, table) == {"x": (110, 5)}


async def test_an_outside_writer_that_touches_the_rows_is_seen(store: Any, engine: Engine) -> None:
    projector, table, md, _ = _projector(store.stream)
    md.create_all(engine)
    await _add(store, "y", 5)
    runner = ProjectionRunner(projector, store, engine, lease_ttl=2)
    async with _live(runner):
        await _caught_up(store, runner, "the first event")
        with transaction(engine) as db:  # e.g. an operator's fix, announced with touch_rows
            checkpoints.touch_rows(db, projector.name)
            db.execute(update(table).where(table.c.id == "y").values(total=50))
        await _add(store, "y", 1)
        await _caught_up(store, runner, "the next event")
    assert _totals(engine, table) == {"y": (51, 2)}


async def test_another_runner_in_between_is_not_overwritten(store: Any, engine: Engine) -> None:
    projector, table, md, _ = _projector(store.stream)
    md.create_all(engine)
    await _add(store, "z", 1, 2)
    first = ProjectionRunner(projector, store, engine, owner="a")
    await first.catch_up()
    await _add(store, "z", 10)
    other, _, _, _ = _projector(store.stream, px=projector.name[:11])
    await ProjectionRunner(other, store, engine, owner="b").catch_up()
    await _add(store, "z", 100)
    await first.catch_up()  # its cache still says 3: it must read 13
    assert _totals(engine, table) == {"z": (113, 4)}


async def test_a_failed_batch_keeps_nothing_of_what_it_staged(
    store: Any, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's rows are written and staged, then its checkpoint write fails (the database
    went away): the batch is applied again from SQL, not from what the failed one staged."""
    projector, table, md, _ = _projector(store.stream)
    md.create_all(engine)
    await _add(store, "w", 1, 2)
    real = checkpoints.save_checkpoint
    failures: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> None:
        if not failures and kwargs.get("last_sequence", 0) > 0:  # the batch's, not the lease's
            failures.append(1)
            raise OperationalError("UPDATE eventkit_checkpoints", {}, Exception("gone"))
        real(*args, **kwargs)

    monkeypatch.setattr("eventkit.projection.committing.checkpoints.save_checkpoint", flaky)
    runner = ProjectionRunner(projector, store, engine, lease_ttl=2)
    async with _live(runner):
        await _caught_up(store, runner, "the batch applied after the outage")
    assert failures == [1]
    assert _totals(engine, table) == {"w": (3, 2)}


async def test_values_the_column_converts_are_read_back(store: Any, tmp_path: Any) -> None:
    """SQLite keeps an int given to a text column as text: the next event sees '5', cached or
    not (a cache that kept the int would hand the handler another type than SQL does)."""
    engine = make_engine(f"sqlite:///{tmp_path}/conv.db")
    upgrade(engine)
    md = MetaData()
    labels = Table(
        "rc_labels",
        md,
        Column("id", String(50), primary_key=True),
        Column("label", String(50)),
        Column("seen", String(50)),
    )
    md.create_all(engine)

    class Labels(RowProjector):
        name = "rc_labels"
        table = labels
        subjects = [f"{store.stream}.label.>"]
        batch_size = 1

        @on(RcLabel)
        def labelled(self, e: RcLabel, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            row["seen"] = type(row["label"]).__name__
            row["label"] = e.label

    await store.append(f"{store.stream}.label.l1", [RcLabel(label=5)])
    await store.append(f"{store.stream}.label.l1", [RcLabel(label="x")])
    await ProjectionRunner(Labels(), store, engine).catch_up()
    with transaction(engine) as db:
        row = db.execute(select(labels)).one()
    assert (row.label, row.seen) == ("x", "str")
    engine.dispose()


async def test_json_changed_in_place_is_written(store: Any, engine: Engine) -> None:
    md = MetaData()
    tags = Table(
        f"rc_tags_{uuid.uuid4().hex[:6]}",
        md,
        Column("id", String(50), primary_key=True),
        Column("tags", JSON, nullable=False, default=list),
    )
    md.create_all(engine)

    class Tags(RowProjector):
        name = tags.name
        table = tags
        subjects = [f"{store.stream}.tagged.>"]
        batch_size = 1

        @on(RcTagged)
        def tagged(self, e: RcTagged, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            row["tags"].append(e.tag)  # in place

    for tag in ("a", "b", "c"):
        await store.append(f"{store.stream}.tagged.t1", [RcTagged(tag=tag)])
    await ProjectionRunner(Tags(), store, engine).catch_up()
    with transaction(engine) as db:
        assert db.execute(select(tags.c.tags)).scalar_one() == ["a", "b", "c"]
