"""Scenario 3: 16 writers x 100 commands over 10 aggregates, conflicting at random.

Promise: ``Repository.update`` reloads and retries on ``ConcurrencyError``; the final state of each
aggregate equals the fold of the acknowledged commands, each applied exactly once, and a command
that gave up stored nothing.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from eventkit.errors import ConcurrencyError
from eventkit.server import ServerProcess
from eventkit.store.base import Write
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.repository import Repository

from ._domain import RelAdded, RelCounter
from .conftest import env_int, new_stream, record_result

pytestmark = [pytest.mark.nats, pytest.mark.slow]


class CountingStore(JetStreamEventStore):
    """The JetStream store, counting the conflicts it reports."""

    conflicts = 0

    async def append_many(self, writes: Sequence[Write]) -> list[int]:
        try:
            return await super().append_many(writes)
        except ConcurrencyError:
            self.conflicts += 1
            raise


async def test_sixteen_writers_fold_equals_acknowledged(shared_server: ServerProcess) -> None:
    writers = env_int("EVENTKIT_RELIABILITY_WRITERS", 16)
    commands = env_int("EVENTKIT_RELIABILITY_COMMANDS", 100)
    aggregates = [f"c-{i}" for i in range(10)]
    stream = new_stream("stress")
    store = await CountingStore.connect(shared_server.url, stream=stream)
    assert isinstance(store, CountingStore)
    repo = Repository(store, RelCounter)
    for agg_id in aggregates:
        c = RelCounter(agg_id)
        c.open("stress")
        await repo.save(c)

    acked: dict[str, list[tuple[str, int]]] = {a: [] for a in aggregates}
    gave_up: list[str] = []
    rng = random.Random(6)

    async def one_writer(w: int) -> None:
        for _ in range(commands):
            agg_id = rng.choice(aggregates)
            amount = rng.randint(1, 1000)
            command = f"w{w}-{uuid.uuid4().hex[:8]}"

            def act(c: RelCounter, amount: int = amount, command: str = command) -> None:
                c.add(amount, command)

            try:
                await repo.update(agg_id, act, retries=30)
            except ConcurrencyError:
                gave_up.append(command)
                continue
            acked[agg_id].append((command, amount))
            if rng.random() < 0.3:
                await asyncio.sleep(0)  # let others interleave between load and save

    t0 = time.monotonic()
    try:
        await asyncio.gather(*(one_writer(w) for w in range(writers)))
        elapsed = time.monotonic() - t0

        stored_commands: Counter[str] = Counter()
        events = 0
        async for r in store.read_all():
            events += 1
            if isinstance(r.event, RelAdded):
                stored_commands[r.event.command] += 1
        mismatches: list[Any] = []
        for agg_id in aggregates:
            c = await repo.load(agg_id)
            want_total = sum(a for _, a in acked[agg_id])
            if c.total != want_total or sorted(c.commands) != sorted(x for x, _ in acked[agg_id]):
                mismatches.append((agg_id, c.total, want_total))
        n_acked = sum(len(v) for v in acked.values())
        record_result(
            "3 concurrency stress (Repository.update)",
            writers=writers,
            commands=writers * commands,
            acked=n_acked,
            gave_up=len(gave_up),
            conflicts_retried=store.conflicts,
            lost=sum(1 for v in acked.values() for x, _ in v if stored_commands[x] == 0),
            duplicated=sum(1 for n in stored_commands.values() if n > 1),
            seconds=round(elapsed, 1),
        )
        assert mismatches == []
        assert n_acked + len(gave_up) == writers * commands
        assert events == len(aggregates) + n_acked
        assert all(n == 1 for n in stored_commands.values())
        assert not any(stored_commands[g] for g in gave_up)
        assert store.conflicts > 0, "the scenario produced no conflict at all"
    finally:
        await store.close()
