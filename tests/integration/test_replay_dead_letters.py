"""A replay settles the dead letters it re-applies: after the fix is deployed, a replay applies
the parked event once, and a later ``dlq retry --all`` applies nothing a second time."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, func, select
from sqlalchemy.orm import Session

from eventkit.domain.events import Event
from eventkit.domain.handlers import on
from eventkit.projection.deadletters import list_dead_letters, retry_dead_letters
from eventkit.projection.projector import Projector
from eventkit.projection.replay import plan_replay, replay
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import read_transaction
from eventkit.store.records import RecordedEvent

pytestmark = [pytest.mark.nats]


class DlqNoted(Event):
    event_type = "DlqNoted"
    text: str


def _tables(prefix: str) -> tuple[MetaData, Table]:
    md = MetaData()
    log = Table(  # one row per applied sequence: a second apply would violate the key
        f"{prefix}_log", md, Column("seq", Integer, primary_key=True), Column("text", String(50))
    )
    return md, log


def _projector(log: Table) -> Any:
    class Picky(Projector):
        name = f"dlq_{uuid.uuid4().hex[:8]}"
        on_error = "park"
        max_retries = 0
        broken: ClassVar[bool] = True  # the bug; set False to "deploy the fix"

        @on(DlqNoted)
        def noted(self, e: DlqNoted, rec: RecordedEvent[Any], db: Session) -> None:
            if e.text == "odd" and type(self).broken:
                raise ValueError("cannot take an odd note")
            db.execute(log.insert().values(seq=rec.sequence, text=e.text))

        def reset(self, db: Session) -> None:
            db.execute(log.delete())

    return Picky()


async def test_replay_then_retry_all_applies_a_parked_event_once(
    store: Any, engine: Engine
) -> None:
    md, log = _tables(f"dlq{uuid.uuid4().hex[:6]}")
    md.create_all(engine)
    subject = f"{store.stream}.note.n1"
    await store.append(subject, [DlqNoted(text="even")])
    odd = await store.append(subject, [DlqNoted(text="odd")])
    await store.append(subject, [DlqNoted(text="even")])
    projector = _projector(log)
    await ProjectionRunner(projector, store, engine).catch_up()
    assert [d.sequence for d in list_dead_letters(engine, projector.name)] == [odd]

    type(projector).broken = False  # the fix is deployed
    plan = await plan_replay(projector, store, engine, from_start=True)
    await replay(plan, projector, store, engine)
    assert list_dead_letters(engine, projector.name) == []  # settled by the replay
    outcomes = await retry_dead_letters([projector], store, engine, all_open=True)
    assert outcomes == []
    with read_transaction(engine) as db:
        applied = db.execute(select(func.count()).select_from(log)).scalar_one()
        odd_rows = db.execute(select(log.c.seq).where(log.c.seq == odd)).all()
    assert applied == 3 and len(odd_rows) == 1


async def test_a_replay_that_parks_again_reopens_the_letter(store: Any, engine: Engine) -> None:
    md, log = _tables(f"dlq{uuid.uuid4().hex[:6]}")
    md.create_all(engine)
    odd = await store.append(f"{store.stream}.note.n2", [DlqNoted(text="odd")])
    projector = _projector(log)
    await ProjectionRunner(projector, store, engine).catch_up()
    plan = await plan_replay(projector, store, engine, from_start=True)
    await replay(plan, projector, store, engine)  # still broken: parked again
    assert [d.sequence for d in list_dead_letters(engine, projector.name)] == [odd]
