"""Waiting for read models: after a command, answer from a read model that includes it.

``Repository.save`` returns the stream position it stored; :func:`wait_for_projectors` returns
once each named projector has applied the stream up to it (its checkpoint is there, or none of
its subjects has an event between its checkpoint and it), like Marten's "wait for non-stale
data"::

    position = await accounts.save(acct)
    await wait_for_projectors([Balances()], position, store=store, engine=engine, timeout=5)
    # the balances table now reflects the save
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine

from eventkit.errors import ConfigError, ProjectionError
from eventkit.projection import checkpoints, partition_rows
from eventkit.projection.deployment import deployed
from eventkit.projection.projector import Projector
from eventkit.projection.sql import read_transaction


class NotCaughtUpError(ProjectionError, TimeoutError):
    """A projector had not applied the position asked for within the timeout."""


def _checkpoint(engine: Engine, name: str) -> checkpoints.Checkpoint:
    """The projector's checkpoint; a partitioned one's slowest partition's (its own row has
    that only as of its workers' last rebalance)."""
    with read_transaction(engine) as db:
        cp = checkpoints.get_checkpoint(db, name)
        low = partition_rows.low_watermark(db, name)
    return cp if low is None else replace(cp, last_sequence=low)


async def _nothing_between(store: Any, filters: list[str], after: int, position: int) -> bool:
    """True when no message of ``filters`` lies in ``(after, position]``."""
    for f in filters:
        scan = store.read_raw(f, from_sequence=after + 1)
        try:
            first = await anext(scan, None)
        finally:
            with contextlib.suppress(Exception):
                await scan.aclose()
        if first is not None and first.sequence <= position:
            return False
    return True


async def wait_for_projectors(
    projectors: Sequence[Projector],
    position: int,
    *,
    store: Any,
    engine: Engine,
    timeout: float = 5.0,
) -> None:
    """Return once every projector of ``projectors`` has applied stream ``position``;
    :class:`NotCaughtUpError` (a ``TimeoutError``) after ``timeout`` seconds, naming the ones
    behind. A halted projector fails at once with its error."""
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise ConfigError(f"position must be a stream sequence (an int >= 0), got {position!r}")
    if not timeout > 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout!r}")
    waiting = {deployed(p, engine).name: p.filters(store.stream) for p in projectors}
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        for name in list(waiting):
            cp = await asyncio.to_thread(_checkpoint, engine, name)
            if cp.state == "halted":
                raise ProjectionError(f"projector {name!r} is halted: {cp.last_error}")
            if cp.last_sequence >= position or await _nothing_between(
                store, waiting[name], cp.last_sequence, position
            ):
                del waiting[name]
        if not waiting:
            return
        if time.monotonic() >= deadline:
            behind = ", ".join(sorted(waiting))
            raise NotCaughtUpError(
                f"{behind} had not applied stream position {position} within {timeout:g}s; is "
                f"it running and keeping up? (eventkit status)"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


__all__ = ["NotCaughtUpError", "wait_for_projectors"]
