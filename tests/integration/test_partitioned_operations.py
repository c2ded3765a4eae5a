"""Operations on a partitioned projector while its workers run: a blue/green switch, retrying a
parked event of one partition, a replay from a point, a forget. Each ends with every event
applied once, each entity's events in stream order (the read model refuses to go back)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pytest
from partition_worker import (  # type: ignore[import-not-found]
    PtTicked,
    WentBack,
    append_ticks,
)
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, delete, func, select
from sqlalchemy.orm import Session

from eventkit import RecordedEvent, RowProjector, on
from eventkit.projection import partition_rows as pr
from eventkit.projection.projector import Projector
from eventkit.projection.runner import ProjectionRunner, RunResult, runner_for
from eventkit.projection.sql import read_transaction, transaction
from eventkit.testing.waiting import wait_until

pytestmark = [pytest.mark.nats, pytest.mark.slow]

TTL = 1.5
WAIT = 20 * TTL + 30
"""How long a condition may take on a loaded machine (it usually takes a ttl or two)."""


class Poisoned(RuntimeError):
    """The handler fails for a subject listed in the poison table."""


def ops_tables(px: str) -> tuple[MetaData, Table, Table, Table]:
    md = MetaData()
    entities = Table(
        f"{px}_entities",
        md,
        Column("subject", String(200), primary_key=True),
        Column("last_seq", Integer),
        Column("count", Integer),
    )
    applied = Table(
        f"{px}_applied",
        md,
        Column("seq", Integer, primary_key=True),  # a double apply violates the key
        Column("subject", String(200), nullable=False, index=True),
    )
    poison = Table(f"{px}_poison", md, Column("subject", String(200), primary_key=True))
    return md, entities, applied, poison


def make_ops_projector(px: str, partitions: int, *, park: bool = False) -> Projector:
    """A partitioned projector that checks per-entity order and exactly-once, can rewind and
    forget, and fails on the subjects of its poison table."""
    _, entities, applied, poison = ops_tables(px)

    class Ops(Projector):
        @on(PtTicked)
        def ticked(self, e: PtTicked, rec: RecordedEvent[Any], db: Session) -> None:
            if db.execute(select(poison).where(poison.c.subject == rec.subject)).first():
                raise Poisoned(rec.subject)
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
            db.execute(applied.insert().values(seq=rec.sequence, subject=rec.subject))

        def reset(self, db: Session) -> None:
            db.execute(entities.delete())
            db.execute(applied.delete())

        def rewind(self, to_sequence: int, db: Session) -> None:
            db.execute(delete(applied).where(applied.c.seq > to_sequence))
            db.execute(entities.delete())
            q = select(applied.c.subject, func.max(applied.c.seq), func.count()).group_by(
                applied.c.subject
            )
            for subject, last, count in db.execute(q).all():
                db.execute(entities.insert().values(subject=subject, last_seq=last, count=count))

        def forget(self, subject: str, db: Session) -> None:
            db.execute(delete(entities).where(entities.c.subject == subject))
            db.execute(delete(applied).where(applied.c.subject == subject))

    attrs: dict[str, Any] = {"name": f"{px}_ops", "partitions": partitions}
    if park:
        attrs.update(on_error="park", max_retries=0)
    return type("Ops", (Ops,), attrs)()  # type: ignore[no-any-return]


def make_ops_rows(px: str, partitions: int, version: int) -> RowProjector:
    """The same order check as a ``RowProjector`` (a version of it: blue/green)."""
    _, entities, _, _ = ops_tables(px)

    class OpsRows(RowProjector):
        table = entities

        def key(self, rec: RecordedEvent[Any]) -> Any:
            return rec.subject

        @on(PtTicked)
        def ticked(self, e: PtTicked, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
            if row["last_seq"] is not None and row["last_seq"] >= rec.sequence:
                raise WentBack(f"{rec.subject}: seq {rec.sequence} after {row['last_seq']}")
            row["last_seq"] = rec.sequence
            row["count"] = (row["count"] or 0) + 1

    attrs = {"name": f"{px}_rows", "partitions": partitions, "version": version}
    return type("OpsRows", (OpsRows,), attrs)()  # type: ignore[no-any-return]


async def append_except(
    store: Any, events: int, subjects: int, skip: Iterable[str]
) -> dict[str, list[int]]:
    """``append_ticks`` without the subjects ``skip`` (forgotten: appends are refused)."""
    names = [s for i in range(subjects) if (s := f"{store.stream}.ent.e{i}") not in set(skip)]
    out: dict[str, list[int]] = {}
    for start in range(0, events, len(names)):
        batch = [names[i % len(names)] for i in range(start, min(events, start + len(names)))]
        seqs = await asyncio.gather(*(store.append(s, [PtTicked(n=0)]) for s in batch))
        for s, seq in zip(batch, seqs, strict=True):
            out.setdefault(s, []).append(seq)
    return out


def merge(into: dict[str, list[int]], more: dict[str, list[int]]) -> None:
    for s, seqs in more.items():
        into.setdefault(s, []).extend(seqs)
        into[s].sort()


def entity_rows(engine: Engine, table: str) -> dict[str, tuple[int, int]]:
    t = Table(table, MetaData(), Column("subject", String), Column("last_seq", Integer),
              Column("count", Integer))  # fmt: skip
    with read_transaction(engine) as db:
        return {r.subject: (r.last_seq, r.count) for r in db.execute(select(t))}


def check_ops(engine: Engine, px: str, expected: dict[str, list[int]]) -> None:
    """Every expected event applied once, each entity at its last sequence, nothing else."""
    _, _, applied, _ = ops_tables(px)
    want = {s: (seqs[-1], len(seqs)) for s, seqs in expected.items() if seqs}
    assert entity_rows(engine, f"{px}_entities") == want
    with read_transaction(engine) as db:
        done = sorted(int(q) for q in db.execute(select(applied.c.seq)).scalars())
    assert done == sorted(q for seqs in expected.values() for q in seqs)


def partitions_at(engine: Engine, name: str, end: int) -> bool:
    with read_transaction(engine) as db:
        rows = pr.rows(db, name)
    return bool(rows) and all(r.last_sequence >= end for r in rows)


class Running:
    """In-process workers of one projector, run live until stopped."""

    def __init__(self, store: Any, engine: Engine) -> None:
        self.store, self.engine = store, engine
        self.runners: list[ProjectionRunner] = []
        self.tasks: list[asyncio.Task[RunResult]] = []

    def start(self, make: Callable[[], Projector], owners: Iterable[str]) -> list[ProjectionRunner]:
        made = []
        for owner in owners:
            r = runner_for(make(), self.store, self.engine, owner=owner, lease_ttl=TTL,
                           batch_size=16)  # fmt: skip
            self.runners.append(r)
            self.tasks.append(asyncio.create_task(r.run()))
            made.append(r)
        return made

    async def stop(self) -> list[RunResult]:
        for r in self.runners:
            r.stop()
        results = await asyncio.wait_for(asyncio.gather(*self.tasks), WAIT)
        self.runners, self.tasks = [], []
        return list(results)


@contextlib.asynccontextmanager
async def running(store: Any, engine: Engine) -> Any:
    workers = Running(store, engine)
    try:
        yield workers
    finally:
        for r in workers.runners:
            r.stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.gather(*workers.tasks, return_exceptions=True), WAIT)


async def test_switch_to_a_partitioned_version_that_stopped_behind_under_writes(
    store: Any, engine: Engine
) -> None:
    """Version 2 (8 partitions where version 1 has 4: changing the count is a blue/green
    rebuild) was built, then its workers stopped while version 1's went on: the switch
    fences version 1's partitions (its workers stand by), brings version 2 to where version 1
    was (a catch-up run by the switch, no worker of it running) and only then makes it live;
    version 1's workers stop, retired, and version 2's apply on into the live table."""
    from eventkit.projection.bluegreen import switch

    px = f"o{uuid.uuid4().hex[:8]}"
    ops_tables(px)[0].create_all(engine)
    expected = await append_ticks(store, 300, 30)
    async with running(store, engine) as w:
        old = w.start(lambda: make_ops_rows(px, 4, 1), ["a1", "a2"])
        end = await store.last_sequence()
        assert await wait_until(lambda: partitions_at(engine, f"{px}_rows", end), WAIT)
        building = Running(store, engine)
        building.start(lambda: make_ops_rows(px, 8, 2), ["b1", "b2"])  # 8 partitions now
        assert await wait_until(lambda: partitions_at(engine, f"{px}_rows_v2", end), WAIT)
        assert not any(r.halted for r in await building.stop())
        merge(expected, await append_ticks(store, 300, 30))  # version 1 only applies these
        fenced = await store.last_sequence()
        assert await wait_until(lambda: partitions_at(engine, f"{px}_rows", fenced), WAIT)
        feed = asyncio.create_task(append_ticks(store, 300, 30))  # writes go on meanwhile
        done = await switch(make_ops_rows(px, 8, 2), store, engine, timeout=WAIT,
                            lease_ttl=TTL)  # fmt: skip
        assert "version 2 is live" in done
        live = entity_rows(engine, f"{px}_entities")  # now version 2's rows
        for s, seqs in expected.items():  # not behind what version 1 served
            upto = [q for q in seqs if q <= fenced]
            assert live[s][0] >= upto[-1] and live[s][1] >= len(upto), s
        merge(expected, await feed)
        end = await store.last_sequence()
        # version 1's workers stop, retired; version 2's apply on into the live table
        assert await wait_until(lambda: all(t.done() for t in w.tasks), WAIT)
        assert all(r.state == "stopped" and r.halted_error for r in old)
        w.start(lambda: make_ops_rows(px, 8, 2), ["b3", "b4"])
        assert await wait_until(lambda: partitions_at(engine, f"{px}_rows_v2", end), WAIT)
        assert not any(r.state == "halted" for r in w.runners)
    want = {s: (seqs[-1], len(seqs)) for s, seqs in expected.items()}
    assert entity_rows(engine, f"{px}_entities") == want


async def test_retrying_a_parked_event_of_one_partition_applies_it_once_in_order(
    store: Any, engine: Engine
) -> None:
    from eventkit.projection.deadletters import list_dead_letters, retry_dead_letters

    px = f"o{uuid.uuid4().hex[:8]}"
    md, _, _, poison = ops_tables(px)
    md.create_all(engine)
    bad = f"{store.stream}.ent.e3"
    with transaction(engine) as db:
        db.execute(poison.insert().values(subject=bad))
    expected = await append_ticks(store, 300, 12)
    async with running(store, engine) as w:
        w.start(lambda: make_ops_projector(px, 4, park=True), ["a1", "a2"])
        end = await store.last_sequence()
        name = f"{px}_ops"
        assert await wait_until(lambda: partitions_at(engine, name, end), WAIT)
        letters = list_dead_letters(engine, name)
        assert [d.sequence for d in letters] == expected[bad]  # each event of e3, parked
        with transaction(engine) as db:
            db.execute(poison.delete())
        # retried while the workers apply the other subjects' new events (a new event of e3
        # before its parked ones are retried would be applied first, as without partitions)
        feed = asyncio.create_task(append_except(store, 120, 12, [bad]))
        outcomes = await retry_dead_letters([make_ops_projector(px, 4, park=True)], store,
                                            engine, all_open=True)  # fmt: skip
        assert [o.ok for o in outcomes] == [True] * len(letters), outcomes
        merge(expected, await feed)
        merge(expected, await append_ticks(store, 120, 12))  # e3 goes on, in its partition
        end = await store.last_sequence()
        assert await wait_until(lambda: partitions_at(engine, name, end), WAIT)
        assert not any(r.state == "halted" for r in w.runners)
    assert list_dead_letters(engine, name) == []
    check_ops(engine, px, expected)


async def test_replay_from_a_time_after_workers_died_rebuilds_each_partition_once(
    store: Any, engine: Engine
) -> None:
    """Workers killed (no clean release: the projector's recorded checkpoint is what it was at
    their last rebalance) are replaced by a replay from a point, then workers run on."""
    from eventkit.projection.replay import plan_replay, replay

    px = f"o{uuid.uuid4().hex[:8]}"
    ops_tables(px)[0].create_all(engine)
    name = f"{px}_ops"
    expected = await append_ticks(store, 200, 20)
    await asyncio.sleep(0.05)
    middle = datetime.now(UTC)
    merge(expected, await append_ticks(store, 200, 20))
    async with running(store, engine) as w:
        dead = w.start(lambda: make_ops_projector(px, 4), ["a1", "a2"])
        end = await store.last_sequence()
        assert await wait_until(lambda: partitions_at(engine, name, end), WAIT)
        for r in dead:  # they die: nothing of theirs runs, their leases expire
            r._lease.release = lambda: None  # type: ignore[method-assign]
            r._presence.leave = _nothing  # type: ignore[attr-defined]
        for t in w.tasks:
            t.cancel()
        await asyncio.gather(*w.tasks, return_exceptions=True)
        w.runners, w.tasks = [], []
        projector = make_ops_projector(px, 4)
        plan = await plan_replay(projector, store, engine, from_time=middle)
        assert plan.method == "rewind" and plan.checkpoint == end
        assert 200 < plan.start_sequence <= 201 + (end - 400)

        async def replayed() -> RunResult | None:
            with contextlib.suppress(Exception):  # refused while the dead workers' leases last
                return await replay(plan, projector, store, engine, lease_ttl=TTL)
            return None

        result = None
        for _ in range(int(WAIT / TTL)):
            result = await replayed()
            if result is not None:
                break
            await asyncio.sleep(TTL)
        assert result is not None and not result.halted
        assert partitions_at(engine, name, end)
        check_ops(engine, px, expected)
        w.start(lambda: make_ops_projector(px, 4), ["a3", "a4"])
        merge(expected, await append_ticks(store, 200, 20))
        end = await store.last_sequence()
        assert await wait_until(lambda: partitions_at(engine, name, end), WAIT)
    check_ops(engine, px, expected)


async def _nothing() -> None:
    return None


async def test_forget_while_partitioned_workers_run_loses_and_repeats_nothing_else(
    store: Any, engine: Engine
) -> None:
    from eventkit.app import App
    from eventkit.gdpr.forget import forget_subject

    px = f"o{uuid.uuid4().hex[:8]}"
    ops_tables(px)[0].create_all(engine)
    name = f"{px}_ops"
    expected = await append_ticks(store, 300, 15)
    app = App(stream=store.stream, projectors=[make_ops_projector(px, 4)])
    async with running(store, engine) as w:
        w.start(lambda: make_ops_projector(px, 4), ["a1", "a2"])
        gone = [f"{store.stream}.ent.e{i}" for i in (2, 7)]
        feed = asyncio.create_task(append_except(store, 300, 15, gone))
        for subject in gone:  # while the workers apply, and events keep coming
            await forget_subject(app, store, engine, subject)
            expected.pop(subject)
        merge(expected, await feed)
        end = await store.last_sequence()
        assert await wait_until(lambda: partitions_at(engine, name, end), WAIT)
        assert not any(r.state == "halted" for r in w.runners)
    check_ops(engine, px, expected)


async def test_a_dropped_partitioned_build_is_built_again_from_the_start(
    store: Any, engine: Engine
) -> None:
    """`eventkit versions drop` of a partitioned build (its workers stopped), then the build run
    again: its copy is new and empty, so every partition starts from 0, not from where the
    dropped build's partitions were."""
    from eventkit.projection.copies import drop_version

    px = f"o{uuid.uuid4().hex[:8]}"
    ops_tables(px)[0].create_all(engine)
    expected = await append_ticks(store, 200, 20)
    end = await store.last_sequence()
    await runner_for(make_ops_rows(px, 4, 1), store, engine, lease_ttl=TTL).catch_up()
    assert partitions_at(engine, f"{px}_rows", end)
    build = await runner_for(make_ops_rows(px, 8, 2), store, engine, lease_ttl=TTL).catch_up()
    assert not build.halted and partitions_at(engine, f"{px}_rows_v2", end)
    assert "dropped version 2" in drop_version(engine, f"{px}_rows", 2)
    merge(expected, await append_ticks(store, 100, 20))
    end = await store.last_sequence()
    again = await runner_for(make_ops_rows(px, 8, 2), store, engine, lease_ttl=TTL).catch_up()
    assert not again.halted and partitions_at(engine, f"{px}_rows_v2", end)
    want = {s: (seqs[-1], len(seqs)) for s, seqs in expected.items()}
    assert entity_rows(engine, f"{px}_entities_v2") == want


async def test_every_worker_of_a_switched_partitioned_version_stops_idle_or_standing_by(
    store: Any, engine: Engine
) -> None:
    """Three workers of version 1 over 2 partitions (one holds none: it stands by), no event
    coming (no batch to meet the retirement in); after the switch to version 2 each of them
    stops, saying it was retired."""
    from eventkit.projection.bluegreen import switch

    px = f"o{uuid.uuid4().hex[:8]}"
    ops_tables(px)[0].create_all(engine)
    await append_ticks(store, 100, 10)
    end = await store.last_sequence()
    async with running(store, engine) as w:
        old = w.start(lambda: make_ops_rows(px, 2, 1), ["a1", "a2", "a3"])
        assert await wait_until(lambda: partitions_at(engine, f"{px}_rows", end), WAIT)
        assert await wait_until(lambda: sum(r.state == "standby" for r in old) == 1, WAIT)
        await runner_for(make_ops_rows(px, 2, 2), store, engine, lease_ttl=TTL).catch_up()
        await switch(make_ops_rows(px, 2, 2), store, engine, timeout=WAIT, lease_ttl=TTL)
        assert await wait_until(lambda: all(t.done() for t in w.tasks), WAIT)
    assert all("retired" in (r.halted_error or "") for r in old)


async def test_waiting_for_a_partitioned_projector_returns_once_its_partitions_applied(
    store: Any, engine: Engine
) -> None:
    """Read-your-writes (`wait_for_projectors`) with partitioned workers live: it returns once
    every partition is at the position, by the partitions' own checkpoints."""
    from eventkit.projection.waiting import wait_for_projectors

    px = f"o{uuid.uuid4().hex[:8]}"
    ops_tables(px)[0].create_all(engine)
    expected = await append_ticks(store, 100, 10)
    async with running(store, engine) as w:
        w.start(lambda: make_ops_projector(px, 4), ["a1", "a2"])
        for _ in range(3):  # each a write, then a read of the model that includes it
            merge(expected, await append_ticks(store, 20, 10))
            position = await store.last_sequence()
            await wait_for_projectors([make_ops_projector(px, 4)], position, store=store,
                                      engine=engine, timeout=WAIT)  # fmt: skip
            check_ops(engine, px, expected)


async def test_versions_list_shows_a_partitioned_versions_slowest_partition(
    store: Any, engine: Engine, db_url: str, nats_url: str
) -> None:
    """`eventkit versions list` while the workers run: the checkpoint is the slowest
    partition's, not the projector's row (written at their last rebalance)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from partition_worker import create_tables, make_projector  # type: ignore[import-not-found]

    px = f"o{uuid.uuid4().hex[:8]}"
    create_tables(engine, px)
    name = f"{px}_ordered"
    async with running(store, engine) as w:
        w.start(lambda: make_projector(px, 4), ["a1", "a2"])
        assert await wait_until(
            lambda: {r.owner for r in pr_rows(engine, name) if r.live} == {"a1", "a2"}, WAIT
        )
        await append_ticks(store, 100, 10)
        end = await store.last_sequence()
        assert await wait_until(lambda: partitions_at(engine, name, end), WAIT)
        here = Path(__file__).parent
        listed = await asyncio.to_thread(
            subprocess.run,
            [str(Path(sys.executable).parent / "eventkit"), "--app", "partition_worker:cli_app",
             "versions", "list", "--json"],
            capture_output=True, text=True, cwd=here, timeout=120,
            env={**os.environ, "EVENTKIT_NATS_URL": nats_url, "EVENTKIT_DATABASE_URL":
                 db_url, "PT_STREAM": store.stream, "PT_PREFIX": px, "PT_PARTITIONS": "4"},
        )  # fmt: skip
        assert listed.returncode == 0, listed.stdout + listed.stderr
        (row,) = json.loads(listed.stdout)
        assert (row["projector"], row["checkpoint"]) == (name, end)


def pr_rows(engine: Engine, name: str) -> list[pr.PartitionRow]:
    with read_transaction(engine) as db:
        return pr.rows(db, name)


async def test_forgetting_one_message_names_a_partitioned_projector_that_applied_it(
    store: Any, engine: Engine
) -> None:
    """`forget --seq` names the read models that applied the message (to be rebuilt without
    it): a partitioned projector's workers applied it although the projector's own row (written
    at their last rebalance) is behind it."""
    from eventkit.app import App
    from eventkit.gdpr.forget import forget_message

    px = f"o{uuid.uuid4().hex[:8]}"
    ops_tables(px)[0].create_all(engine)
    name = f"{px}_ops"
    async with running(store, engine) as w:
        w.start(lambda: make_ops_projector(px, 4), ["a1", "a2"])
        assert await wait_until(
            lambda: {r.owner for r in pr_rows(engine, name) if r.live} == {"a1", "a2"}, WAIT
        )
        sent = await append_ticks(store, 40, 4)
        end = await store.last_sequence()
        assert await wait_until(lambda: partitions_at(engine, name, end), WAIT)
        app = App(stream=store.stream, projectors=[make_ops_projector(px, 4)])
        one = sent[f"{store.stream}.ent.e1"][-1]
        report = await forget_message(app, store, engine, one)
    assert report.erased and report.stale_projectors == [name]
