"""``status()``: where each projector stands against its stream."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from eventkit.projection import checkpoints, letters, partition_rows, passedover
from eventkit.projection.deployment import Slot, slots
from eventkit.projection.projector import Projector
from eventkit.projection.sql import read_transaction
from eventkit.store.positions import first_matching, pending_after


@dataclass(frozen=True, slots=True)
class ProjectorStatus:
    """One projector: checkpoint, stream end, lag (events and seconds), state, last error.

    ``state`` is ``running`` (a runner holds its lease now), ``stopped`` (no runner is active),
    ``halted`` or ``new`` (never ran); ``owner`` is the runner holding
    its lease now (None when no runner is active); ``parked`` counts unresolved dead letters.
    """

    name: str
    checkpoint: int
    last_event_time: datetime | None
    stream_last_sequence: int
    lag_events: int
    lag_seconds: float
    state: str
    last_error: str | None
    owner: str | None
    parked: int
    version: int = 1
    role: str = "live"
    """``live`` serves readers; ``building`` is a newer version built beside it (blue/green)."""
    slot: str = ""
    partitions: list[dict[str, Any]] = field(default_factory=list)
    """A partitioned projector's partitions: ``partition``, ``owner`` (None when no worker
    holds it), ``checkpoint``, ``lag_events`` (events on its subjects after that checkpoint;
    about 1/N of them are the partition's own). The projector's checkpoint, lag and "caught
    up" are those of its slowest partition."""
    passed_over: dict[str, int] = field(default_factory=dict)
    """Messages it did not apply, per reason (``foreign``, ``unhandled``, ``forgotten``)."""
    """The checkpoint name of this version (``name`` for version 1, ``name_v<N>`` after)."""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["last_event_time"] = self.last_event_time.isoformat() if self.last_event_time else None
        return d


async def status(
    projectors: Sequence[Projector], store: Any, engine: Engine
) -> list[ProjectorStatus]:
    """The status of each projector.

    Example::

        for s in await status(app.projectors, store, engine):
            print(s.name, s.checkpoint, s.lag_events)
    """
    last = await store.last_sequence()
    out = []
    now = datetime.now(UTC)
    for projector in projectors:
        with read_transaction(engine) as db:
            versions = slots(projector, db)
        for version in versions:
            out.append(await _one(projector, version, store, last, now, engine))
    return out


async def _one(
    projector: Projector, slot: Slot, store: Any, last: int, now: datetime, engine: Engine
) -> ProjectorStatus:
    with read_transaction(engine) as db:
        cp = checkpoints.get_checkpoint(db, slot.slot)
        lease = checkpoints.get_lease(db, slot.slot)
        parked = letters.count_open_dead_letters(db, slot.slot)
        passed = passedover.totals(db, slot.slot)
        parts = partition_rows.rows(db, slot.slot)
    filters = projector.filters(store.stream)
    if parts:  # partitioned: the slowest partition is the projector's position
        slowest = min(parts, key=lambda r: r.last_sequence)
        cp = dataclasses.replace(
            cp, last_sequence=slowest.last_sequence, last_event_time=slowest.last_event_time
        )
    lag = await pending_after(store, filters, cp.last_sequence) if last > cp.last_sequence else 0
    lag_seconds = 0.0
    if lag:
        first = await first_matching(store, filters, cp.last_sequence + 1)
        if first is not None:
            lag_seconds = max(0.0, (now - first.time).total_seconds())
    owner = lease.owner if lease is not None and lease.live else None
    partitions: list[dict[str, Any]] = []
    if parts:
        lags = {cp.last_sequence: lag}
        for r in parts:
            if r.last_sequence not in lags:
                lags[r.last_sequence] = (
                    await pending_after(store, filters, r.last_sequence)
                    if last > r.last_sequence
                    else 0
                )
            partitions.append(
                {
                    "partition": r.partition,
                    "owner": r.owner if r.live else None,
                    "checkpoint": r.last_sequence,
                    "lag_events": lags[r.last_sequence],
                }
            )
        owner = ", ".join(sorted({r.owner for r in parts if r.live})) or None
    state: str = cp.state if cp.updated_at is not None else "new"
    if state == "running" and owner is None:
        state = "stopped"
    return ProjectorStatus(
        name=projector.name,
        checkpoint=cp.last_sequence,
        last_event_time=cp.last_event_time,
        stream_last_sequence=last,
        lag_events=lag,
        lag_seconds=round(lag_seconds, 3),
        state=state,
        last_error=cp.last_error,
        owner=owner,
        parked=parked,
        passed_over=passed,
        version=slot.version,
        role=slot.role,
        slot=slot.slot,
        partitions=partitions,
    )


__all__ = ["ProjectorStatus", "status"]
