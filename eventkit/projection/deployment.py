"""The version of a projector a worker runs, recorded in the registry as it starts.

::

    slot = deployed(Balances(), engine, stream)   # version 2: a copy named "balances_v2"
                                                  # writing bank_balances_v2 while it builds
    slots(Balances(), db)                         # every version eventkit knows, with its role

Whatever order workers of several versions start in, the first to record the projector decides
the live version; an older version is refused (:class:`Retired`); a newer one writes a copy of
the table, created here. See :mod:`eventkit.projection.bluegreen`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Table, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from eventkit.errors import ProjectionError
from eventkit.projection import checkpoints, registry
from eventkit.projection.projector import Projector
from eventkit.projection.registry import Retired, retired_message, slot_name
from eventkit.projection.rows import RowProjector
from eventkit.projection.sql import read_transaction, transaction
from eventkit.projection.targets import (
    _lock_live,
    _version_of,
    _writes,
    base_name,
    copy_table,
    label,
    live_version,
    versions,
)


def _resolve_live(db: Session, name: str, version: int) -> int:
    live = _lock_live(db, name)
    if live is not None:
        return live
    # first use: a projector that ran before versions were recorded ran as version 1; else the
    # first version to start is live (a concurrent first start of another version fails on
    # the primary key, and its caller retries, reading this one)
    ran = checkpoints.get_checkpoint(db, name).updated_at is not None
    live = 1 if ran else version
    db.execute(
        insert(versions).values(projector=name, live_version=live, updated_at=checkpoints.utcnow())
    )
    return live


@dataclass(frozen=True, slots=True)
class Slot:
    """One version of a projector as status shows it."""

    projector: str
    slot: str
    version: int
    role: str  # "live", "building" or "retired"


def deployed(projector: Projector, engine: Engine, stream: str | None = None) -> Projector:
    """The projector as its runner uses it, its version recorded in the registry: itself at
    version 1; for a higher version a copy named by its slot, writing the live table or (while
    it is newer than the live version) the table copy, created here. :class:`Retired` for a
    version older than the live one; ``ProjectionError`` when ``stream`` is not the stream its
    checkpoint follows."""
    if projector.__dict__.get("_slot") is not None:
        return projector
    version = _version_of(projector)
    rows = isinstance(projector, RowProjector)
    if version > 1 and not rows:
        raise ProjectionError(
            f"projector {projector.name!r} is a plain Projector at version {version}: eventkit "
            f"cannot redirect its SQL to a copy; make it a RowProjector to rebuild it blue/green, "
            f"or give the new version new tables under a new name"
        )
    name = projector.name
    found: Any = _recorded(projector, engine, version, stream)
    table: Table | None = found if isinstance(found, Table) else None
    for attempt in range(0 if found is not None else 3):
        try:
            with transaction(engine) as db:
                live = _resolve_live(db, name, version)
                if version < live:
                    raise Retired(retired_message(name, version, live))
                role = registry.LIVE if version == live else registry.BUILDING
                if isinstance(projector, RowProjector):
                    table = projector.table
                    if role == registry.BUILDING:
                        table = copy_table(projector.table, version)
                        table.create(db.connection(), checkfirst=True)
                known = registry.copy_of(db, name, version)
                if known is not None and known.role == registry.RETIRED:
                    raise Retired(retired_message(name, version, live))
                where = None if table is None else table.name
                if known is None or known.role != role or known.table_name != where:
                    schema = None if table is None else table.schema
                    registry.record(db, name, version, role, where, schema)
                if stream is not None:
                    cp = checkpoints.get_checkpoint(db, slot_name(name, version))
                    checkpoints.check_stream(cp, stream, label(projector))
            break
        except IntegrityError:
            if attempt == 2:
                raise
    if version == 1:
        return projector
    slot = copy.copy(projector)
    slot.__dict__.pop("_bound_handlers", None)
    slot.__dict__["name"] = slot_name(name, version)
    slot.__dict__["_slot"] = name
    if table is not None and table is not projector.table:  # type: ignore[attr-defined]
        _writes(slot, table)
    return slot


def _recorded(projector: Projector, engine: Engine, version: int, stream: str | None) -> Any:
    """Without writing (so a worker starts while another holds SQLite's write lock): the table
    of this version when the registry records it as it should be (``False`` for a plain
    projector), None when something must be recorded; :class:`Retired` for an old version."""
    name = projector.name
    with read_transaction(engine) as db:
        live = live_version(db, name)
        known = registry.copy_of(db, name, version)
        cp = (
            checkpoints.get_checkpoint(db, slot_name(name, version)) if stream is not None else None
        )
    if live is None or known is None:
        return None
    if version < live or known.role == registry.RETIRED:
        raise Retired(retired_message(name, version, live))
    role = registry.LIVE if version == live else registry.BUILDING
    table: Table | None = None
    if isinstance(projector, RowProjector):
        table = projector.table if role == registry.LIVE else copy_table(projector.table, version)
    if known.role != role or known.table_name != (None if table is None else table.name):
        return None
    if cp is not None and stream is not None:
        checkpoints.check_stream(cp, stream, label(projector))
    return False if table is None else table


def slots(projector: Projector, db: Session) -> list[Slot]:
    """Every version of the projector eventkit knows (live, building, retired: a switch not
    finished), and this code's version when it has not run yet."""
    name = base_name(projector)
    version = _version_of(projector)
    out = [Slot(name, c.slot, c.version, c.role) for c in registry.copies(db, name)]
    if not any(s.version == version for s in out):
        live = live_version(db, name)
        if live is None:
            ran = checkpoints.get_checkpoint(db, name).updated_at is not None
            if ran and version > 1:
                out.append(Slot(name, name, 1, registry.LIVE))
            live = 1 if ran else version
        role = (
            registry.LIVE
            if version == live
            else registry.BUILDING
            if version > live
            else registry.RETIRED
        )
        out.append(Slot(name, slot_name(name, version), version, role))
    return sorted(out, key=lambda s: s.version)


__all__ = ["Slot", "deployed", "slots"]
