"""What a projector passes over, counted per reason in SQL (shown by ``eventkit status``).

Reasons: ``foreign`` (a message without ``Eventkit-Type`` on a subject the projector reads, and no
``foreign_events`` binding for it), ``unhandled`` (an eventkit event of a type the projector has
no handler for) and ``forgotten`` (an event whose data key was shredded). The counts are written
in the batch's transaction, so they are exactly what the read model did not apply.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, String, Table, select, update
from sqlalchemy.orm import Session

from eventkit.projection.checkpoints import metadata

Reason = str
FOREIGN = "foreign"
UNHANDLED = "unhandled"
FORGOTTEN = "forgotten"

passed_over = Table(
    "eventkit_passed_over",
    metadata,
    Column("projector", String(200), primary_key=True),
    Column("reason", String(32), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("last_sequence", BigInteger, nullable=False),
    Column("first_sequence", BigInteger, nullable=True),
)


def record(db: Session, projector: str, counts: dict[Reason, tuple[int, int]]) -> None:
    """Add ``counts`` (reason -> (how many, last sequence)) to the projector's totals."""
    t = passed_over
    for reason, (n, last) in counts.items():
        done = db.execute(  # type: ignore[attr-defined]
            update(t)
            .where(t.c.projector == projector, t.c.reason == reason)
            .values(count=t.c.count + n, last_sequence=last)
        ).rowcount
        if not done:
            db.execute(
                t.insert().values(
                    projector=projector,
                    reason=reason,
                    count=n,
                    last_sequence=last,
                    first_sequence=last,
                )
            )


def totals(db: Session, projector: str) -> dict[Reason, int]:
    t = passed_over
    rows = db.execute(select(t.c.reason, t.c.count).where(t.c.projector == projector))
    return {str(reason): int(n) for reason, n in rows}


def reset(db: Session, projector: str) -> None:
    """Forget the counts (a replay from the start counts again)."""
    db.execute(passed_over.delete().where(passed_over.c.projector == projector))


__all__ = ["FOREIGN", "FORGOTTEN", "UNHANDLED", "passed_over", "record", "reset", "totals"]
