"""Where the databases eventkit runs on differ, in one place: a :class:`Dialect` per database
(:data:`SQLITE`, :data:`POSTGRESQL`), found by :func:`dialect_of` for an engine, a connection,
a session or SQLAlchemy's own dialect. Code that does something differently on one database
asks its dialect what (``dialect_of(db).row_locks``), never its name; another database is one
more :class:`Dialect` here (one it does not know gets :data:`GENERIC`, the portable SQL)::

    if dialect_of(db).row_locks:
        query = query.with_for_update()
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Dialect:
    """What eventkit does differently on one database."""

    name: str
    """SQLAlchemy's name of the dialect (``sqlite``, ``postgresql``)."""
    row_locks: bool
    """``SELECT ... FOR UPDATE`` locks rows until commit, so writers that must not interleave
    lock a row first (else the database runs one writer at a time, as SQLite does)."""
    bounded_waits: bool
    """Each batch transaction bounds its lock waits and its idle time (``lock_timeout``,
    ``idle_in_transaction_session_timeout``), so a frozen runner loses its session."""
    alters_by_copy: bool
    """Migrations alter a table by copying it (Alembic's batch mode: SQLite's ALTER TABLE
    cannot drop or change a column)."""
    naive_datetimes: bool
    """Timezone-aware columns read back naive (SQLite keeps no zone): eventkit stores UTC and
    puts the zone back on rows it keeps."""
    exact_real: bool
    """A single-precision ``REAL`` column reads back the double written (SQLite stores doubles;
    PostgreSQL's float4 rounds)."""
    key_arrays: bool
    """A batch's rows are read by ``key = ANY(:keys)`` and upserted from one array per column
    (``unnest``): one statement whatever the batch's size."""
    erases_by_pragma: bool
    """Deleted rows are overwritten only with ``PRAGMA secure_delete`` and leave the
    write-ahead log only when it is truncated (SQLite); the erasure of a subject does both."""
    upsert_module: str | None
    """The SQLAlchemy module whose ``insert`` has ``ON CONFLICT ... DO UPDATE`` (None: rows
    are replaced, deleted then inserted)."""

    def upsert_insert(self) -> Any:
        """The dialect's ``insert`` with ``on_conflict_do_update``, or None (loaded on first
        use: ``import eventkit`` loads no SQL dialect)."""
        if self.upsert_module is None:
            return None
        return importlib.import_module(self.upsert_module).insert

    def lock(self, query: Any) -> Any:
        """``query`` locking the rows it reads until commit, where rows can be locked."""
        return query.with_for_update() if self.row_locks else query


SQLITE = Dialect(
    "sqlite",
    row_locks=False,
    bounded_waits=False,
    alters_by_copy=True,
    naive_datetimes=True,
    exact_real=True,
    key_arrays=False,
    erases_by_pragma=True,
    upsert_module="sqlalchemy.dialects.sqlite",
)
POSTGRESQL = Dialect(
    "postgresql",
    row_locks=True,
    bounded_waits=True,
    alters_by_copy=False,
    naive_datetimes=False,
    exact_real=False,
    key_arrays=True,
    erases_by_pragma=False,
    upsert_module="sqlalchemy.dialects.postgresql",
)
GENERIC = Dialect(
    "",
    row_locks=False,
    bounded_waits=False,
    alters_by_copy=False,
    naive_datetimes=False,
    exact_real=False,
    key_arrays=False,
    erases_by_pragma=False,
    upsert_module=None,
)
"""A database eventkit does not know: portable SQL only."""

DIALECTS = {d.name: d for d in (SQLITE, POSTGRESQL)}


def dialect_named(name: str) -> Dialect:
    """The dialect SQLAlchemy calls ``name`` (:data:`GENERIC` for one eventkit does not know)."""
    return DIALECTS.get(name, GENERIC)


def dialect_of(bind: Any) -> Dialect:
    """The dialect of an engine, a connection, a session (its bind) or SQLAlchemy's dialect."""
    sa_dialect = getattr(bind, "dialect", None)
    if sa_dialect is None and hasattr(bind, "get_bind"):
        sa_dialect = bind.get_bind().dialect
    name = getattr(sa_dialect if sa_dialect is not None else bind, "name", "")
    return dialect_named(str(name))


__all__ = [
    "DIALECTS",
    "GENERIC",
    "POSTGRESQL",
    "SQLITE",
    "Dialect",
    "dialect_named",
    "dialect_of",
]
