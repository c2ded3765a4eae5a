"""A partitioned projector on an R3 stream: the stream leader is killed -9 while a third worker
joins (a rebalance), under appends; every event is still applied once, each entity's events in
stream order, and the joining worker takes its share."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, select
from sqlalchemy.orm import Session

from eventkit import JetStreamEventStore
from eventkit.domain.handlers import on
from eventkit.projection import partition_rows as pr
from eventkit.projection.projector import Projector
from eventkit.projection.runner import runner_for
from eventkit.projection.sql import make_engine, read_transaction, upgrade
from eventkit.runtime.supervisor import Supervisor
from eventkit.store.records import RecordedEvent
from eventkit.testing.waiting import wait_until

from ._domain import RelAdded
from .conftest import new_stream, record_result

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.cluster]

TTL = 1.5
SUBJECTS = 20

md = MetaData()
entities = Table(
    "rb_entities",
    md,
    Column("subject", String(200), primary_key=True),
    Column("last_seq", Integer, nullable=False),
    Column("count", Integer, nullable=False),
)
applied = Table("rb_applied", md, Column("seq", Integer, primary_key=True))  # once: the key


class WentBack(RuntimeError):
    """An entity's event came at or below the last sequence applied to it."""


class Ordered(Projector):
    name = "rb_ordered"
    partitions = 4

    @on(RelAdded)
    def added(self, e: RelAdded, rec: RecordedEvent[Any], db: Session) -> None:
        last = db.execute(
            select(entities.c.last_seq).where(entities.c.subject == rec.subject)
        ).scalar()
        if last is not None and last >= rec.sequence:
            raise WentBack(f"{rec.subject}: seq {rec.sequence} after {last}")
        if last is None:
            db.execute(entities.insert().values(subject=rec.subject, last_seq=0, count=0))
        db.execute(
            entities.update()
            .where(entities.c.subject == rec.subject)
            .values(last_seq=rec.sequence, count=entities.c.count + 1)
        )
        db.execute(applied.insert().values(seq=rec.sequence))


def at_end(engine: Engine, end: int) -> bool:
    with read_transaction(engine) as db:
        rows = pr.rows(db, Ordered.name)
    return bool(rows) and all(r.last_sequence >= end for r in rows)


def owners(engine: Engine) -> set[str]:
    with read_transaction(engine) as db:
        return {r.owner for r in pr.rows(db, Ordered.name) if r.live}


async def append(store: JetStreamEventStore, n: int, out: dict[str, list[int]]) -> None:
    for i in range(n):
        subject = f"{store.stream}.in.e{i % SUBJECTS}"
        seq = await store.append(subject, [RelAdded(amount=i)])
        out.setdefault(subject, []).append(seq)


async def test_a_leader_kill_during_a_rebalance_applies_every_event_once_in_order(
    cluster: Any, tmp_path: Path
) -> None:
    stream = new_stream("rebal")
    engine = make_engine(f"sqlite:///{tmp_path / 'rm.db'}")
    upgrade(engine)
    md.create_all(engine)
    store = await JetStreamEventStore.connect(
        cluster.urls, stream=stream, replicas=3, retry_for=30.0
    )
    stores: list[JetStreamEventStore] = []
    runners: list[Any] = []

    async def worker(owner: str) -> asyncio.Future[Any]:
        ws = await JetStreamEventStore.connect(
            cluster.urls, stream=stream, replicas=3, retry_for=30.0
        )
        stores.append(ws)
        runner = runner_for(Ordered(), ws, engine, owner=owner, lease_ttl=TTL, batch_size=16)
        runners.append(runner)
        return asyncio.ensure_future(Supervisor([runner]).run())  # what eventkit run does

    expected: dict[str, list[int]] = {}
    running = [await worker("w1"), await worker("w2")]
    try:
        await append(store, 100, expected)
        end = await store.last_sequence()
        assert await wait_until(lambda: owners(engine) == {"w1", "w2"}, 20 * TTL)
        assert await wait_until(lambda: at_end(engine, end), 20 * TTL)
        load = asyncio.create_task(append(store, 120, expected))
        running.append(await worker("w3"))  # joins: partitions move between batches
        leader = await cluster.stream_leader(store.js, stream)
        cluster.node(leader).kill()
        killed_at = time.monotonic()
        await asyncio.wait_for(load, 60)
        end = await store.last_sequence()
        assert await wait_until(lambda: at_end(engine, end), 30 + 20 * TTL)
        record_result(
            "R3 stream leader kill -9 during a partition rebalance",
            caught_up_after_s=round(time.monotonic() - killed_at, 2),
        )
        assert await wait_until(lambda: owners(engine) == {"w1", "w2", "w3"}, 20 * TTL)
        assert not any(f.done() for f in running), "a worker ended"
        cluster.node(leader).restart()
        await cluster.wait_stream_current(store.js, stream)  # whole again for the next test
    finally:
        for r in runners:
            r.stop()
        outcomes = await asyncio.wait_for(asyncio.gather(*running), 60)
        for s in [*stores, store]:
            await s.close()
    assert all(o.error is None for (o,) in outcomes)
    with engine.connect() as conn:
        rows = {r.subject: (r.last_seq, r.count) for r in conn.execute(select(entities))}
        seqs = sorted(int(q) for q in conn.execute(select(applied.c.seq)).scalars())
    assert rows == {s: (q[-1], len(q)) for s, q in expected.items()}
    assert seqs == sorted(q for v in expected.values() for q in v)
