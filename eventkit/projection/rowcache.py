"""The rows a runner's ``RowProjector`` wrote, kept between batches so that a batch reads from
SQL only the rows it has not seen.

::

    cache = RowCache(limit=50_000, max_bytes=48 * 2**20)
    with lease.fenced() as db:
        db.info[ROW_CACHE] = cache     # the runner's batch transaction only
        ...                            # RowProjector.apply_many: lookup, stage
    cache.commit()                     # after the commit; cache.rollback() on any error

The cache is right only while nothing else writes the rows, so it is dropped whenever that may
have happened: when the runner takes the lease (another runner may have written), when a batch
fails or is rolled back, when the projector forgets or resets rows, when the checkpoint's
``revision`` moved (a dead letter retried or a forget, see ``touch_rows``), and when the table
the projector writes changes (a blue/green switch). Rows whose values would not read back from
SQL as they are (a type the column converts, a PostgreSQL ``REAL`` that rounds a double to
single precision) are not kept: a handler sees the same values cached or not.

The cache is bounded in rows and in bytes: the size of a row is estimated on a sample of the
rows kept (one in :data:`SAMPLE`: the dict, its key and values as ``sys.getsizeof`` counts
them, and the cache's own entry; a moving average), and the rows written longest ago go first
once either bound is passed, so a runner's memory does not grow with the width of its rows.
"""

from __future__ import annotations

import sys
from typing import Any, Final

Row = dict[str, Any]

ROW_CACHE: Final = "eventkit_row_cache"
"""The key of the runner's cache in the batch session's ``info``."""


class _Miss:
    def __repr__(self) -> str:
        return "MISS"


MISS: Final = _Miss()
"""What :meth:`RowCache.lookup` gives for a key it does not know (read it from SQL)."""


ENTRY = 100
"""Bytes an entry takes in the cache's own table."""
SAMPLE = 8
"""One row in this many kept has its size measured (the estimate is their moving average)."""


def row_size(key: Any, row: Row | None) -> int:
    """About how many bytes keeping ``row`` under ``key`` takes."""
    size = ENTRY + sys.getsizeof(key)
    if row is not None:
        size += sys.getsizeof(row)
        for v in row.values():
            size += sys.getsizeof(v)
    return size


class RowCache:
    """``key -> row as stored`` (``None``: known to have no row) for one table, at most
    ``limit`` keys and about ``max_bytes`` (the oldest written first out)."""

    def __init__(self, limit: int, max_bytes: int = 48 * 2**20) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.bytes = 0
        """The estimated size of the rows kept."""
        self.row_bytes = 0.0
        """The estimated size of one row kept (a moving average over a sample)."""
        self._kept = 0
        self._table: str | None = None
        self._rows: dict[Any, Row | None] = {}
        self._staged: dict[Any, Row | _Miss | None] = {}
        self._cleared = False
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def bind(self, table: str) -> None:
        """The table the rows belong to; another table drops what is kept."""
        if table != self._table:
            self.invalidate()
            self._table = table

    def lookup(self, key: Any) -> Row | _Miss | None:
        """The row of ``key`` as stored (not to be changed), ``None`` when it has none, or
        :data:`MISS`."""
        if key in self._staged:
            return self._staged[key]
        if self._cleared:
            return MISS
        return self._rows.get(key, MISS)

    def stage(self, key: Any, row: Row | _Miss | None) -> None:
        """``key`` is stored as ``row`` in the transaction (``None``: deleted; :data:`MISS`:
        changed in a way not to keep)."""
        self._staged[key] = row

    def clear(self) -> None:
        """Rows changed in the transaction in ways not tracked (a forget, a reset)."""
        self._staged.clear()
        self._cleared = True

    def commit(self) -> None:
        """The transaction committed: keep what it staged."""
        rows = self._rows
        if self._cleared:
            rows.clear()
        avg, kept = self.row_bytes, self._kept
        for key, row in self._staged.items():
            rows.pop(key, None)
            if row is not MISS:
                rows[key] = row  # type: ignore[assignment]
                if kept % SAMPLE == 0:
                    size = row_size(key, row)  # type: ignore[arg-type]
                    avg = size if not avg else 0.9 * avg + 0.1 * size
                kept += 1
        self.row_bytes, self._kept = avg, kept
        self._staged.clear()
        self._cleared = False
        cap = self.limit if not avg else min(self.limit, int(self.max_bytes // avg))
        while len(rows) > cap:
            del rows[next(iter(rows))]
        self.bytes = int(len(rows) * avg)

    def rollback(self) -> None:
        """The transaction failed or was rolled back: keep nothing (the rows are unknown)."""
        self.invalidate()

    def invalidate(self) -> None:
        self._rows.clear()
        self.bytes = 0
        self._staged.clear()
        self._cleared = False


def row_cache_of(projector: Any) -> RowCache | None:
    """The row cache a runner of ``projector`` keeps (a row projector's ``row_cache`` rows in
    ``row_cache_bytes``), or None."""
    size: int = getattr(projector, "row_cache", 0)  # validated on the projector
    room: int = getattr(projector, "row_cache_bytes", 0)
    return RowCache(size, room) if size > 0 and room > 0 else None


__all__ = ["MISS", "ROW_CACHE", "RowCache", "row_cache_of", "row_size"]
