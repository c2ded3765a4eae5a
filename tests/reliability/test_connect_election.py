"""Connecting while a 3-node cluster elects a leader: ``connect`` waits for the election like
reads do (``retry_for``), and when the election cannot finish (no majority up), it says so
instead of asking whether JetStream is enabled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventkit.errors import StoreUnavailableError
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.testing.cluster import Cluster

from ._domain import RelAdded
from .conftest import new_stream, record_result

pytestmark = [pytest.mark.nats, pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of this test's own: the tests kill nodes and leave them down."""
    c = Cluster.start(tmp_path / "cluster", size=3)
    try:
        yield c
    finally:
        c.stop()


async def test_connect_during_a_stream_leader_election_waits_for_it(trio: Cluster) -> None:
    trio.wait_meta_leader()
    stream = new_stream("elect")
    first = await JetStreamEventStore.connect(trio.urls, stream=stream, replicas=3)
    await first.append(f"{stream}.counter.c", [RelAdded(amount=1)])
    leader = await trio.stream_leader(first.js, stream)
    await first.close()
    trio.node(leader).kill()  # the stream (and maybe the meta group) elects a new leader
    started = time.monotonic()
    store = await JetStreamEventStore.connect(
        [n.url for n in trio.running()], stream=stream, replicas=3
    )
    took = time.monotonic() - started
    try:
        assert [r.event.amount for r in await store.read(f"{stream}.counter.c")] == [1]
        await store.append(f"{stream}.counter.c", [RelAdded(amount=2)])
    finally:
        await store.close()
    record_result("connect during an R3 stream leader election", seconds=round(took, 2))


async def test_connect_when_no_election_can_finish_names_the_election(trio: Cluster) -> None:
    trio.wait_meta_leader()
    stream = new_stream("elect")
    first = await JetStreamEventStore.connect(trio.urls, stream=stream, replicas=3)
    leader = await trio.stream_leader(first.js, stream)
    await first.close()
    # a follower survives (a leader left alone may answer a little longer before it steps down)
    survivor = next(n for n in trio.nodes if n.name != leader)
    for node in trio.nodes:
        if node is not survivor:
            node.kill()  # one node of three: no majority, no leader
    await asyncio.sleep(0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as caught:
        await JetStreamEventStore.connect(survivor.url, stream=stream, replicas=3, retry_for=4.0)
    took = time.monotonic() - started
    message = str(caught.value)
    assert "electing a leader" in message and trio.name in message
    assert "is JetStream enabled" not in message
    assert took >= 4.0  # it waited for the election before giving up
