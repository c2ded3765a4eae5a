"""``RowProjector``: one row per key, folded in memory per batch, written with one bulk upsert.

::

    class Balances(RowProjector):
        name = "balances"
        subjects = ["bank.account.>"]
        table = balances                      # its primary key is the row key

        @on(MoneyDeposited)
        def deposited(self, e: MoneyDeposited, rec: RecordedEvent, row: dict[str, Any]) -> None:
            row["balance"] += e.amount

Per batch the runner hands the run of handled events to :meth:`RowProjector.apply_many`: one
SELECT reads the rows the batch touches, the handlers mutate plain dicts, and one
``INSERT ... ON CONFLICT DO UPDATE`` (SQLite, PostgreSQL; delete + insert elsewhere) writes the
changed rows back, in the batch's transaction with the checkpoint (the statements:
:mod:`eventkit.projection.rowsql`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import DateTime, Table, delete, insert, tuple_
from sqlalchemy.orm import Session

from eventkit.errors import ConfigError, ProjectionError
from eventkit.projection.dialect import Dialect, dialect_of
from eventkit.projection.projector import Projector
from eventkit.projection.rowcache import MISS, ROW_CACHE, RowCache
from eventkit.projection.rowsql import (
    array_upsert,
    compiled_upsert,
    read_statement,
    upsert_statement,
)
from eventkit.projection.rowtypes import immutable, keeps, kept_as, key_types
from eventkit.projection.targets import fence
from eventkit.store.records import RecordedEvent
from eventkit.store.subjects import entity_id_of

Row = dict[str, Any]
IN_CHUNK = 500
"""Keys per ``IN (...)`` when reading a batch's rows (well under every driver's bind limit)."""


class RowProjector(Projector):
    """A read model of one row per key, built by handlers that mutate a row dict.

    - ``table``: a SQLAlchemy ``Table`` (created by your migrations); its primary key is the
      row key. ``key(rec)`` gives the key of an event (default ``rec.entity_id``; return a tuple
      for a composite primary key).
    - A key seen for the first time starts from the columns' Python-side defaults
      (``default=`` scalars, or callables taking no argument), ``None`` for the others, and
      the key columns set. Rows read back hold the Python values of the columns' types.
    - **Delete** a row by emptying it in a handler: ``row.clear()``. A later event of the key
      starts again from the defaults.
    - ``reset`` (replay from the start) deletes every row. ``forget(subject)`` deletes the row
      keyed by the subject's entity id; with a custom ``key()`` a row may mix several subjects,
      so the derived forget does nothing and the forget report lists the projector: override
      ``forget`` or replay it from the start after the forget (the erased events are gone).
    - A replay from a sequence or a time applies events over the current rows: allowed when
      ``idempotent = True`` (handlers that only set values), refused otherwise (handlers that
      add, like a balance).
    - The key's type is the key column's: the default key (a subject token, a string) is
      converted for an integer or UUID key column (an entity id that does not convert halts
      the projector, naming it); a ``key()`` that returns another type than its column's
      halts too (a key that would never match its stored row must not start the row over).
    - The runner keeps up to ``row_cache`` rows, and up to about ``row_cache_bytes`` of them,
      it wrote in memory between batches and reads from SQL only the others
      (:mod:`eventkit.projection.rowcache`: dropped whenever anything else may have written
      them). Only tables whose columns read back exactly what was written are cached
      (integers, strings, booleans, double floats, dates and times; not PostgreSQL's ``REAL``,
      which rounds to single precision); set ``row_cache = 0`` when something outside eventkit
      writes the table while a runner runs and does not call ``touch_rows``.
    """

    table: ClassVar[Table]
    row_cache: ClassVar[int] = 50_000
    """Rows the runner keeps in memory between batches (0: read every batch's rows from SQL)."""
    row_cache_bytes: ClassVar[int] = 48 * 2**20
    """About how much memory those rows may take (estimated per row as it is kept)."""

    _pk: ClassVar[tuple[str, ...]] = ()
    _columns: ClassVar[frozenset[str]] = frozenset()
    _defaults: ClassVar[tuple[tuple[str, Any, bool], ...]] = ()
    _aware: ClassVar[tuple[str, ...]] = ()
    _kept_by: ClassVar[dict[str, tuple[tuple[str, tuple[type, ...], bool | None], ...] | None]]
    _key_type: ClassVar[type | None] = None
    _key_from_id: ClassVar[type | None] = None
    _mutable: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = getattr(cls, "table", None)
        if table is None:
            return  # an abstract base; a concrete projector names its table
        if not isinstance(table, Table):
            raise ConfigError(f"{cls.__qualname__}.table must be a SQLAlchemy Table, got {table!r}")
        size = cls.row_cache
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ConfigError(
                f"{cls.__qualname__}.row_cache must be a whole number of rows >= 0 (0: no "
                f"cache), got {size!r}"
            )
        size = cls.row_cache_bytes
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ConfigError(
                f"{cls.__qualname__}.row_cache_bytes must be a whole number of bytes >= 0 (0: "
                f"no cache), got {size!r}"
            )
        pk = tuple(c.name for c in table.primary_key.columns)
        if not pk:
            raise ConfigError(
                f"{cls.__qualname__}.table {table.name!r} has no primary key: a RowProjector "
                f"keys its rows by it (add primary_key=True to the key column)"
            )
        if cls.key is RowProjector.key and len(pk) != 1:
            raise ConfigError(
                f"{cls.__qualname__}.table {table.name!r} has a composite primary key "
                f"{list(pk)}: define key(rec) returning a tuple in that order"
            )
        cls._pk = pk
        cls._key_type, cls._key_from_id = key_types(cls, table, pk, cls.key is RowProjector.key)
        cls._columns = frozenset(c.name for c in table.columns)
        defaults = []
        for c in table.columns:
            d = c.default
            if d is None or c.name in pk:
                continue
            if getattr(d, "is_scalar", False):
                defaults.append((c.name, d.arg, False))
            elif getattr(d, "is_callable", False):
                defaults.append((c.name, d.arg, True))
        cls._defaults = tuple(defaults)
        cls._aware = tuple(
            c.name
            for c in table.columns
            if isinstance(c.type, DateTime) and getattr(c.type, "timezone", False)
        )
        cls._kept_by = {}
        cls._mutable = tuple(c.name for c in table.columns if not immutable(c.type))

    # -- the user's hooks -------------------------------------------------------------------
    def key(self, rec: RecordedEvent[Any]) -> Any:
        """The row key of an event (default: its entity id, the last subject token)."""
        return rec.entity_id

    # -- applying ---------------------------------------------------------------------------
    def target(self) -> Table:
        """The table this projector writes now (a blue/green build writes a copy)."""
        target: Table | None = self.__dict__.get("_target")
        return self.table if target is None else target

    def _follow_switch(self, db: Session) -> None:
        """The table of this version now, from the registry (a runner's batch does it in its
        fence; a reset or a retried dead letter outside a batch does it here)."""
        if self.__dict__.get("_slot") is None and self.version == 1:
            return
        fence(db, self)

    def _kept(
        self, dialect: Dialect
    ) -> tuple[tuple[str, tuple[type, ...], bool | None], ...] | None:
        """Per column, the types that read back exactly on ``dialect`` (None: not cached)."""
        by = type(self)._kept_by
        if dialect.name not in by:
            kept = [(c.name, *kept_as(c.type, dialect)) for c in self.table.columns]
            by[dialect.name] = None if any(not types for _, types, _ in kept) else tuple(kept)
        return by[dialect.name]

    def _key(self, rec: RecordedEvent[Any]) -> Any:
        """``key(rec)`` in the key column's type (converted from the default key's string)."""
        k = self.key(rec)
        convert = self._key_from_id
        if convert is not None and type(self).key is RowProjector.key:
            try:
                return convert(k)
            except (TypeError, ValueError):
                raise ProjectionError(
                    f"{type(self).__qualname__}: entity id {k!r} of {rec.subject} is not a "
                    f"{self._key_type.__name__ if self._key_type else '?'} for key column "
                    f"{self._pk[0]!r}; define key(rec) to map it"
                ) from None
        expected = self._key_type
        if expected is not None and not isinstance(k, expected):
            raise ProjectionError(
                f"{type(self).__qualname__}.key() returned {k!r} ({type(k).__name__}) for key "
                f"column {self._pk[0]!r} of type {expected.__name__}: it would never match the "
                f"stored row; return a {expected.__name__}"
            )
        return k

    def apply(self, record: RecordedEvent[Any], db: Session) -> None:
        """One event outside a runner's batch (a retried dead letter): into this version's
        table as the registry says now."""
        self._follow_switch(db)
        self.apply_many([record], db)

    def apply_many(self, records: Sequence[RecordedEvent[Any]], db: Session) -> None:
        """Fold ``records`` into their rows: one read, the handlers in memory, one write."""
        handlers = self._bound()
        keyed: list[tuple[Any, RecordedEvent[Any], Callable[..., Any]]] = []
        custom = type(self).key is not RowProjector.key
        key_of = self._key if custom or self._key_from_id is not None else self.key
        for r in records:
            h = handlers.get(type(r.event))
            if h is not None:
                keyed.append((key_of(r), r, h))
        if not keyed:
            return
        table = self.target()
        conn = db.connection()
        keys = {k for k, _, _ in keyed}
        kept = self._kept(dialect_of(conn))
        cache: RowCache | None = db.info.get(ROW_CACHE) if kept is not None else None
        if cache is None:
            stored = self._read(conn, table, keys)
        else:
            cache.bind(table.name)
            stored, missing = {}, []
            for k in keys:
                hit = cache.lookup(k)
                if hit is MISS:
                    missing.append(k)
                elif hit is not None:
                    stored[k] = hit  # type: ignore[assignment]
            cache.hits += len(keys) - len(missing)
            cache.misses += len(missing)
            if missing:
                read = self._read(conn, table, missing)
                for k in missing:
                    cache.stage(k, read.get(k))
                stored.update(read)
        mutable = self._mutable
        rows: dict[Any, Row] = {k: dict(v) for k, v in stored.items()}
        if mutable:  # a handler changing a JSON value in place must not change ``stored``
            for copied in rows.values():
                for c in mutable:
                    copied[c] = deepcopy(copied[c])
        for k, r, h in keyed:
            row = rows.get(k)
            if row is None:
                row = rows[k] = self._new_row(k)
            h(r.event, r, row)
            if not row:
                del rows[k]
        changed = [row for k, row in rows.items() if stored.get(k) != row]
        gone = [k for k in stored if k not in rows]
        for row in changed:
            self._check(row)
        if gone:
            self._delete(conn, table, gone)
        if changed:
            self._upsert(conn, table, changed)
        if cache is not None:
            for k in gone:
                cache.stage(k, None)
            for row in changed:
                k = self._key_of_row(row)
                cache.stage(k, row if keeps(row, kept) else MISS)

    def _bound(self) -> dict[type, Callable[..., Any]]:
        bound: dict[type, Callable[..., Any]] | None = self.__dict__.get("_bound_handlers")
        if bound is None:
            bound = {t: getattr(self, n) for t, n in self._handlers.items()}
            self.__dict__["_bound_handlers"] = bound
        return bound

    def _key_of_row(self, row: Any) -> Any:
        if len(self._pk) == 1:
            return row[self._pk[0]]
        return tuple(row[c] for c in self._pk)

    def _new_row(self, key: Any) -> Row:
        row: Row = dict.fromkeys(self._columns)
        for name, value, is_callable in self._defaults:
            row[name] = value(None) if is_callable else value
        if len(self._pk) == 1:
            row[self._pk[0]] = key
        else:
            if not isinstance(key, tuple) or len(key) != len(self._pk):
                raise ProjectionError(
                    f"{type(self).__qualname__}.key() returned {key!r}; table "
                    f"{self.table.name!r} needs a tuple for its primary key {list(self._pk)}"
                )
            row.update(zip(self._pk, key, strict=True))
        return row

    def _check(self, row: Row) -> None:
        if row.keys() == self._columns:
            return
        for c in self._columns - row.keys() - set(self._pk):
            row[c] = None  # a handler deleted a column's value
        extra = row.keys() - self._columns
        if extra:
            raise ProjectionError(
                f"a handler of {type(self).__qualname__} set {sorted(extra)}, which table "
                f"{self.table.name!r} has no column for (columns: {sorted(self._columns)})"
            )
        missing = set(self._pk) - row.keys()
        if missing:
            raise ProjectionError(
                f"a handler of {type(self).__qualname__} removed the key column(s) "
                f"{sorted(missing)}; delete a row with row.clear()"
            )

    def _read(self, conn: Any, table: Table, keys: Iterable[Any]) -> dict[Any, Row]:
        keys = list(keys)
        dialect = dialect_of(conn)
        stmt = read_statement(dialect, table, self._pk)
        names = [c.name for c in table.columns]
        out: dict[Any, Row] = {}
        aware = self._aware if dialect.naive_datetimes else ()
        single = len(self._pk) == 1
        first = names.index(self._pk[0])
        for i in range(0, len(keys), IN_CHUNK):
            for values in conn.execute(stmt, {"keys": keys[i : i + IN_CHUNK]}):
                row = dict(zip(names, values, strict=True))
                for c in aware:  # SQLite gives naive datetimes back; eventkit stores UTC
                    v = row[c]
                    if isinstance(v, datetime) and v.tzinfo is None:
                        row[c] = v.replace(tzinfo=UTC)
                out[values[first] if single else self._key_of_row(row)] = row
        return out

    def _delete(self, conn: Any, table: Table, keys: list[Any]) -> None:
        pk_cols = [table.c[c] for c in self._pk]
        for i in range(0, len(keys), IN_CHUNK):
            chunk = keys[i : i + IN_CHUNK]
            cond = pk_cols[0].in_(chunk) if len(pk_cols) == 1 else tuple_(*pk_cols).in_(chunk)
            conn.execute(delete(table).where(cond))

    def _upsert(self, conn: Any, table: Table, rows: list[Row]) -> None:
        dialect = dialect_of(conn)
        if dialect.key_arrays:
            arrays = array_upsert(table, self._pk)
            if arrays is not None:
                names = [(c.key, c.name) for c in table.columns]
                conn.execute(arrays, {f"c_{k}": [r[n] for r in rows] for k, n in names})
                return
            conn.execute(upsert_statement(dialect, table, self._pk), rows)
            return
        compiled = compiled_upsert(conn.dialect, table, self._pk)
        if compiled is None:
            stmt = upsert_statement(dialect, table, self._pk)
            if stmt is not None:
                conn.execute(stmt, rows)
                return
            # no dialect upsert: replace the rows
            self._delete(conn, table, [self._key_of_row(r) for r in rows])
            conn.execute(insert(table), rows)
            return
        sql, binds, positional = compiled
        params: list[Any]
        if positional:
            params = [tuple([p(r[f]) if p else r[f] for _, f, p in binds]) for r in rows]
        else:
            params = [{b: p(r[f]) if p else r[f] for b, f, p in binds} for r in rows]
        conn.exec_driver_sql(sql, params)

    # -- derived hooks ----------------------------------------------------------------------
    def reset(self, db: Session) -> None:
        """Delete every row (before a replay from the start)."""
        self._follow_switch(db)
        _cleared(db)
        db.execute(delete(self.target()))

    def forget(self, subject: str, db: Session) -> None:
        """Delete the row keyed by the subject's entity id (default ``key`` only), in the table
        this version writes (``eventkit forget`` runs it on every copy eventkit made)."""
        if type(self).key is not RowProjector.key:
            return
        _cleared(db)
        key: Any = entity_id_of(subject)
        if self._key_from_id is not None:
            try:
                key = self._key_from_id(key)
            except (TypeError, ValueError):
                return  # no row can have this key
        table = self.target()
        db.execute(delete(table).where(table.c[self._pk[0]] == key))

    @classmethod
    def declares_forget(cls) -> bool:
        return cls.key is RowProjector.key or cls.forget is not RowProjector.forget


def _cleared(db: Session) -> None:
    cache: RowCache | None = db.info.get(ROW_CACHE)
    if cache is not None:
        cache.clear()


__all__ = ["RowProjector"]
