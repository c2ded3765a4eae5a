"""The registry of every version of every projector (``eventkit_projector_versions``).

One row per version that ever ran: its *slot* (the name of its checkpoint, lease and consumer:
``name`` for version 1, ``name_v<N>`` after), its role and the table eventkit writes for it::

    balances     1  balances     retired   bank_balances_retired_v1   (a switch not finished)
    balances     2  balances_v2  live      bank_balances
    balances     3  balances_v3  building  bank_balances_v3

It is the one place that says which version owns which table: a build, a switch and a drop
change it in their own transactions, and every batch of a row projector reads its version's row
in the batch transaction (:func:`eventkit.projection.targets.fence`), so a version that is
not live or building commits nothing. ``forget``, ``status`` and ``eventkit versions`` read it
to find every table eventkit made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sqlalchemy import and_, insert, select, update
from sqlalchemy.orm import Session

from eventkit.errors import ProjectionError
from eventkit.projection import checkpoints
from eventkit.projection.checkpoints import (  # (defined beside the other bookkeeping tables)
    BUILDING,
    LIVE,
    RETIRED,
    projector_versions,
    slots_named,
)

RETIRED_OWNER: Final = "retired"
"""The owner a switch gives the retired version's lease (for ever): no runner can take it."""
SWITCHING_OWNER: Final = "switching"
"""The owner a switch gives the old version's lease while the new one catches up (it expires,
so an interrupted switch hands the live version back to its workers)."""


class Retired(ProjectionError):
    """This version of a projector is no longer live nor building: its worker stops."""


@dataclass(frozen=True, slots=True)
class Copy:
    """One version of a projector and the table eventkit writes for it."""

    projector: str
    version: int
    slot: str
    role: str
    table_name: str | None
    table_schema: str | None


def slot_name(name: str, version: int) -> str:
    """The checkpoint, lease and consumer name of one version of a projector."""
    return name if version == 1 else f"{name}_v{version}"


def build_name(table: str, version: int) -> str:
    """The table a build of ``version`` writes until it is switched live."""
    return f"{table}_v{version}"


def retired_name(table: str, version: int) -> str:
    """The name a switch gives the old version's table until it drops it."""
    return f"{table}_retired_v{version}"


def _copy(row: object) -> Copy:
    return Copy(
        projector=row.projector,  # type: ignore[attr-defined]
        version=int(row.version),  # type: ignore[attr-defined]
        slot=row.slot,  # type: ignore[attr-defined]
        role=row.role,  # type: ignore[attr-defined]
        table_name=row.table_name,  # type: ignore[attr-defined]
        table_schema=row.table_schema,  # type: ignore[attr-defined]
    )


def copies(db: Session, projector: str) -> list[Copy]:
    """Every registered version of ``projector`` (its own name), oldest first."""
    t = projector_versions
    with checkpoints._eventkit_tables():
        rows = db.connection().execute(
            select(t).where(t.c.projector == projector).order_by(t.c.version)
        )
        return [_copy(r) for r in rows]


def copy_of(db: Session, projector: str, version: int) -> Copy | None:
    t = projector_versions
    with checkpoints._eventkit_tables():
        row = (
            db.connection()
            .execute(select(t).where(t.c.projector == projector, t.c.version == version))
            .first()
        )
    return None if row is None else _copy(row)


def record(
    db: Session,
    projector: str,
    version: int,
    role: str,
    table_name: str | None,
    table_schema: str | None = None,
) -> None:
    """Insert or update the row of one version (in the caller's transaction)."""
    t = projector_versions
    values = {
        "slot": slot_name(projector, version),
        "role": role,
        "table_name": table_name,
        "table_schema": table_schema,
        "updated_at": checkpoints.utcnow(),
    }
    with checkpoints._eventkit_tables():
        done = db.execute(
            update(t).where(t.c.projector == projector, t.c.version == version).values(**values)
        ).rowcount  # type: ignore[attr-defined]
        if not done:
            db.execute(insert(t).values(projector=projector, version=version, **values))


def forget_copy(db: Session, projector: str, version: int) -> None:
    t = projector_versions
    db.execute(t.delete().where(t.c.projector == projector, t.c.version == version))


def checkpoint_and_role(
    db: Session, slot: str, projector: str, version: int
) -> tuple[checkpoints.Checkpoint, str | None]:
    """A slot's checkpoint and its version's role, in one query (a batch's first statement
    after the lease: one round trip for both); the role None when the version is not
    registered."""
    c, t = checkpoints.checkpoints, projector_versions
    joined = c.outerjoin(t, and_(t.c.projector == projector, t.c.version == version))
    with checkpoints._eventkit_tables():
        row = (
            db.connection()
            .execute(select(c, t.c.role).select_from(joined).where(c.c.projector == slot))
            .first()
        )
    if row is None:
        return checkpoints.checkpoint_of(slot, None), None
    return checkpoints.checkpoint_of(slot, row), row.role


def retired_message(name: str, version: int, live: int | None) -> str:
    now = f"version {live} is live" if live else "another version is live"
    deploy = f"version {live}" if live else "the live version"
    return (
        f"version {version} of projector {name!r} is retired: {now} (a switch to it, or it "
        f"started first on this database); this worker stops: deploy the code of {deploy} (or "
        f"later) in its place"
    )


def retired_by_switch(db: Session, slot: str) -> None:
    """:class:`Retired` when ``slot``'s lease was retired by a switch (its owner says so)."""
    lease = checkpoints.get_lease(db, slot)
    if lease is not None and lease.owner.startswith(RETIRED_OWNER):
        head, _, version = slot.rpartition("_v")
        name, old = (head, int(version)) if head and version.isdigit() else (slot, 1)
        live = re.search(r"version (\d+)", lease.owner)
        raise Retired(retired_message(name, old, int(live.group(1)) if live else None))


__all__ = [
    "BUILDING",
    "LIVE",
    "RETIRED",
    "RETIRED_OWNER",
    "SWITCHING_OWNER",
    "Copy",
    "Retired",
    "build_name",
    "checkpoint_and_role",
    "copies",
    "copy_of",
    "forget_copy",
    "projector_versions",
    "record",
    "retired_by_switch",
    "retired_message",
    "retired_name",
    "slot_name",
    "slots_named",
]
