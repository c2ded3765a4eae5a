"""Positions and strong reads on one server and in memory: save returns the stream position it
stored, a load can ask to be at least that fresh or strong, and a caller can wait until named
projectors have applied a position."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from eventkit import InMemoryEventStore
from eventkit.errors import ConfigError, ForgottenError, ProjectionError
from eventkit.projection import NotCaughtUpError, wait_for_projectors
from eventkit.projection.runner import ProjectionRunner
from eventkit.store.base import EventStore
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.repository import Repository

from ._domain import RelAdded, RelCounter
from ._readmodel import read_model, sqlite_engine, totals_projector

pytestmark = pytest.mark.nats


@pytest.fixture(params=["jetstream", "memory"])
async def any_store(request: pytest.FixtureRequest, nats_url: str) -> Any:
    if request.param == "memory":
        yield InMemoryEventStore(stream="pos")
        return
    stream = f"pos_{uuid.uuid4().hex[:8]}"
    store = await JetStreamEventStore.connect(nats_url, stream=stream)
    try:
        yield store
    finally:
        await store.js.delete_stream(stream)
        await store.close()


async def test_save_returns_the_position_it_stored(any_store: EventStore) -> None:
    repo = Repository(any_store, RelCounter)
    a, b = RelCounter("a"), RelCounter("b")
    a.open("ada")
    assert await repo.save(a) == a.version == await any_store.last_sequence()
    assert await repo.save(a) == a.version  # nothing pending: the version it has
    a.add(1, "x")
    b.open("bob")
    assert await repo.save_all([a, b]) == max(a.version, b.version)


async def test_loads_at_least_a_position_and_strong_reads_see_every_write(
    any_store: EventStore,
) -> None:
    repo = Repository(any_store, RelCounter)
    c = RelCounter("c")
    c.open("cy")
    c.add(5, "one")
    position = await repo.save(c)
    for kwargs in ({"at_least": position}, {"consistency": "strong"}, {}):
        loaded = await repo.load("c", **kwargs)
        assert (loaded.version, loaded.total) == (position, 5), kwargs
    subject = repo.subject("c")
    assert await any_store.last_sequence(subject, consistency="strong") == position
    assert await any_store.last_sequence(f"{any_store.stream}.>", consistency="strong") == (
        position
    )
    assert [r.sequence for r in await any_store.read(subject, consistency="strong")] == [
        position - 1,
        position,
    ]


@pytest.mark.parametrize(
    "kwargs",
    [{"consistency": "linearizable"}, {"at_least": -1}, {"at_least": "5"}, {"at_least": True}],
)
async def test_bad_read_options_are_refused(any_store: EventStore, kwargs: dict[str, Any]) -> None:
    repo = Repository(any_store, RelCounter)
    c = RelCounter("d")
    c.open("d")
    await repo.save(c)
    with pytest.raises(ConfigError, match=r"consistency|at_least"):
        await repo.load("d", **kwargs)


async def test_a_strong_read_of_a_forgotten_subject_says_so(any_store: EventStore) -> None:
    subject = f"{any_store.stream}.counter.gone"
    await any_store.append(subject, [RelAdded(amount=1)])
    await any_store.mark_forgotten(subject)
    with pytest.raises(ForgottenError):
        await any_store.last_sequence(subject, consistency="strong")


async def test_waiting_for_a_projector_to_apply_a_position(nats_url: str, tmp_path: Path) -> None:
    stream = f"pos_{uuid.uuid4().hex[:8]}"
    engine = sqlite_engine(tmp_path / "rm.db")
    projector = totals_projector()
    async with await JetStreamEventStore.connect(nats_url, stream=stream) as store:
        repo = Repository(store, RelCounter)
        c = RelCounter("w")
        c.open("w")
        c.add(7, "seven")
        position = await repo.save(c)
        # not running: a clear timeout naming it
        with pytest.raises(NotCaughtUpError, match=projector.name):
            await wait_for_projectors(
                [projector], position, store=store, engine=engine, timeout=0.3
            )
        runner = ProjectionRunner(projector, store, engine)
        running = asyncio.ensure_future(runner.run())
        try:
            for i in range(5):
                c.add(1, f"more{i}")
                position = await repo.save(c)
                await wait_for_projectors(
                    [projector], position, store=store, engine=engine, timeout=10
                )
                totals = read_model(engine)[0]
                assert totals[repo.subject("w")] == 8 + i  # the read model has the save
        finally:
            runner.stop()
            await running
        # a position on a subject the projector does not read: nothing of its own is between
        narrow: Any = type(
            "Narrow",
            (type(projector),),
            {"name": projector.name, "subjects": [f"{stream}.counter.*"]},
        )()
        other = await store.append(f"{stream}.elsewhere.x", [RelAdded(amount=1)])
        await wait_for_projectors([narrow], other, store=store, engine=engine, timeout=1)
        with pytest.raises(NotCaughtUpError):  # the whole-stream projector has not applied it
            await wait_for_projectors([projector], other, store=store, engine=engine, timeout=0.3)
        with pytest.raises(ConfigError):
            await wait_for_projectors([projector], -1, store=store, engine=engine)


async def test_waiting_for_a_halted_projector_fails_at_once(nats_url: str, tmp_path: Path) -> None:
    from eventkit.projection import checkpoints as cps
    from eventkit.projection.sql import transaction

    engine = sqlite_engine(tmp_path / "rm.db")
    projector = totals_projector()
    with transaction(engine) as db:
        cps.save_checkpoint(db, projector.name, last_sequence=1)
        cps.set_state(db, projector.name, "halted", "boom")
    store = InMemoryEventStore(stream="pos")
    await store.append("pos.counter.a", [RelAdded(amount=1)] * 3)
    with pytest.raises(ProjectionError, match="halted: boom"):
        await wait_for_projectors([projector], 3, store=store, engine=engine, timeout=5)
