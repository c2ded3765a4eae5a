"""The app ``eventkit run`` loads in the worker fault tests: one reactor echoing each event."""

from __future__ import annotations

import os
from typing import Any

from _domain import RelAdded  # type: ignore[import-not-found]

from eventkit import App, Reactor, ReactorContext, RecordedEvent, on


class Echo(Reactor):
    name = "echo"
    ack_wait = 5.0

    @on(RelAdded)
    async def added(self, e: RelAdded, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        if rec.subject.split(".")[1] == "in":
            await ctx.append(f"{ctx.store.stream}.out.{rec.entity_id}", [RelAdded(amount=e.amount)])


app = App(stream=os.environ.get("RW_STREAM", "rw"), reactors=[Echo()])
