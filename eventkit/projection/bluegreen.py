"""Blue/green rebuilds: raising ``version`` builds the new version beside the live one.

::

    class Balances(RowProjector):
        version = 2          # was 1: the runner builds v2 into bank_balances_v2 (checkpoint
                             # "balances_v2") while v1's workers keep serving bank_balances
    await switch(Balances(), store, engine)   # v2 becomes bank_balances, v1 is retired

A version has its own checkpoint, lease and consumer: its *slot* (``name`` for version 1,
``name_v<N>`` after). ``eventkit_versions`` records which version is live and the registry
(:mod:`eventkit.projection.registry`) every version and the table it writes. Whatever order
workers of several versions start in, the first to record the projector decides the live
version; an older version is refused; a newer one writes a copy of the table (``<table>_v<N>``,
created by eventkit). Every batch of a row projector checks its version's row in the batch
transaction (:func:`fence`), so a version retired by a switch, or dropped, commits nothing.

``switch`` fences the old version at a known checkpoint (its workers stand by), lets the new
version reach it, then renames the copy over the live table, retires the old version and drops
its table; it resumes a switch that was interrupted between its transactions.

A plain ``Projector`` gets its own slot per version too, but eventkit cannot redirect its SQL:
raising its ``version`` is refused; write the read model as a ``RowProjector`` to rebuild it
blue/green, or give the new version new tables under a new name.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from eventkit.errors import ConfigError, ProjectionError
from eventkit.projection import checkpoints as cps
from eventkit.projection import registry as reg
from eventkit.projection.projector import Projector
from eventkit.projection.registry import Retired, retired_message, slot_name
from eventkit.projection.rows import RowProjector
from eventkit.projection.sql import read_transaction, transaction

metadata = MetaData()
versions = Table(
    "eventkit_versions",
    metadata,
    Column("projector", String(200), primary_key=True),
    Column("live_version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
FOREVER = 1e15
SWITCH_TIMEOUT = 60.0
"""How long ``switch`` waits for the new version to reach the old one's checkpoint."""


def copy_table(table: Table, version: int, name: str | None = None) -> Table:
    """The side-by-side copy of ``table`` a build of ``version`` writes (named indexes renamed),
    or the same columns under ``name``."""
    md = MetaData(schema=table.schema)
    t = table.to_metadata(md, name=name or reg.build_name(table.name, version))
    for ix in t.indexes:
        if isinstance(ix.name, str) and ix.name:
            ix.name = f"{ix.name}_v{version}"  # type: ignore[assignment]
    for c in t.constraints:
        if isinstance(c.name, str) and c.name and c is not t.primary_key:
            c.name = f"{c.name}_v{version}"
    return t


def base_name(projector: Projector) -> str:
    """The projector's own name (a slot copy carries its slot's name)."""
    base: str | None = projector.__dict__.get("_slot")
    return projector.name if base is None else base


def label(projector: Projector) -> str:
    """How messages name a projector: ``balances``, or ``balances (version 2)``."""
    v = getattr(projector, "version", 1)
    return base_name(projector) if v == 1 else f"{base_name(projector)} (version {v})"


def _version_of(projector: Projector) -> int:
    v = getattr(projector, "version", 1)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{type(projector).__qualname__}.version must be an int >= 1, got {v!r}")
    return v


def live_version(db: Session, projector: Projector | str) -> int | None:
    """The recorded live version, None when none is recorded yet."""
    name = projector if isinstance(projector, str) else base_name(projector)
    with cps._eventkit_tables():
        v = db.execute(select(versions.c.live_version).where(versions.c.projector == name)).scalar()
    return None if v is None else int(v)


def _lock_live(db: Session, name: str) -> int | None:
    """The live version, its row locked until the transaction ends (PostgreSQL), so a deploy
    and a switch of one projector never interleave."""
    q = select(versions.c.live_version).where(versions.c.projector == name)
    if db.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    with cps._eventkit_tables():
        v = db.execute(q).scalar()
    return None if v is None else int(v)


def _resolve_live(db: Session, name: str, version: int) -> int:
    live = _lock_live(db, name)
    if live is not None:
        return live
    # first use: a projector that ran before versions were recorded ran as version 1; else the
    # first version to start is live (a concurrent first start of another version fails on
    # the primary key, and its caller retries, reading this one)
    ran = cps.get_checkpoint(db, name).updated_at is not None
    live = 1 if ran else version
    db.execute(insert(versions).values(projector=name, live_version=live, updated_at=cps.utcnow()))
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
                role = reg.LIVE if version == live else reg.BUILDING
                if isinstance(projector, RowProjector):
                    table = projector.table
                    if role == reg.BUILDING:
                        table = copy_table(projector.table, version)
                        table.create(db.connection(), checkfirst=True)
                known = reg.copy_of(db, name, version)
                if known is not None and known.role == reg.RETIRED:
                    raise Retired(retired_message(name, version, live))
                where = None if table is None else table.name
                if known is None or known.role != role or known.table_name != where:
                    schema = None if table is None else table.schema
                    reg.record(db, name, version, role, where, schema)
                if stream is not None:
                    cp = cps.get_checkpoint(db, slot_name(name, version))
                    cps.check_stream(cp, stream, label(projector))
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
        known = reg.copy_of(db, name, version)
        cp = cps.get_checkpoint(db, slot_name(name, version)) if stream is not None else None
    if live is None or known is None:
        return None
    if version < live or known.role == reg.RETIRED:
        raise Retired(retired_message(name, version, live))
    role = reg.LIVE if version == live else reg.BUILDING
    table: Table | None = None
    if isinstance(projector, RowProjector):
        table = projector.table if role == reg.LIVE else copy_table(projector.table, version)
    if known.role != role or known.table_name != (None if table is None else table.name):
        return None
    if cp is not None and stream is not None:
        cps.check_stream(cp, stream, label(projector))
    return False if table is None else table


def _writes(projector: Projector, table: Table | None) -> None:
    """Point a version's projector at the table it writes: its copy (``table``, also what
    ``self.table`` is in its handlers and its ``forget``), or the live table (None)."""
    if table is None:
        projector.__dict__.pop("table", None)
        projector.__dict__["_target"] = None
        return
    projector.__dict__["_copy"] = table
    projector.__dict__["table"] = table
    projector.__dict__["_target"] = table


def fence(db: Session, projector: Projector, role: str | bool | None = False) -> None:
    """In a batch transaction (after the lease): the table this version writes now, from the
    registry (``role``: its role read already, see :func:`registry.checkpoint_and_role`);
    :class:`Retired` when it is neither live nor building (a switch retired it, or its copy
    was dropped)."""
    name = base_name(projector)
    version = getattr(projector, "version", 1)
    if role is False:
        found = reg.copy_of(db, name, version)
        role = None if found is None else found.role
    if role is None or role == reg.RETIRED:
        live = live_version(db, name) or version
        if role is None and live <= version:
            raise Retired(
                f"version {version} of projector {name!r} is no longer registered (its copy was "
                f"dropped with `eventkit versions drop`): this worker stops; start it again to "
                f"build the version from the start"
            )
        raise Retired(retired_message(name, version, live))
    if role == reg.LIVE:
        _writes(projector, None)
        return
    built: Table | None = projector.__dict__.get("_copy")
    if built is None:
        built = copy_table(type(projector).table, version)  # type: ignore[attr-defined]
    _writes(projector, built)


def slots(projector: Projector, db: Session) -> list[Slot]:
    """Every version of the projector eventkit knows (live, building, retired: a switch not
    finished), and this code's version when it has not run yet."""
    name = base_name(projector)
    version = _version_of(projector)
    out = [Slot(name, c.slot, c.version, c.role) for c in reg.copies(db, name)]
    if not any(s.version == version for s in out):
        live = live_version(db, name)
        if live is None:
            ran = cps.get_checkpoint(db, name).updated_at is not None
            if ran and version > 1:
                out.append(Slot(name, name, 1, reg.LIVE))
            live = 1 if ran else version
        role = reg.LIVE if version == live else reg.BUILDING if version > live else reg.RETIRED
        out.append(Slot(name, slot_name(name, version), version, role))
    return sorted(out, key=lambda s: s.version)


def quoted(db: Session, table: str, schema: str | None = None) -> str:
    """``table`` (in ``schema``) quoted for the session's database."""
    prep = db.get_bind().dialect.identifier_preparer
    return prep.format_table(Table(table, MetaData(schema=schema)))


async def switch(
    projector: Projector,
    store: Any,
    engine: Engine,
    *,
    timeout: float = SWITCH_TIMEOUT,
    **runner_options: Any,
) -> str:
    """Make the built version live (see :func:`eventkit.projection.switching.switch`)."""
    from eventkit.projection import switching

    return await switching.switch(projector, store, engine, timeout=timeout, **runner_options)


__all__ = [
    "FOREVER",
    "Retired",
    "Slot",
    "copy_table",
    "deployed",
    "fence",
    "label",
    "live_version",
    "quoted",
    "retired_message",
    "slot_name",
    "slots",
    "switch",
    "versions",
]
