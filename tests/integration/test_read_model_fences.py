"""A read model never applies an event twice nor loses one where versions, erasure, key types,
hand edits and streams meet: every event applied once by one version into one table."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from _versions import Kit, VsPaid, running, wait_for  # type: ignore[import-not-found]
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, delete, select, update

from eventkit import App, Event, RowProjector, on
from eventkit.errors import ConfigError, ProjectionError
from eventkit.gdpr import erasure_rows
from eventkit.gdpr.forget import forget_subject
from eventkit.projection.bluegreen import switch
from eventkit.projection.checkpoints import touch_rows
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import read_transaction, transaction
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.records import RecordedEvent
from eventkit.store.subjects import entity_id_of

pytestmark = pytest.mark.nats


# -- 1. two versions never write one table ----------------------------------------------------
async def test_an_older_version_started_after_a_newer_one_is_refused(
    store: Any, engine: Engine
) -> None:
    kit = Kit(store, engine)
    for i in range(6):
        await kit.pay(f"k{i % 3}", 1)
    # version 2 starts first on a database where version 1 never ran: it is the live version
    await ProjectionRunner(kit.V2(), store, engine).catch_up()
    assert kit.totals() == {"k0": 20, "k1": 20, "k2": 20}
    with pytest.raises(ProjectionError, match="is retired: version 2 is live"):
        await ProjectionRunner(kit.V1(), store, engine).catch_up()
    assert kit.totals() == {"k0": 20, "k1": 20, "k2": 20}


async def test_old_and_new_workers_starting_together_write_one_table_each(
    store: Any, engine: Engine
) -> None:
    """A rolling deploy: workers of both versions start at once on a fresh database, while
    events arrive. One version owns the live table, the other builds a copy or is refused;
    no key is applied twice."""
    for round_ in range(4):
        kit = Kit(store, engine)
        for i in range(30):
            await kit.pay(f"k{i}", 1)
        runners: list[ProjectionRunner] = [
            ProjectionRunner(kit.V1(), store, engine, idle_timeout=0.05)
        ]

        async def start_new(kit: Kit, runners: list[ProjectionRunner]) -> Any:
            # its deploy races the old worker's first lease
            runners.append(
                await asyncio.to_thread(
                    ProjectionRunner, kit.V2(), store, engine, idle_timeout=0.05
                )
            )
            return await runners[-1].run()

        tasks = [
            asyncio.create_task(runners[0].run()),
            asyncio.create_task(start_new(kit, runners)),
        ]
        for i in range(30):
            await kit.pay(f"k{i}", 1)
        last = await store.last_sequence()
        await wait_for(
            lambda ts=tasks, rs=runners, end=last: (
                len(rs) == 2  # type: ignore[misc]
                and all(t.done() or r.checkpoint >= end for t, r in zip(ts, rs, strict=True))
            ),
            "the runners",
        )
        for r in runners:
            r.stop()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        refused = [x for x in results if isinstance(x, BaseException)]
        assert all(isinstance(e, ProjectionError) for e in refused), refused
        assert len(refused) <= 1
        live = kit.totals()
        assert len(live) == 30, round_
        assert set(live.values()) in ({2}, {20}), (round_, sorted(live.values()))
        if not refused:  # version 1 was live first: version 2 built its copy
            assert live == {f"k{i}": 2 for i in range(30)}
            assert kit.totals(f"{kit.table.name}_v2") == {f"k{i}": 20 for i in range(30)}


# -- 2. forget never wipes events applied after its marker ------------------------------------
class FfNamed(Event):
    customer: str
    name: str


class FfPaid(Event):
    customer: str
    amount: int


def _shared_row_projector(store: Any, engine: Engine) -> tuple[RowProjector, Table]:
    px = f"ff{uuid.uuid4().hex[:8]}"
    md = MetaData()
    table = Table(
        f"{px}_customers",
        md,
        Column("id", String(60), primary_key=True),
        Column("name", String(100)),
        Column("total", Integer, nullable=False, default=0),
    )
    md.create_all(engine)

    class Customers(RowProjector):
        """A row per customer, fed by the customer's subject and by their accounts'."""

        name = px
        subjects = [f"{store.stream}.{px}.>"]
        table = md.tables[f"{px}_customers"]

        def key(self, rec: RecordedEvent[Any]) -> str:
            return str(rec.event.customer)

        @on(FfNamed)
        def named(self, e: FfNamed, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            row["name"] = e.name

        @on(FfPaid)
        def paid(self, e: FfPaid, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            row["total"] += e.amount

        def forget(self, subject: str, db: Any) -> None:
            t = self.target()
            db.execute(delete(t).where(t.c.id == entity_id_of(subject)))

    return Customers(), table


async def test_forget_does_not_undo_events_applied_after_the_marker(
    store: Any, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    projector, table = _shared_row_projector(store, engine)
    px = projector.name
    customer, account = f"{store.stream}.{px}.c1", f"{store.stream}.{px}.a1"
    await store.append(customer, [FfNamed(customer="c1", name="Ada")])
    for _ in range(5):
        await store.append(account, [FfPaid(customer="c1", amount=1)])
    app = App(stream=store.stream, projectors=[projector])
    runner = ProjectionRunner(projector, store, engine)
    await runner.catch_up()
    loop = asyncio.get_running_loop()
    real = erasure_rows.forget_rows

    def late_forget_rows(*args: Any) -> int:
        # the window the forget leaves: the runner applies the marker and later account
        # events before the forget's read-model step runs
        async def meanwhile() -> None:
            for _ in range(7):
                await store.append(account, [FfPaid(customer="c1", amount=100)])
            await ProjectionRunner(projector, store, engine).catch_up()

        asyncio.run_coroutine_threadsafe(meanwhile(), loop).result(60)
        return real(*args)

    monkeypatch.setattr(erasure_rows, "forget_rows", late_forget_rows)
    await forget_subject(app, store, engine, customer)
    with read_transaction(engine) as db:
        rows = {r.id: (r.name, r.total) for r in db.execute(select(table))}
    # the marker dropped Ada's row; the 700 paid in after it stay (applied once, never undone)
    assert rows == {"c1": (None, 700)}


async def test_forget_removes_the_row_of_a_runner_behind_the_marker(
    store: Any, engine: Engine
) -> None:
    projector, table = _shared_row_projector(store, engine)
    px = projector.name
    customer = f"{store.stream}.{px}.c1"
    await store.append(customer, [FfNamed(customer="c1", name="Ada")])
    await ProjectionRunner(projector, store, engine).catch_up()
    app = App(stream=store.stream, projectors=[projector])
    await forget_subject(app, store, engine, customer)  # no runner runs: forgotten now
    with read_transaction(engine) as db:
        assert list(db.execute(select(table))) == []
    await ProjectionRunner(projector, store, engine).catch_up()  # then the marker: nothing left
    with read_transaction(engine) as db:
        assert list(db.execute(select(table))) == []


# -- 3. a key column's type is the key's type -------------------------------------------------
class KtPaid(Event):
    amount: int


async def test_an_integer_key_column_takes_the_entity_id_converted(
    store: Any, engine: Engine
) -> None:
    px = f"kt{uuid.uuid4().hex[:8]}"
    md = MetaData()
    table = Table(
        f"{px}_sums",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("total", Integer, nullable=False, default=0),
    )
    md.create_all(engine)

    class Sums(RowProjector):
        name = px
        subjects = [f"{store.stream}.{px}.>"]
        table = md.tables[f"{px}_sums"]
        batch_size = 3

        @on(KtPaid)
        def paid(self, e: KtPaid, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            row["total"] += e.amount

    for i in range(20):
        await store.append(f"{store.stream}.{px}.{i % 2 + 1}", [KtPaid(amount=1)])
    result = await ProjectionRunner(Sums(), store, engine).catch_up()
    assert not result.halted, result.error
    with read_transaction(engine) as db:
        assert {r.id: r.total for r in db.execute(select(table))} == {1: 10, 2: 10}

    # an entity id that is no integer halts the projector, naming it
    await store.append(f"{store.stream}.{px}.abc", [KtPaid(amount=1)])
    result = await ProjectionRunner(Sums(), store, engine).catch_up()
    assert result.halted and "'abc'" in (result.error or "")


async def test_a_key_of_another_type_than_its_column_halts(store: Any, engine: Engine) -> None:
    px = f"kt{uuid.uuid4().hex[:8]}"
    md = MetaData()
    Table(
        f"{px}_sums",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("total", Integer, nullable=False, default=0),
    )
    md.create_all(engine)

    class Sums(RowProjector):
        name = px
        subjects = [f"{store.stream}.{px}.>"]
        table = md.tables[f"{px}_sums"]

        def key(self, rec: RecordedEvent[Any]) -> Any:
            return rec.entity_id  # a string for an Integer column

        @on(KtPaid)
        def paid(self, e: KtPaid, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            row["total"] += e.amount

    await store.append(f"{store.stream}.{px}.7", [KtPaid(amount=1)])
    result = await ProjectionRunner(Sums(), store, engine).catch_up()
    assert result.halted and "return a int" in (result.error or "")


def test_a_key_column_the_entity_id_cannot_fill_is_refused_at_definition() -> None:
    from sqlalchemy import Date

    md = MetaData()
    table = Table("kt_dates", md, Column("day", Date, primary_key=True), Column("n", Integer))
    with pytest.raises(ConfigError, match="define key"):

        class Days(RowProjector):
            table = md.tables["kt_dates"]

    assert table is not None


# -- 4. a hand edit announced by the projector's name, after a switch ------------------------
async def test_touch_rows_by_name_reaches_the_live_version_after_a_switch(
    store: Any, engine: Engine
) -> None:
    kit = Kit(store, engine)
    await kit.pay("k", 1)
    await ProjectionRunner(kit.V1(), store, engine).catch_up()
    await ProjectionRunner(kit.V2(), store, engine).catch_up()
    await switch(kit.V2(), store, engine)
    runner = ProjectionRunner(kit.V2(), store, engine, idle_timeout=0.05)
    async with running(runner):
        await kit.pay("k", 1)
        await wait_for(lambda: kit.totals().get("k") == 20, "the first event")
        with transaction(engine) as db:  # the documented way to change rows by hand
            touch_rows(db, kit.px)
            db.execute(update(kit.table).values(total=kit.table.c.total + 1_000_000))
        await kit.pay("k", 1)
        await wait_for(lambda: kit.totals().get("k", 0) > 1_000_000, "the next event", 15)
    assert kit.totals() == {"k": 1_000_030}


# -- 5. a checkpoint follows one stream -------------------------------------------------------
async def test_a_runner_on_another_stream_is_refused_its_checkpoint(
    store: Any, engine: Engine, nats_url: str
) -> None:
    kit = Kit(store, engine)
    for _ in range(6):
        await kit.pay("k", 1)
    await ProjectionRunner(kit.V1(), store, engine).catch_up()
    other_stream = f"other{uuid.uuid4().hex[:8]}"
    other = await JetStreamEventStore.connect(nats_url, stream=other_stream)
    try:
        kit.V1.subjects = [f"{other_stream}.{kit.px}.>"]
        for _ in range(8):
            await other.append(f"{other_stream}.{kit.px}.k", [VsPaid(amount=1)])
        with pytest.raises(ProjectionError, match=f"follows stream '{store.stream}'"):
            await ProjectionRunner(kit.V1(), other, engine).catch_up()
        assert kit.totals() == {"k": 6}
    finally:
        await other.js.delete_stream(other_stream)
        await other.close()
