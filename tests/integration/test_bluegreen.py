"""Blue/green rebuilds of a row projector: build beside the live version, switch, drop."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, inspect, select

from eventkit import Event, RowProjector, on
from eventkit.errors import ProjectionError
from eventkit.projection.bluegreen import switch
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import read_transaction
from eventkit.projection.status import status
from eventkit.store.records import RecordedEvent

pytestmark = pytest.mark.nats


class BgPaid(Event):
    amount: int


def _setup(store: Any, engine: Engine) -> tuple[Table, type[RowProjector], type[RowProjector]]:
    px = f"bg{uuid.uuid4().hex[:8]}"
    md = MetaData()
    table = Table(
        f"{px}_sums",
        md,
        Column("id", String(40), primary_key=True),
        Column("total", Integer, nullable=False, default=0, index=True),
    )
    md.create_all(engine)
    subjects = [f"{store.stream}.{px}.>"]

    class V1(RowProjector):
        name = px
        version = 1
        table = md.tables[f"{px}_sums"]

        @on(BgPaid)
        def paid(self, e: BgPaid, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            row["total"] += e.amount

    class V2(V1):
        name = px
        version = 2

        @on(BgPaid)
        def paid(self, e: BgPaid, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            row["total"] += 10 * e.amount  # the new version computes differently

    V1.subjects = V2.subjects = subjects
    return table, V1, V2


async def _consumers(store: Any) -> Any:
    for info in await store.js.consumers_info(store.stream):
        yield info


async def _pay(store: Any, table: Table, entity: str, amount: int) -> None:
    px = table.name.split("_")[0]
    await store.append(f"{store.stream}.{px}.{entity}", [BgPaid(amount=amount)])


def _totals(engine: Engine, name: str) -> dict[str, int]:
    t = Table(name, MetaData(), Column("id", String), Column("total", Integer))
    with read_transaction(engine) as db:
        return {r.id: r.total for r in db.execute(select(t))}


async def test_build_beside_live_then_switch_and_drop(store: Any, engine: Engine) -> None:
    table, V1, V2 = _setup(store, engine)
    for i in range(3):
        await _pay(store, table, f"e{i}", i + 1)
    await ProjectionRunner(V1(), store, engine).catch_up()
    assert _totals(engine, table.name) == {"e0": 1, "e1": 2, "e2": 3}

    # v2 builds into its own table copy and checkpoint; the live table is untouched
    built = await ProjectionRunner(V2(), store, engine).catch_up()
    assert (built.projector, built.version) == (V1.name, 2)  # the name users know
    assert _totals(engine, f"{table.name}_v2") == {"e0": 10, "e1": 20, "e2": 30}
    assert _totals(engine, table.name) == {"e0": 1, "e1": 2, "e2": 3}

    # the old version keeps serving (its workers run the old code) while v2 lags behind
    await _pay(store, table, "e0", 5)
    await ProjectionRunner(V1(), store, engine).catch_up()
    assert _totals(engine, table.name)["e0"] == 6
    rows = await status([V2()], store, engine)
    assert [(r.version, r.role, r.lag_events) for r in rows] == [(1, "live", 0), (2, "building", 1)]

    # a live v2 worker goes on across the switch, into the renamed table
    runner = ProjectionRunner(V2(), store, engine, idle_timeout=0.05)
    task = asyncio.create_task(runner.run())
    for _ in range(200):
        if runner.state == "live":
            break
        await asyncio.sleep(0.05)
    done = await switch(V2(), store, engine)
    assert "version 2 is live" in done
    await _pay(store, table, "e3", 1)
    for _ in range(100):
        if _totals(engine, table.name).get("e3") == 10:
            break
        await asyncio.sleep(0.05)
    runner.stop()
    result = await task
    assert not result.halted
    assert _totals(engine, table.name) == {"e0": 60, "e1": 20, "e2": 30, "e3": 10}
    names = set(inspect(engine).get_table_names())
    assert f"{table.name}_v2" not in names and f"{table.name}_retired_v1" not in names
    consumers = {c.name async for c in _consumers(store)}
    assert f"eventkit_{V1.name}" not in consumers  # the retired version's consumer went too
    assert f"eventkit_{V1.name}_v2" in consumers

    # an old worker can no longer write; status shows the one live version
    with pytest.raises(ProjectionError, match="retired"):
        await ProjectionRunner(V1(), store, engine, lease_wait=0.2).catch_up()
    rows = await status([V2()], store, engine)
    assert [(r.version, r.role, r.slot) for r in rows] == [(2, "live", f"{V1.name}_v2")]
    with pytest.raises(ProjectionError, match="no newer version"):
        await switch(V2(), store, engine)


async def test_a_plain_projector_with_a_raised_version_is_refused(
    store: Any, engine: Engine
) -> None:
    from eventkit.projection.projector import Projector

    class Plain(Projector):
        name = f"plain{uuid.uuid4().hex[:6]}"
        version = 2

    with pytest.raises(ProjectionError, match="plain Projector"):
        ProjectionRunner(Plain(), store, engine)


async def test_letters_parked_by_a_building_version_are_listed_and_retried_into_its_copy(
    store: Any, engine: Engine
) -> None:
    from eventkit.projection.deadletters import list_dead_letters, retry_dead_letters

    table, V1, V2 = _setup(store, engine)
    broken = {"on": True}

    class Parking(V2):  # type: ignore[misc, valid-type]
        name = V1.name
        on_error = "park"

        @on(BgPaid)
        def paid(self, e: BgPaid, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            if e.amount == 13 and broken["on"]:
                raise ValueError("unlucky")
            row["total"] += 10 * e.amount

    Parking.subjects = V1.subjects
    await _pay(store, table, "e0", 1)
    await ProjectionRunner(V1(), store, engine).catch_up()
    await _pay(store, table, "e1", 13)
    await _pay(store, table, "e2", 2)
    built = await ProjectionRunner(Parking(), store, engine).catch_up()
    assert not built.halted
    assert _totals(engine, f"{table.name}_v2") == {"e0": 10, "e2": 20}

    # the building version's letter is its slot's, and its projector's name finds it
    (letter,) = list_dead_letters(engine, V1.name)
    assert letter.projector == f"{V1.name}_v2"
    assert list_dead_letters(engine, f"{V1.name}_v2") == [letter]

    broken["on"] = False
    (outcome,) = await retry_dead_letters([Parking()], store, engine, all_open=True)
    assert outcome.ok, outcome.error
    # applied by the building version, into its copy; the live table is untouched
    assert _totals(engine, f"{table.name}_v2") == {"e0": 10, "e1": 130, "e2": 20}
    assert _totals(engine, table.name) == {"e0": 1}
    assert list_dead_letters(engine, V1.name) == []

    # a letter id of that slot is retried as well
    broken["on"] = True
    await _pay(store, table, "e3", 13)
    await ProjectionRunner(Parking(), store, engine).catch_up()
    (again,) = list_dead_letters(engine, V1.name)
    broken["on"] = False
    (outcome,) = await retry_dead_letters([Parking()], store, engine, letter_id=again.id)
    assert outcome.ok, outcome.error
    assert _totals(engine, f"{table.name}_v2")["e3"] == 130
