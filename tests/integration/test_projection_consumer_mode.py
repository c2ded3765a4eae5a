"""A projector's consumer takes the whole stream when its subjects are most of what is ahead
(the server delivers a filtered consumer's messages at a far higher cost on a stream of many
subjects), and keeps its filters when they are a small part; either way only the projector's
own subjects are applied, and the checkpoint reaches the end."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, select

from eventkit import Event, RecordedEvent, RowProjector, on
from eventkit.gdpr.notice import ForgetNotices
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import transaction
from eventkit.runtime.density import DENSE_MIN, DENSE_SHARE, DENSE_SHARE_SEVERAL
from eventkit.runtime.pulling import consumer_name

pytestmark = pytest.mark.nats


class CmMoved(Event):
    amount: int


def _projector(px: str, stream: str) -> tuple[RowProjector, Table, MetaData]:
    md = MetaData()
    accounts = Table(
        f"{px}_acc",
        md,
        Column("id", String(50), primary_key=True),
        Column("total", Integer, nullable=False, default=0),
        Column("events", Integer, nullable=False, default=0),
    )

    class Accounts(RowProjector):
        name = f"{px}_acc"
        subjects = [f"{stream}.account.>"]
        batch_size = 128
        table = accounts

        @on(CmMoved)
        def moved(self, e: CmMoved, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            row["total"] += e.amount
            row["events"] += 1

    return Accounts(), accounts, md


async def _append(store: Any, kind: str, subjects: int, per: int, amount: int) -> None:
    """``subjects`` subjects of ``kind`` with ``per`` events each (the same event type on every
    kind: only the subject tells a loan's event from an account's)."""

    async def one(i: int) -> None:
        subject = f"{store.stream}.{kind}.{kind[0]}{i}"
        await store.append(subject, [CmMoved(amount=amount) for _ in range(per)])

    for start in range(0, subjects, 50):
        await asyncio.gather(*(one(i) for i in range(start, min(subjects, start + 50))))


def _model(engine: Engine, table: Table) -> tuple[int, int, int]:
    with transaction(engine) as db:
        rows = db.execute(select(table.c.id, table.c.total, table.c.events)).all()
    assert all(r.id.startswith("a") for r in rows), "a loan's event was applied"
    return len(rows), sum(r.total for r in rows), sum(r.events for r in rows)


async def _filters(store: Any, name: str) -> list[str]:
    info = await store.js.consumer_info(store.stream, consumer_name(name))
    one = info.config.filter_subject
    return list(info.config.filter_subjects or ([one] if one else []))


async def test_dense_subjects_take_the_whole_stream_and_apply_only_their_own(
    store: Any, engine: Engine
) -> None:
    px = f"cm_{uuid.uuid4().hex[:8]}"
    projector, table, md = _projector(px, store.stream)
    md.create_all(engine)
    await _append(store, "account", 300, 10, 2)  # 3,000 of the projector's
    await _append(store, "loan", 50, 10, 1000)  # 500 others, same event type
    assert DENSE_MIN <= 3000 and 3500 * DENSE_SHARE_SEVERAL <= 3000
    runner = ProjectionRunner(projector, store, engine, system=ForgetNotices(store.stream, None))
    result = await runner.catch_up()
    assert not result.halted and result.checkpoint == await store.last_sequence()
    assert await _filters(store, projector.name) == []  # the whole stream
    assert _model(engine, table) == (300, 6000, 3000)

    # a later backlog mostly of others' subjects: back to the filters, still exact
    assert 4050 * DENSE_SHARE_SEVERAL > 50
    await _append(store, "loan", 400, 10, 1000)
    await _append(store, "account", 10, 5, 3)
    result = await ProjectionRunner(
        projector, store, engine, system=ForgetNotices(store.stream, None)
    ).catch_up()
    assert not result.halted and result.checkpoint == await store.last_sequence()
    assert sorted(await _filters(store, projector.name)) == sorted(runner.filters)
    assert len(runner.filters) == 2  # the projector's subjects and the forget notices
    assert _model(engine, table) == (300, 6150, 3050)  # a0..a9 again


async def test_sparse_subjects_keep_their_filters(store: Any, engine: Engine) -> None:
    px = f"cm_{uuid.uuid4().hex[:8]}"
    projector, table, md = _projector(px, store.stream)
    md.create_all(engine)
    await _append(store, "loan", 300, 10, 1000)
    await _append(store, "account", 20, 10, 2)  # 200 of 3,200
    assert 3200 * DENSE_SHARE > 200
    result = await ProjectionRunner(projector, store, engine).catch_up()
    assert not result.halted and result.checkpoint == await store.last_sequence()
    assert await _filters(store, projector.name) == [f"{store.stream}.account.>"]
    assert _model(engine, table) == (20, 400, 200)

    # then a backlog all of its own, one filter: the whole stream
    await _append(store, "account", 300, 10, 1)
    result = await ProjectionRunner(projector, store, engine).catch_up()
    assert not result.halted and result.checkpoint == await store.last_sequence()
    assert await _filters(store, projector.name) == []
    assert _model(engine, table) == (300, 3400, 3200)
