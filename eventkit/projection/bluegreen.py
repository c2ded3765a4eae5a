"""Blue/green rebuilds: raising ``version`` builds the new version beside the live one.

::

    class Balances(RowProjector):
        version = 2          # was 1: the runner builds v2 into bank_balances_v2 (checkpoint
                             # "balances_v2") while v1's workers keep serving bank_balances
    await switch(Balances(), store, engine)   # once v2 caught up: v2 becomes bank_balances

A version has its own checkpoint, lease and consumer: its *slot* (``name`` for version 1,
``name_v<N>`` after). ``eventkit_versions`` records which version is live. While a version is
newer than the live one, a row projector writes a copy of its table (``<table>_v<N>``, created by
eventkit); ``switch`` renames the copy over the live table in one transaction, retires the old
slot (its workers can no longer take the lease) and drops the old table.

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
    text,
    update,
)
from sqlalchemy.orm import Session

from eventkit.errors import ConfigError, ProjectionError
from eventkit.projection import checkpoints as cps
from eventkit.projection.projector import Projector
from eventkit.projection.rows import RowProjector
from eventkit.projection.sql import read_transaction, transaction
from eventkit.store.positions import pending_after

metadata = MetaData()
versions = Table(
    "eventkit_versions",
    metadata,
    Column("projector", String(200), primary_key=True),
    Column("live_version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
RETIRED = "retired"
FOREVER = 1e15


def slot_name(name: str, version: int) -> str:
    """The checkpoint, lease and consumer name of one version of a projector."""
    return name if version == 1 else f"{name}_v{version}"


def copy_table(table: Table, version: int) -> Table:
    """The side-by-side copy of ``table`` a build of ``version`` writes (named indexes renamed)."""
    md = MetaData(schema=table.schema)
    t = table.to_metadata(md, name=f"{table.name}_v{version}")
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


def _version_of(projector: Projector) -> int:
    v = getattr(projector, "version", 1)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{type(projector).__qualname__}.version must be an int >= 1, got {v!r}")
    return v


def live_version(db: Session, projector: Projector) -> int | None:
    """The recorded live version, None when none is recorded yet."""
    with cps._eventkit_tables():
        v = db.execute(
            select(versions.c.live_version).where(versions.c.projector == base_name(projector))
        ).scalar()
    return None if v is None else int(v)


def _resolve_live(db: Session, projector: Projector, version: int) -> int:
    live = live_version(db, projector)
    if live is not None:
        return live
    # first use: a projector that ran before versions were recorded ran as version 1
    ran = cps.get_checkpoint(db, projector.name).updated_at is not None
    live = 1 if ran else version
    db.execute(
        insert(versions).values(
            projector=projector.name, live_version=live, updated_at=cps.utcnow()
        )
    )
    return live


@dataclass(frozen=True, slots=True)
class Slot:
    """One version of a projector as status shows it."""

    projector: str
    slot: str
    version: int
    role: str  # "live" or "building"


def deployed(projector: Projector, engine: Engine) -> Projector:
    """The projector as its runner uses it: itself at version 1; for a higher version a copy
    named by its slot, writing the live table or (while it is newer than the live version) the
    table copy, created here. ``ProjectionError`` for a version older than the live one."""
    if projector.__dict__.get("_slot") is not None:
        return projector
    version = _version_of(projector)
    if version == 1:
        return projector
    if not isinstance(projector, RowProjector):
        raise ProjectionError(
            f"projector {projector.name!r} is a plain Projector at version {version}: eventkit "
            f"cannot redirect its SQL to a copy; make it a RowProjector to rebuild it blue/green, "
            f"or give the new version new tables under a new name"
        )
    with transaction(engine) as db:
        live = _resolve_live(db, projector, version)
    if version < live:
        raise ProjectionError(
            f"projector {projector.name!r}: this code is version {version}, version {live} is "
            f"live; deploy the current code"
        )
    slot = copy.copy(projector)
    slot.__dict__.pop("_bound_handlers", None)
    slot.__dict__["name"] = slot_name(projector.name, version)
    slot.__dict__["_slot"] = projector.name
    if version > live:
        table = copy_table(projector.table, version)
        table.create(engine, checkfirst=True)
        slot.__dict__["_target"] = table
    return slot


def slots(projector: Projector, db: Session) -> list[Slot]:
    """The live slot, and the building one when this code is newer than the live version."""
    version = _version_of(projector)
    if version == 1:
        return [Slot(projector.name, projector.name, 1, "live")]
    live = live_version(db, projector)
    if live is None:
        ran = cps.get_checkpoint(db, projector.name).updated_at is not None
        live = 1 if ran else version
    out = [Slot(projector.name, slot_name(projector.name, live), live, "live")]
    if version > live:
        out.append(Slot(projector.name, slot_name(projector.name, version), version, "building"))
    return out


def _quote(engine: Engine, table: Table, name: str | None = None) -> str:
    prep = engine.dialect.identifier_preparer
    if name is None:
        return prep.format_table(table)
    return prep.quote(name)


async def switch(projector: Projector, store: Any, engine: Engine) -> str:
    """Make the built version live: refused unless it caught up with the stream and is not
    halted. Renames the copy over the live table, retires the old version's slot (its workers
    can no longer take the lease) and drops the old table. Returns what it did."""
    version = _version_of(projector)
    if not isinstance(projector, RowProjector):
        raise ProjectionError(
            f"projector {projector.name!r} is a plain Projector: only a RowProjector switches "
            f"versions (eventkit renames its table copy)"
        )
    with read_transaction(engine) as db:
        live = live_version(db, projector)
        new_slot = slot_name(projector.name, version)
        cp = cps.get_checkpoint(db, new_slot)
    if live is None or version <= live:
        raise ProjectionError(
            f"projector {projector.name!r}: no newer version to switch to (this code is version "
            f"{version}, live is {live or version}); raise `version` and run it first"
        )
    if cp.updated_at is None:
        raise ProjectionError(
            f"version {version} of {projector.name!r} has not run yet: run it "
            f"(eventkit run {projector.name}) until it caught up"
        )
    if cp.state == "halted":
        raise ProjectionError(
            f"version {version} of {projector.name!r} is halted ({cp.last_error}); fix it first"
        )
    lag = await pending_after(store, projector.filters(store.stream), cp.last_sequence)
    if lag:
        raise ProjectionError(
            f"version {version} of {projector.name!r} is {lag} events behind the stream; let it "
            f"catch up (eventkit status shows its lag) and switch again"
        )
    old_slot = slot_name(projector.name, live)
    table = projector.table
    build = copy_table(table, version)
    retired = f"{table.name}_retired_v{live}"

    with transaction(engine) as db:
        # the lease rows first: waits for a batch in flight of either version to commit
        db.execute(
            update(cps.leases)
            .where(cps.leases.c.projector == new_slot)
            .values(expires_at=cps.leases.c.expires_at)
        )
        owner = f"{RETIRED}: version {version} of {projector.name} is live"
        if not db.execute(
            update(cps.leases)
            .where(cps.leases.c.projector == old_slot)
            .values(owner=owner, expires_at=FOREVER)
        ).rowcount:  # type: ignore[attr-defined]
            db.execute(
                insert(cps.leases).values(projector=old_slot, owner=owner, expires_at=FOREVER)
            )
        if live_version(db, projector) != live:
            raise ProjectionError(f"projector {projector.name!r} switched meanwhile")
        db.execute(
            text(f"ALTER TABLE {_quote(engine, table)} RENAME TO {_quote(engine, table, retired)}")
        )
        db.execute(
            text(
                f"ALTER TABLE {_quote(engine, build)} RENAME TO {_quote(engine, table, table.name)}"
            )
        )
        db.execute(
            update(versions)
            .where(versions.c.projector == projector.name)
            .values(live_version=version, updated_at=cps.utcnow())
        )
    old = Table(retired, MetaData(schema=table.schema))
    with transaction(engine) as db:
        db.execute(text(f"DROP TABLE {_quote(engine, old)}"))
        db.execute(cps.checkpoints.delete().where(cps.checkpoints.c.projector == old_slot))
        db.execute(cps.dead_letters.delete().where(cps.dead_letters.c.projector == old_slot))
    return (
        f"{projector.name!r}: version {version} is live in {table.name} (checkpoint "
        f"{cp.last_sequence}); version {live} retired and its table dropped"
    )


__all__ = [
    "Slot",
    "copy_table",
    "deployed",
    "live_version",
    "slot_name",
    "slots",
    "switch",
    "versions",
]
