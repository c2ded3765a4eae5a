"""A projector's dead letters in SQL: the events a ``park`` projector could not apply, written in
the batch transaction that moves its checkpoint past them (so parking is exactly once too).

Every function takes the caller's ``Session`` and joins its transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from eventkit.projection.checkpoints import _eventkit_tables, aware, dead_letters, utcnow


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a ``park`` projector could not apply."""

    id: int
    projector: str
    sequence: int
    subject: str
    event_type: str
    error: str
    attempts: int
    parked_at: datetime
    resolved_at: datetime | None


def park(
    db: Session,
    projector: str,
    *,
    sequence: int,
    subject: str,
    event_type: str,
    error: str,
    attempts: int,
) -> None:
    """Record a dead letter (once per projector and sequence; a second park updates it)."""
    existing = db.execute(
        select(dead_letters.c.id).where(
            dead_letters.c.projector == projector, dead_letters.c.sequence == sequence
        )
    ).scalar()
    if existing is not None:
        db.execute(
            update(dead_letters)
            .where(dead_letters.c.id == existing)
            .values(error=error, attempts=attempts, parked_at=utcnow(), resolved_at=None)
        )
        return
    db.execute(
        insert(dead_letters).values(
            projector=projector,
            sequence=sequence,
            subject=subject,
            event_type=event_type,
            error=error[:4000],
            attempts=attempts,
            parked_at=utcnow(),
        )
    )


def _dead_letter(row: Any) -> DeadLetter:
    return DeadLetter(
        id=int(row.id),
        projector=row.projector,
        sequence=int(row.sequence),
        subject=row.subject,
        event_type=row.event_type,
        error=row.error,
        attempts=int(row.attempts),
        parked_at=aware(row.parked_at) or utcnow(),
        resolved_at=aware(row.resolved_at),
    )


def list_dead_letters(
    db: Session, projector: str | None = None, *, include_resolved: bool = False
) -> list[DeadLetter]:
    """Parked events in stream order (unresolved only unless ``include_resolved``)."""
    q = select(dead_letters).order_by(dead_letters.c.projector, dead_letters.c.sequence)
    if projector is not None:
        q = q.where(dead_letters.c.projector == projector)
    if not include_resolved:
        q = q.where(dead_letters.c.resolved_at.is_(None))
    with _eventkit_tables():
        return [_dead_letter(r) for r in db.execute(q)]


def get_dead_letter(db: Session, letter_id: int) -> DeadLetter | None:
    row = db.execute(select(dead_letters).where(dead_letters.c.id == letter_id)).first()
    return None if row is None else _dead_letter(row)


def resolve_dead_letter(db: Session, letter_id: int) -> bool:
    """Mark an open letter resolved; False when it was resolved already (by another retry).

    The conditional update locks the row until the transaction ends, so two concurrent retries
    of one letter cannot both apply it."""
    result = db.execute(
        update(dead_letters)
        .where(dead_letters.c.id == letter_id, dead_letters.c.resolved_at.is_(None))
        .values(resolved_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


def settle_for_replay(db: Session, projector: str, from_sequence: int) -> int:
    """Resolve the open letters a replay from ``from_sequence`` re-applies (in the replay's
    first transaction): the replay applies each of them again, or parks it again (reopening its
    letter), so a later retry can never apply one a second time. Returns how many."""
    result = db.execute(
        update(dead_letters)
        .where(
            dead_letters.c.projector == projector,
            dead_letters.c.sequence >= from_sequence,
            dead_letters.c.resolved_at.is_(None),
        )
        .values(resolved_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def record_retry_failure(db: Session, letter_id: int, error: str) -> None:
    db.execute(
        update(dead_letters)
        .where(dead_letters.c.id == letter_id)
        .values(error=error[:4000], attempts=dead_letters.c.attempts + 1)
    )


def count_open_dead_letters(db: Session, projector: str) -> int:
    return int(
        db.execute(
            select(func.count()).where(
                dead_letters.c.projector == projector, dead_letters.c.resolved_at.is_(None)
            )
        ).scalar_one()
    )


__all__ = [
    "DeadLetter",
    "count_open_dead_letters",
    "get_dead_letter",
    "list_dead_letters",
    "park",
    "record_retry_failure",
    "resolve_dead_letter",
    "settle_for_replay",
]
