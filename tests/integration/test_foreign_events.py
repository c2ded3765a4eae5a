"""Messages other services write: a projector binds their subjects to an Event class and gets
them typed; what it passes over is counted per reason, shown by status, logged once."""

from __future__ import annotations

import json
import uuid
from typing import Any

import nats
import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, select
from sqlalchemy.orm import Session

from eventkit.domain.events import Event
from eventkit.domain.handlers import on
from eventkit.errors import ConfigError
from eventkit.projection.projector import Projector
from eventkit.projection.replay import plan_replay, replay
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import read_transaction
from eventkit.projection.status import status
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.records import RecordedEvent

pytestmark = [pytest.mark.nats]


class OrderPlaced(Event):
    event_type = "ForeignOrderPlaced"
    total: int


class NoteAdded(Event):
    event_type = "ForeignNoteAdded"
    text: str


def _setup(engine: Engine) -> tuple[Table, Any]:
    md = MetaData()
    orders = Table(
        f"orders_{uuid.uuid4().hex[:6]}",
        md,
        Column("seq", Integer, primary_key=True),
        Column("order_id", String(80)),
        Column("event_id", String(200)),
        Column("total", Integer),
    )
    md.create_all(engine)

    class Orders(Projector):
        name = f"orders_{uuid.uuid4().hex[:6]}"
        subjects = ["{stream}.note.>"]  # replaced per test below
        foreign_events = {"{stream}.orders.>": OrderPlaced}

        @on(OrderPlaced)
        def placed(self, e: OrderPlaced, rec: RecordedEvent[Any], db: Session) -> None:
            values = {"seq": rec.sequence, "order_id": rec.entity_id, "total": e.total}
            db.execute(orders.insert().values(event_id=rec.event_id, **values))

        def reset(self, db: Session) -> None:
            db.execute(orders.delete())

    return orders, Orders


async def test_a_bound_foreign_subject_reaches_the_projector_typed(
    store: JetStreamEventStore, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    s = store.stream
    orders, base = _setup(engine)
    cls = type(
        "Orders",
        (base,),
        {
            "name": base.name,
            "subjects": [f"{s}.note.>"],
            "foreign_events": {f"{s}.orders.>": OrderPlaced},
        },
    )
    projector = cls()
    nc = await nats.connect(store.nc.connected_url.geturl())  # another service, plain nats-py
    js = nc.jetstream()
    await js.publish(
        f"{s}.orders.o-1",
        json.dumps({"total": 30, "channel": "web"}).encode(),
        headers={"Nats-Msg-Id": "order-1"},
    )
    await js.publish(f"{s}.orders.o-2", json.dumps({"total": 12}).encode())
    await js.publish(f"{s}.note.x", b"not json at all")  # foreign, unbound: passed over
    await store.append(f"{s}.note.n1", [NoteAdded(text="no handler here")])  # unhandled
    await nc.close()

    result = await ProjectionRunner(projector, store, engine).catch_up()
    assert not result.halted and result.checkpoint == await store.last_sequence()
    with read_transaction(engine) as db:
        rows = db.execute(select(orders).order_by(orders.c.seq)).all()
    assert [(r.order_id, r.total) for r in rows] == [("o-1", 30), ("o-2", 12)]
    assert rows[0].event_id == "order-1" and rows[1].event_id == f"{s}:{rows[1].seq}"
    (shown,) = await status([projector], store, engine)
    assert shown.passed_over == {"foreign": 1, "unhandled": 1}
    assert sum("passing over foreign" in r.getMessage() for r in caplog.records) == 1

    # a replay from the start counts again from zero
    plan = await plan_replay(projector, store, engine, from_start=True)
    await replay(plan, projector, store, engine)
    (shown,) = await status([projector], store, engine)
    assert shown.passed_over == {"foreign": 1, "unhandled": 1}


def test_a_binding_without_a_handler_is_refused() -> None:
    with pytest.raises(ConfigError, match="no @on handler"):

        class Bad(Projector):
            foreign_events = {"bank.orders.>": NoteAdded}


async def test_a_reactor_binds_a_foreign_subject_too(store: JetStreamEventStore) -> None:
    from eventkit.reaction.context import ReactorContext
    from eventkit.reaction.reactor import Reactor
    from eventkit.reaction.runner import ReactorRunner

    s = store.stream
    seen: list[tuple[str, int, str]] = []

    class Shipping(Reactor):
        name = f"shipping_{uuid.uuid4().hex[:6]}"
        subjects = [f"{s}.note.>"]
        foreign_events = {f"{s}.orders.>": OrderPlaced}

        @on(OrderPlaced)
        async def placed(
            self, e: OrderPlaced, rec: RecordedEvent[Any], ctx: ReactorContext
        ) -> None:
            seen.append((rec.entity_id, e.total, rec.event_id))

    nc = await nats.connect(store.nc.connected_url.geturl())
    await nc.jetstream().publish(
        f"{s}.orders.o-9", json.dumps({"total": 7}).encode(), headers={"Nats-Msg-Id": "o-9"}
    )
    await nc.close()
    await ReactorRunner(Shipping(), store).catch_up()
    assert seen == [("o-9", 7, "o-9")]
