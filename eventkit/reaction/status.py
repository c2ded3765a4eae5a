"""What ``eventkit status`` shows for reactors: the shared consumer's counters and parked events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import nats.js.errors

from eventkit.reaction.reactor import Reactor, consumer_name
from eventkit.runtime.parked import ParkedLetters
from eventkit.runtime.presence import workers


@dataclass(frozen=True, slots=True)
class ReactorStatus:
    """``pending``: not yet delivered; ``in_flight``: delivered, not acknowledged (over all
    workers); ``redelivered``: in flight after more than one delivery; ``workers``: processes
    running it, heard of within the last 15 s (:mod:`eventkit.runtime.presence`); ``parked``: dead
    letters. ``state``: ``running`` while a worker runs it, ``stopped`` otherwise."""

    name: str
    kind: str
    state: str
    pending: int
    in_flight: int
    redelivered: int
    parked: int
    workers: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def reactor_status(reactors: Sequence[Reactor], store: Any) -> list[ReactorStatus]:
    letters = ParkedLetters(store)
    parked: dict[str, int] = {}
    for letter in await letters.list():
        parked[letter.name] = parked.get(letter.name, 0) + 1
    present = await workers(store, [r.name for r in reactors])
    out = []
    for r in reactors:
        try:
            info = await store.js.consumer_info(store.stream, consumer_name(r.name))
        except nats.js.errors.NotFoundError:
            out.append(
                ReactorStatus(r.name, "reactor", "not started", 0, 0, 0, parked.get(r.name, 0), 0)
            )
            continue
        running = len(present[r.name])
        out.append(
            ReactorStatus(
                r.name,
                "reactor",
                "running" if running else "stopped",
                int(info.num_pending or 0),
                int(info.num_ack_pending or 0),
                int(info.num_redelivered or 0),
                parked.get(r.name, 0),
                running,
            )
        )
    return out
