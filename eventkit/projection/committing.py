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

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from sqlalchemy.orm import Session

from eventkit.observability.worker import WorkerObserver
from eventkit.projection import checkpoints, letters
from eventkit.projection.applying import BatchApplier, Item
from eventkit.projection.progress import Progress
from eventkit.projection.projector import Projector
from eventkit.projection.redaction import halt_message
from eventkit.projection.registry import checkpoint_and_role
from eventkit.projection.rowcache import ROW_CACHE, RowCache
from eventkit.projection.rows import RowProjector
from eventkit.projection.targets import base_name, fence, label
from eventkit.store.records import time_from_ns
from eventkit.store.wire_constants import EVENT_TYPE, MSG_ID


class Restart(Exception):
    """The consumer's delivery and the SQL checkpoint disagree: reposition the consumer."""


def describe(error: BaseException) -> str:
    """An error as the checkpoint row and the dead letters keep it (type, text, bounded)."""
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text}"[:2000]


class Fencing(Protocol):
    """A runner's lease as its transactions use it (one lease, or a worker's partitions)."""

    ttl: float

    def fenced(self) -> AbstractContextManager[Session]: ...


class BatchTransaction:
    """The transactions of one runner (see the module's docstring): a batch applied, a bad
    event parked, the projector halted; each checks the runner's lease and moves its
    :class:`~eventkit.projection.progress.Progress`."""

    def __init__(
        self,
        projector: Projector,
        store: Any,
        lease: Fencing,
        applier: BatchApplier,
        rows: RowCache | None,
        progress: Progress,
        obs: WorkerObserver,
    ) -> None:
        self.projector = projector
        self.name = projector.name
        self.store = store
        self.lease = lease
        self.applier = applier
        self.rows = rows
        self.progress = progress
        self.obs = obs
        self.revision = -1
        """The checkpoint row's revision the row cache is valid for."""
        self.clear_error = False
        """The checkpoint row holds an error (of a runner that halted): clear it on commit."""

    def apply(self, items: Sequence[Item]) -> None:
        """One transaction: verify the lease, apply the items, move the checkpoint."""
        rows = self.rows
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
        progress = self.progress
        with self.lease.fenced() as db:
            projector = self.projector
            versioned = isinstance(projector, RowProjector)
            if versioned:  # the checkpoint and the version's role in one query
                base, version = base_name(projector), getattr(projector, "version", 1)
                cp, role = checkpoint_and_role(db, name, base, version)
            else:
                cp = checkpoints.get_checkpoint(db, name)
            stream: str = self.store.stream
            checkpoints.check_stream(cp, stream, label(projector))
            current = cp.last_sequence
            if current != progress.checkpoint:
                progress.checkpoint = current
                raise Restart
            if versioned:
                fence(db, projector, role)
            if rows is not None:
                if cp.revision != self.revision:  # rows written outside this runner
                    rows.invalidate()
                    self.revision = cp.revision
                db.info[ROW_CACHE] = rows
            applied = self.applier.apply(items, db, after=current)
            fresh = sum(1 for item in items if item.sequence > current)
            last = items[-1]
            if last.sequence > current:
                extra: dict[str, Any] = {}
                if self.clear_error:
                    extra["last_error"] = None
                if cp.stream is None:
                    extra["stream"] = stream
                checkpoints.save_checkpoint(
                    db,
                    name,
                    last_sequence=last.sequence,
                    last_event_time=time_from_ns(last.timestamp_ns),
                    last_event_id=(last.msg.headers or {}).get(MSG_ID),
                    **extra,
                )
        if items[-1].sequence > progress.checkpoint:
            progress.checkpoint = items[-1].sequence
            self.clear_error = False
        progress.processed += applied  # what the handlers were given, not eventkit's own messages
        progress.passed_over += fresh - applied

    def failure(self, item: Item, error: BaseException) -> tuple[str, str]:
        """The event type of a bad ``item`` and its ``error`` as kept."""
        event_type = (item.msg.headers or {}).get(EVENT_TYPE, "?")
        return event_type, describe(error)

    def park(self, item: Item, error: BaseException) -> None:
        """Park ``item`` as a dead letter and move the checkpoint past it, in one transaction."""
        event_type, text = self.failure(item, error)
        self.obs.parked(item.sequence, event_type, 1 + self.projector.max_retries, text)
        with self.lease.fenced() as db:
            letters.park(
                db,
                self.name,
                sequence=item.sequence,
                subject=item.msg.subject,
                event_type=event_type,
                error=text,
                attempts=1 + self.projector.max_retries,
            )
            self.move_past(db, item)
        self.moved_past(item)
        self.progress.parked += 1

    def move_past(self, db: Session, item: Item) -> None:
        """In the parking transaction: the checkpoint goes past the parked ``item``."""
        checkpoints.save_checkpoint(
            db,
            self.name,
            last_sequence=item.sequence,
            last_event_time=time_from_ns(item.timestamp_ns),
        )

    def moved_past(self, item: Item) -> None:
        """After the parking transaction committed: where the runner stands."""
        self.progress.checkpoint = item.sequence

    def halt(self, item: Item, error: BaseException) -> None:
        """Halt on ``item``: the checkpoint stays before it, the error (redacted) on its row."""
        event_type, text = self.failure(item, error)
        self.halt_with(halt_message(item.sequence, event_type, item.msg.subject, text))

    def halt_with(self, message: str) -> None:
        """Halt the projector, ``message`` on its checkpoint row."""
        self.obs.state("halted", error=message)
        with self.lease.fenced() as db:
            checkpoints.set_state(db, self.name, "halted", message)
        self.progress.state = "halted"
        self.progress.halted_error = message


__all__ = ["BatchTransaction", "Fencing", "Restart", "describe"]
