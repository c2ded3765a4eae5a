"""The app ``eventkit run`` loads in the observability CLI test (``obs_app:APP``): a projector
slow enough for a scrape to see its lag, and a reactor with an output."""

from __future__ import annotations

import os
import time
from typing import Any

from sqlalchemy.orm import Session

from eventkit import App, Event, Projector, Reactor, ReactorContext, RecordedEvent, on

STREAM = os.environ.get("OBS_STREAM", "obs")


class ObTicked(Event):
    n: int


class ObTocked(Event):
    n: int


class Ticks(Projector):
    name = "ticks"
    subjects = [f"{STREAM}.tick.>"]
    batch_size = 50

    @on(ObTicked)
    def ticked(self, e: ObTicked, rec: RecordedEvent[Any], db: Session) -> None:
        time.sleep(float(os.environ.get("OBS_SLOW", "0.002")))


class Tocker(Reactor):
    name = "tocker"
    subjects = [f"{STREAM}.tick.>"]

    @on(ObTicked)
    async def ticked(self, e: ObTicked, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        if e.n % 100 == 0:
            await ctx.append(f"{STREAM}.tock.{rec.entity_id}", [ObTocked(n=e.n)])


APP = App(stream=STREAM, projectors=[Ticks()], reactors=[Tocker()])
