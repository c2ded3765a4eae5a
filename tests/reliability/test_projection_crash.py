"""Scenario 2 (projection level): the server is SIGKILLed while a projection runner replays.

Promise: the runner stops with a clear error (or waits), and once the server is back a runner
resumes from its SQL checkpoint: every event applied exactly once, the read model equal to the fold.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from eventkit.errors import EventkitError
from eventkit.projection.runner import ProjectionRunner
from eventkit.server import ServerProcess
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.testing.waiting import wait_until

from ._domain import RelAdded
from ._load import fold_totals
from ._readmodel import read_model, sqlite_engine, totals_projector
from .conftest import new_stream, record_result

pytestmark = [pytest.mark.nats, pytest.mark.slow]

TOTAL = 20_000


async def test_kill_during_projection_replay_applies_each_event_once(
    server: ServerProcess, tmp_path: Path
) -> None:
    stream = new_stream("projcrash")
    store = await JetStreamEventStore.connect(server.url, stream=stream, retry_for=30.0)
    try:
        for start in range(0, TOTAL, 1000):
            subject = f"{stream}.load.s-{start // 1000 % 7}"
            await store.append(
                subject, [RelAdded(amount=(start + i) % 97 + 1) for i in range(1000)]
            )
        expected = fold_totals([r async for r in store.read_all()])

        engine = sqlite_engine(tmp_path / "rm.db")
        projector = totals_projector()
        runner = ProjectionRunner(projector, store, engine)
        task = asyncio.create_task(runner.catch_up())
        await wait_until(lambda: runner.checkpoint >= TOTAL // 3 or task.done(), 60, 0.01)
        killed_at_checkpoint = runner.checkpoint
        server.kill()
        t0 = time.monotonic()
        await asyncio.sleep(2.0)  # the runner faces a dead server...
        at_kill_rows = read_model(engine)[1]
        await asyncio.to_thread(server.start)  # ...which comes back on the same port and store
        error: BaseException | None = None
        resumed = None
        try:
            resumed = await asyncio.wait_for(task, 30)
        except (EventkitError, TimeoutError) as e:
            error = e  # it gave up (clearly) or hung: a fresh runner resumes from the checkpoint
        stopped_after = time.monotonic() - t0
        if resumed is None:
            for _ in range(50):
                try:
                    resumed = await ProjectionRunner(projector, store, engine).catch_up()
                    break
                except EventkitError:
                    await asyncio.sleep(0.2)  # still reconnecting
        assert resumed is not None, "the runner did not resume after the restart"
        rm_totals, applied = read_model(engine)
        record_result(
            "2c single server kill -9 during a projection replay",
            events=TOTAL,
            checkpoint_at_kill=killed_at_checkpoint,
            runner_outcome=type(error).__name__ if error else "finished by itself",
            runner_done_after_kill_s=round(stopped_after, 2),
            rows_at_kill=len(at_kill_rows),
            missing=TOTAL - len(applied),
            applied_twice=sum(1 for n in applied.values() if n > 1),
        )
        assert resumed.checkpoint == TOTAL and not resumed.halted
        assert sorted(applied) == list(range(1, TOTAL + 1))
        assert all(n == 1 for n in applied.values())
        assert rm_totals == expected
    finally:
        await store.close()
