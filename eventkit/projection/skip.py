"""``skip()``: move a halted projector past the event it halted at, recorded as a dead letter."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from eventkit.errors import ConfigError, ProjectionError
from eventkit.projection import checkpoints, letters
from eventkit.projection.deployment import deployed
from eventkit.projection.projector import Projector
from eventkit.projection.runner import DEFAULT_LEASE_TTL, default_owner
from eventkit.projection.sql import read_transaction, transaction
from eventkit.projection.targets import base_name, label
from eventkit.store.positions import first_matching
from eventkit.store.wire_constants import EVENT_TYPE


@dataclass(frozen=True, slots=True)
class SkipResult:
    projector: str
    sequence: int
    subject: str
    event_type: str
    error: str | None
    version: int = 1


async def skip(projector: Projector, store: Any, engine: Engine, sequence: int) -> SkipResult:
    """Record the event at ``sequence`` (the one ``projector`` halted at) as a resolved-never dead
    letter that names who skipped it, set the checkpoint to it and the state back to running, so
    the next ``eventkit run`` goes on after it. Refuses (changing nothing) unless the projector is
    halted, ``sequence`` is the next event on its subjects, and no runner holds its lease.

    Example::

        await skip(app.projector("balances"), store, engine, 42)
    """
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 1:
        raise ConfigError(f"--seq must be a whole number >= 1, got {sequence!r}")
    if projector.partitions > 1:
        raise ConfigError(
            f"projector {projector.name!r} is partitioned: skip does not move a partition's "
            f"checkpoint yet; fix the handler and run again, or set on_error = 'park' (the bad "
            f"event becomes a dead letter) and run again"
        )
    # the version this code runs (the live one after a blue/green switch: its own checkpoint)
    shown = label(projector)
    projector = deployed(projector, engine, store.stream)
    slot = projector.name
    with read_transaction(engine) as db:
        cp = checkpoints.get_checkpoint(db, slot)
    if cp.state != "halted":
        raise ConfigError(
            f"projector {shown!r} is not halted (checkpoint {cp.last_sequence}); skip "
            f"only moves a halted projector past the event it halted at"
        )
    found = await first_matching(store, projector.filters(store.stream), cp.last_sequence + 1)
    if found is None or found.sequence != sequence:
        at = f"sequence {found.sequence}" if found is not None else "no stored event"
        raise ConfigError(
            f"projector {shown!r} halted at {at}, not {sequence} (last error: "
            f"{cp.last_error}); pass --seq {found.sequence if found else '?'}"
        )
    event_type = found.headers.get(EVENT_TYPE, "?")
    owner = f"skip:{default_owner()}"
    note = (
        f"skipped by `eventkit skip` on {socket.gethostname()}; the event was not applied. "
        f"Halted with: {cp.last_error}"
    )

    def apply() -> None:
        with transaction(engine) as db:
            if not checkpoints.try_acquire_lease(db, slot, owner, DEFAULT_LEASE_TTL):
                lease = checkpoints.get_lease(db, slot)
                raise ProjectionError(
                    f"projector {shown!r} is being run by "
                    f"{lease.owner if lease else 'another runner'}; stop it first (nothing "
                    f"was changed)"
                )
            now = checkpoints.get_checkpoint(db, slot)
            if now.state != "halted" or now.last_sequence != cp.last_sequence:
                raise ProjectionError(
                    f"projector {shown!r} moved while skipping; nothing was changed"
                )
            letters.park(
                db,
                slot,
                sequence=sequence,
                subject=found.subject,
                event_type=event_type,
                error=note,
                attempts=0,
            )
            checkpoints.save_checkpoint(
                db,
                slot,
                last_sequence=sequence,
                last_event_time=found.time,
                state="running",
                last_error=None,
            )
            checkpoints.release_lease(db, slot, owner)

    await asyncio.to_thread(apply)
    return SkipResult(
        base_name(projector),
        sequence,
        found.subject,
        event_type,
        cp.last_error,
        getattr(projector, "version", 1),
    )


__all__ = ["SkipResult", "skip"]
