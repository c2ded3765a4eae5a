"""A stream that went back is noticed: a real stream is truncated under a projector's checkpoint
and a reactor's position (its block file cut, as a power loss on a server that had not fsynced
leaves it), the server then hands the lost sequence numbers to new events, and the projector and
the reactor halt saying what happened and how to recover; nothing is applied or skipped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from eventkit import InMemoryEventStore, on
from eventkit.errors import StreamRewoundError
from eventkit.projection import checkpoints
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import transaction
from eventkit.reaction.context import ReactorContext
from eventkit.reaction.reactor import Reactor
from eventkit.reaction.runner import ReactorRunner
from eventkit.server import ServerProcess
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.records import RecordedEvent
from eventkit.store.rewind import check_position

from ._domain import RelAdded
from ._readmodel import read_model, sqlite_engine, totals_projector
from .conftest import new_stream

pytestmark = pytest.mark.nats


def truncate_stream(srv: ServerProcess, stream: str, keep: float = 0.5) -> None:
    """Stop the server, cut the stream's last block file to ``keep`` of its size and drop its
    index (what a power loss leaves of writes never fsynced), start the server again."""
    srv.stop()
    found = list(srv.store_dir.glob(f"jetstream/*/streams/{stream}/msgs"))
    assert found, f"no store files for {stream}"
    msgs = found[0]
    blocks = sorted(msgs.glob("*.blk"), key=lambda p: int(p.stem))
    os.truncate(blocks[-1], int(blocks[-1].stat().st_size * keep))
    (msgs / "index.db").unlink(missing_ok=True)
    srv.start()


async def _append(store: JetStreamEventStore, n: int, tag: str) -> None:
    for i in range(n):
        await store.append(
            f"{store.stream}.counter.c{i % 5}", [RelAdded(amount=1, command=f"{tag}{i}")]
        )


async def test_a_projector_past_the_streams_end_halts(
    server: ServerProcess, tmp_path: Path
) -> None:
    stream = new_stream("rw")
    engine = sqlite_engine(tmp_path / "rm.db")
    projector = totals_projector()
    async with await JetStreamEventStore.connect(server.url, stream=stream) as store:
        await _append(store, 100, "a")
        result = await ProjectionRunner(projector, store, engine).catch_up()
        assert result.checkpoint == 100 and not result.halted
    truncate_stream(server, stream)
    async with await JetStreamEventStore.connect(server.url, stream=stream) as store:
        last = await store.last_sequence()
        assert 0 < last < 100  # the stream went back
        result = await ProjectionRunner(projector, store, engine).catch_up()
    assert result.halted
    assert result.error is not None
    assert f"beyond the stream's last sequence {last}" in result.error
    assert f"eventkit replay {projector.name} --from-start" in result.error
    with transaction(engine) as db:
        cp = checkpoints.get_checkpoint(db, projector.name)
    assert (cp.state, cp.last_sequence) == ("halted", 100)  # status shows it
    assert len(read_model(engine)[1]) == 100


async def test_a_projector_whose_checkpointed_sequence_was_reused_halts(
    server: ServerProcess, tmp_path: Path
) -> None:
    stream = new_stream("rw")
    engine = sqlite_engine(tmp_path / "rm.db")
    projector = totals_projector()
    async with await JetStreamEventStore.connect(server.url, stream=stream) as store:
        await _append(store, 100, "a")
        assert (await ProjectionRunner(projector, store, engine).catch_up()).checkpoint == 100
    truncate_stream(server, stream)
    async with await JetStreamEventStore.connect(server.url, stream=stream) as store:
        await _append(store, 80, "b")  # the lost sequence numbers go to new events
        assert await store.last_sequence() > 100
        result = await ProjectionRunner(projector, store, engine).catch_up()
    assert result.halted and result.error is not None
    assert "applied event" in result.error and "now holds event" in result.error
    applied = read_model(engine)[1]
    assert sorted(applied) == list(range(1, 101))  # nothing new applied, nothing skipped past


async def test_a_projector_goes_on_after_a_restart_that_lost_nothing(
    server: ServerProcess, tmp_path: Path
) -> None:
    stream = new_stream("rw")
    engine = sqlite_engine(tmp_path / "rm.db")
    projector = totals_projector()
    async with await JetStreamEventStore.connect(server.url, stream=stream) as store:
        await _append(store, 20, "a")
        assert (await ProjectionRunner(projector, store, engine).catch_up()).checkpoint == 20
        await store.delete(20)  # an erased event at the checkpoint is not a rewind
    server.restart()
    async with await JetStreamEventStore.connect(server.url, stream=stream) as store:
        await _append(store, 5, "b")
        result = await ProjectionRunner(projector, store, engine).catch_up()
        end = await store.last_sequence()  # deleting left a record of the erased link
    assert not result.halted and result.checkpoint == end
    assert sorted(read_model(engine)[1])[-5:] == list(range(end - 4, end + 1))


def counting_reactor(stream: str, seen: list[int]) -> Reactor:
    class Counting(Reactor):
        name = f"count-{stream}"
        subjects: ClassVar[list[str]] = [f"{stream}.counter.*"]

        @on(RelAdded)
        async def added(self, e: RelAdded, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
            seen.append(rec.sequence)

    return Counting()


async def _wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_in_memory_store_answers_the_same_check() -> None:
    store = InMemoryEventStore(stream="bank")
    await store.append("bank.acct.a", [RelAdded(amount=1)])
    await check_position(store, 1, None, who="x", recover="r")
    with pytest.raises(StreamRewoundError, match="beyond the stream's last sequence 1"):
        await check_position(store, 2, None, who="x", recover="r")


async def test_a_reactor_stops_when_the_stream_went_back_under_what_it_handled(
    server: ServerProcess,
) -> None:
    stream = new_stream("rw")
    seen: list[int] = []
    async with await JetStreamEventStore.connect(server.url, stream=stream) as store:
        await _append(store, 100, "a")
        runner = ReactorRunner(counting_reactor(stream, seen), store)
        running = asyncio.ensure_future(runner.run())
        await _wait_for(lambda: len(seen) >= 100, 30, "the reactor to handle 100 events")
        # nats-server moves the durable consumer back with the stream, without a word
        await asyncio.to_thread(truncate_stream, server, stream)
        with contextlib.suppress(Exception):  # the runner may end with the server's shutdown
            await asyncio.wait_for(running, 30)
        runner.stop()
        await _append(store, 80, "b")  # new events take the lost sequence numbers
        again = ReactorRunner(counting_reactor(stream, seen), store)  # as a supervisor would
        with pytest.raises(StreamRewoundError, match=r"reactor 'count-.*now holds event"):
            await asyncio.wait_for(again.run(), 30)
    assert sorted(seen) == list(range(1, 101))  # none of the new events handled


async def test_a_reactor_goes_on_after_a_restart_that_lost_nothing(
    server: ServerProcess,
) -> None:
    stream = new_stream("rw")
    seen: list[int] = []
    async with await JetStreamEventStore.connect(server.url, stream=stream) as store:
        await _append(store, 10, "a")
        runner = ReactorRunner(counting_reactor(stream, seen), store)
        running = asyncio.ensure_future(runner.run())
        await _wait_for(lambda: len(seen) >= 10, 30, "the reactor to handle 10 events")
        await asyncio.to_thread(server.restart)
        with contextlib.suppress(Exception):  # the runner may end with the server's shutdown
            await asyncio.wait_for(running, 30)
        runner.stop()
        await _append(store, 1, "b")
        again = ReactorRunner(counting_reactor(stream, seen), store)
        stats = await asyncio.wait_for(again.catch_up(), 30)
    assert stats.handled >= 1 and sorted(set(seen)) == list(range(1, 12))


async def test_a_partitioned_projector_past_the_streams_end_halts(
    server: ServerProcess, tmp_path: Path
) -> None:
    from eventkit.projection.partitioned import PartitionedRunner

    stream = new_stream("rw")
    engine = sqlite_engine(tmp_path / "rm.db")
    base = totals_projector()
    projector: Any = type("PartTotals", (type(base),), {"name": base.name, "partitions": 2})()
    async with await JetStreamEventStore.connect(server.url, stream=stream) as store:
        await _append(store, 100, "a")
        result = await PartitionedRunner(projector, store, engine, lease_ttl=2).catch_up()
        assert not result.halted
    truncate_stream(server, stream)
    async with await JetStreamEventStore.connect(server.url, stream=stream) as store:
        result = await asyncio.wait_for(
            PartitionedRunner(projector, store, engine, lease_ttl=2).catch_up(), 60
        )
    assert result.halted and result.error is not None and "went back" in result.error
    assert len(read_model(engine)[1]) == 100
