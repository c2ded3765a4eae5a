"""One batch, one transaction: the lease renewed and checked, the checkpoint compared with what
the runner holds (and refused when it follows another stream), the version's role read from the
registry (a row projector's fence: a retired or dropped version commits nothing, a build
switched live writes the live table from this batch on), the row cache made valid, the items
applied and the checkpoint moved, all committed together (a crash at any instant leaves the
read model exactly at its checkpoint).

The row cache (:mod:`eventkit.projection.rowcache`) is handed to the projector through the
session's ``info`` in this transaction only, kept after the commit, and dropped on any error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from eventkit.projection import checkpoints as cps
from eventkit.projection.applying import BatchApplier, Item
from eventkit.projection.bluegreen import base_name, fence, label
from eventkit.projection.failures import BadEvents
from eventkit.projection.registry import Retired, checkpoint_and_role
from eventkit.projection.rowcache import ROW_CACHE, RowCache
from eventkit.projection.rows import RowProjector
from eventkit.store.protocol import MSG_ID
from eventkit.store.records import time_from_ns


class Restart(Exception):
    """The consumer's delivery and the SQL checkpoint disagree: reposition the consumer."""


class Committing(BadEvents):
    """The batch-transaction half of :class:`~eventkit.projection.runner.ProjectionRunner`."""

    _applier: BatchApplier
    _rows: RowCache | None
    _revision: int
    _clear_error: bool
    passed_over: int
    store: Any

    def _retire(self, error: Retired) -> None:
        """This version was retired by a switch (or its copy dropped): stop, saying so."""
        logging.getLogger("eventkit.projection").error("%s", error)
        self.halted_error = str(error)
        self.state = "stopped"

    def _apply(self, items: Sequence[Item]) -> None:
        """One transaction: verify the lease, apply the items, move the checkpoint."""
        rows = self._rows
        try:
            self._apply_in(items, rows)
        except BaseException:
            if rows is not None:
                rows.rollback()
            raise
        if rows is not None:
            rows.commit()

    def _apply_in(self, items: Sequence[Item], rows: RowCache | None) -> None:
        name = self.name
        with self._lease.fenced() as db:
            projector = self.projector
            versioned = isinstance(projector, RowProjector)
            if versioned:  # the checkpoint and the version's role in one query
                base, version = base_name(projector), getattr(projector, "version", 1)
                cp, role = checkpoint_and_role(db, name, base, version)
            else:
                cp = cps.get_checkpoint(db, name)
            stream: str = self.store.stream
            cps.check_stream(cp, stream, label(projector))
            current = cp.last_sequence
            if current != self.checkpoint:
                self.checkpoint = current
                raise Restart
            if versioned:
                fence(db, projector, role)
            if rows is not None:
                if cp.revision != self._revision:  # rows written outside this runner
                    rows.invalidate()
                    self._revision = cp.revision
                db.info[ROW_CACHE] = rows
            applied = self._applier.apply(items, db, after=current)
            fresh = sum(1 for item in items if item.sequence > current)
            last = items[-1]
            if last.sequence > current:
                extra: dict[str, Any] = {}
                if self._clear_error:
                    extra["last_error"] = None
                if cp.stream is None:
                    extra["stream"] = stream
                cps.save_checkpoint(
                    db,
                    name,
                    last_sequence=last.sequence,
                    last_event_time=time_from_ns(last.timestamp_ns),
                    last_event_id=(last.msg.headers or {}).get(MSG_ID),
                    **extra,
                )
        if items[-1].sequence > self.checkpoint:
            self.checkpoint = items[-1].sequence
            self._clear_error = False
        self.processed += applied  # what the handlers were given, not eventkit's own messages
        self.passed_over += fresh - applied


__all__ = ["Committing", "Restart"]
