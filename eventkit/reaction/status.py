"""What ``eventkit status`` shows for reactors: the shared consumer's counters and parked events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import nats.js.errors

from eventkit.reaction.reactor import Reactor, consumer_name
from eventkit.store.parked import ParkedLetters


@dataclass(frozen=True, slots=True)
class ReactorStatus:
    """``pending``: not yet delivered; ``in_flight``: delivered, not acknowledged (over all
    workers); ``redelivered``: in flight after more than one delivery; ``workers``: pull requests
    waiting on the consumer (each idle worker keeps one or two); ``parked``: dead letters."""

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
    out = []
    for r in reactors:
        try:
            info = await store.js.consumer_info(store.stream, consumer_name(r.name))
        except nats.js.errors.NotFoundError:
            out.append(
                ReactorStatus(r.name, "reactor", "not started", 0, 0, 0, parked.get(r.name, 0), 0)
            )
            continue
        out.append(
            ReactorStatus(
                r.name,
                "reactor",
                "active" if (info.num_waiting or 0) > 0 else "idle",
                int(info.num_pending or 0),
                int(info.num_ack_pending or 0),
                int(info.num_redelivered or 0),
                parked.get(r.name, 0),
                int(info.num_waiting or 0),
            )
        )
    return out
