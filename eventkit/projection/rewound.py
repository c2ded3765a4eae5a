"""A projector halts when the stream went back under its checkpoint (see
:mod:`eventkit.store.rewind`): the runner calls :func:`halted_on_rewind` before it goes on from
its checkpoint, at every start and every repositioning."""

from __future__ import annotations

import asyncio
from typing import Any

from eventkit.errors import StreamRewoundError
from eventkit.projection import checkpoints, partition_rows
from eventkit.projection.sql import transaction
from eventkit.store.rewind import check_position


def _applied_event_id(engine: Any, projector: str, sequence: int) -> str | None:
    with transaction(engine) as db:
        cp = checkpoints.get_checkpoint(db, projector)
    return cp.last_event_id if cp.last_sequence == sequence else None


def _highest_partition(engine: Any, projector: str) -> int:
    with transaction(engine) as db:
        return max((r.last_sequence for r in partition_rows.rows(db, projector)), default=0)


async def halted_on_rewind(runner: Any, *, partitioned: bool = False) -> bool:
    """Check the stream still holds ``runner``'s checkpoint (``partitioned``: its partitions'
    highest, by position only); if not, halt the projector (the error on its checkpoint row, as
    ``eventkit status`` shows) and say True."""
    name = runner.name
    event_id: str | None = None
    if partitioned:
        position = await asyncio.to_thread(_highest_partition, runner.engine, name)
    else:
        position = int(runner.checkpoint)
    if position <= 0:
        return False
    if not partitioned:
        event_id = await asyncio.to_thread(_applied_event_id, runner.engine, name, position)
    try:
        await check_position(
            runner.store,
            position,
            event_id,
            who=f"projector {name!r}",
            recover=(
                f"Once the stream is as it should be (restored, or accepted as it now is), "
                f"rebuild the read model from a safe point: eventkit replay {name} --from-start "
                f"(or --from-seq N, N no later than the stream's last sequence, for an "
                f"idempotent projector)"
            ),
        )
    except StreamRewoundError as e:
        await asyncio.to_thread(runner._halt_with, str(e))
        return True
    return False


__all__ = ["halted_on_rewind"]
