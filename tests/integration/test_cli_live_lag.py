"""The live ``eventkit run`` table shows the true lag of a halted projector (the runner's own
figure stops at the batch it halted in)."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console
from sqlalchemy.orm import Session

from eventkit.app import App
from eventkit.cli.run import _count_halted_lags, _runner_table
from eventkit.domain.events import Event
from eventkit.domain.handlers import on
from eventkit.projection.projector import Projector
from eventkit.projection.runner import ProjectionRunner, run_projectors
from eventkit.projection.sql import make_engine, upgrade
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.records import RecordedEvent

pytestmark = [pytest.mark.nats]


class LagNoted(Event):
    event_type = "test.LagNoted"
    bad: bool = False


class Fussy(Projector):
    name = "fussy"
    retry_backoff = 0.0
    max_retries = 0

    @on(LagNoted)
    def noted(self, e: LagNoted, rec: RecordedEvent[Any], db: Session) -> None:
        if e.bad:
            raise ValueError("bad event")


async def test_a_halted_runner_shows_its_true_lag(
    event_store: JetStreamEventStore, sqlite_url: str
) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    subject = f"{event_store.stream}.thing.t-1"
    await event_store.append(subject, [LagNoted(), LagNoted(bad=True), LagNoted(), LagNoted()])
    runners: list[ProjectionRunner] = []
    app = App(stream=event_store.stream, projectors=[Fussy()])
    (result,) = await run_projectors(app, event_store, engine, once=True, runners=runners)
    assert result.halted and result.checkpoint == 1
    lags: dict[str, int] = {}
    await _count_halted_lags(runners, event_store, lags)
    assert lags == {"fussy": 3}
    console = Console(width=200, record=True)
    console.print(_runner_table(runners, lags))
    row = next(line for line in console.export_text().splitlines() if "fussy" in line)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[:4] == ["fussy", "halted", "1", "3"], row  # projector, state, checkpoint, lag
    engine.dispose()
