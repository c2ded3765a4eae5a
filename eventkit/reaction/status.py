"""What ``eventkit status`` shows for reactors: the shared consumer's counters and parked events."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import nats.js.errors

from eventkit.reaction.consumer import partition_consumers
from eventkit.reaction.reactor import Reactor, consumer_name
from eventkit.runtime.parked import ParkedLetters
from eventkit.runtime.presence import workers


@dataclass(frozen=True, slots=True)
class ReactorStatus:
    """``pending``: not yet delivered; ``in_flight``: delivered, not acknowledged (over all
    workers); ``redelivered``: in flight after more than one delivery; ``workers``: processes
    running it, heard of within the last 15 s (:mod:`eventkit.runtime.presence`); ``parked``: dead
    letters. ``state``: ``running`` while a worker runs it, ``stopped`` otherwise.

    A partitioned reactor: ``partitions`` lists each partition's ``owner`` (the worker whose
    latest heartbeat holds it, or None), ``pending`` (messages of the stream its consumer has
    not read yet: its own and others, which it passes over) and ``in_flight``; the reactor's
    ``pending`` is its slowest partition's, ``in_flight`` their sum."""

    name: str
    kind: str
    state: str
    pending: int
    in_flight: int
    redelivered: int
    parked: int
    workers: int
    partitions: list[dict[str, Any]] = field(default_factory=list)

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
        if r.partitions > 1:
            out.append(await _partitioned(r, store, present[r.name], parked.get(r.name, 0)))
            continue
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


async def _partitioned(
    r: Reactor, store: Any, present: list[dict[str, Any]], parked: int
) -> ReactorStatus:
    infos = await partition_consumers(r.name, store)
    owners: dict[int, tuple[float, str]] = {}
    for entry in present:
        at = float(entry.get("at", 0))
        for part in entry.get("held", []) or []:
            if time.time() - at <= 15.0 and at > owners.get(part, (0.0, ""))[0]:
                owners[part] = (at, str(entry.get("worker")))
    parts: list[dict[str, Any]] = []
    for i in range(r.partitions):
        info = infos.get(i)
        parts.append(
            {
                "partition": i,
                "owner": owners[i][1] if i in owners else None,
                "pending": int(info.num_pending or 0) if info else 0,
                "in_flight": int(info.num_ack_pending or 0) if info else 0,
                "redelivered": int(info.num_redelivered or 0) if info else 0,
            }
        )
    running = len(present)
    return ReactorStatus(
        r.name,
        "reactor",
        ("running" if running else "stopped") if infos else "not started",
        max((int(x["pending"]) for x in parts), default=0),
        sum(int(x["in_flight"]) for x in parts),
        sum(int(x["redelivered"]) for x in parts),
        parked,
        running,
        parts,
    )
