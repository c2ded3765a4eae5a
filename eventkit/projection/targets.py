"""Which table a version of a projector writes, and which version is live.

::

    live_version(db, "balances")        # 2: recorded in eventkit_versions (None: not yet)
    fence(db, projector)                # in a batch transaction: this version's table now,
                                        # Retired when a switch retired it or it was dropped
    label(projector)                    # "balances (version 2)", for messages

A version's rows go to the live table or, while it is built beside the live one, to a copy
(:func:`copy_table`, ``<table>_v<N>``); :func:`fence` reads the registry
(:mod:`eventkit.projection.registry`) in the caller's transaction and points the projector at
the table it must write. The rest of blue/green (recording a version as it starts, switching)
is in :mod:`eventkit.projection.bluegreen`.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, select
from sqlalchemy.orm import Session

from eventkit.errors import ConfigError
from eventkit.projection import checkpoints, registry
from eventkit.projection.dialect import dialect_of
from eventkit.projection.projector import Projector
from eventkit.projection.registry import Retired, retired_message

metadata = MetaData()
versions = Table(
    "eventkit_versions",
    metadata,
    Column("projector", String(200), primary_key=True),
    Column("live_version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
FOREVER = 1e15


def copy_table(table: Table, version: int, name: str | None = None) -> Table:
    """The side-by-side copy of ``table`` a build of ``version`` writes (named indexes renamed),
    or the same columns under ``name``."""
    md = MetaData(schema=table.schema)
    t = table.to_metadata(md, name=name or registry.build_name(table.name, version))
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
    with checkpoints._eventkit_tables():
        v = db.execute(select(versions.c.live_version).where(versions.c.projector == name)).scalar()
    return None if v is None else int(v)


def _lock_live(db: Session, name: str) -> int | None:
    """The live version, its row locked until the transaction ends (PostgreSQL), so a deploy
    and a switch of one projector never interleave."""
    q = select(versions.c.live_version).where(versions.c.projector == name)
    q = dialect_of(db).lock(q)
    with checkpoints._eventkit_tables():
        v = db.execute(q).scalar()
    return None if v is None else int(v)


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
        found = registry.copy_of(db, name, version)
        role = None if found is None else found.role
    if role is None or role == registry.RETIRED:
        live = live_version(db, name) or version
        if role is None and live <= version:
            raise Retired(
                f"version {version} of projector {name!r} is no longer registered (its copy was "
                f"dropped with `eventkit versions drop`): this worker stops; start it again to "
                f"build the version from the start"
            )
        raise Retired(retired_message(name, version, live))
    if role == registry.LIVE:
        _writes(projector, None)
        return
    built: Table | None = projector.__dict__.get("_copy")
    if built is None:
        built = copy_table(type(projector).table, version)  # type: ignore[attr-defined]
    _writes(projector, built)


def quoted(db: Session, table: str, schema: str | None = None) -> str:
    """``table`` (in ``schema``) quoted for the session's database."""
    prep = db.get_bind().dialect.identifier_preparer
    return prep.format_table(Table(table, MetaData(schema=schema)))


__all__ = [
    "FOREVER",
    "base_name",
    "copy_table",
    "fence",
    "label",
    "live_version",
    "metadata",
    "quoted",
    "versions",
]
