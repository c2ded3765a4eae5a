"""The error a halted projector records, and its redaction when the subject is forgotten.

A handler's error may quote the event's data (``ValueError: bad name 'Ada Lovelace'``); the
checkpoint row keeps it as ``last_error`` for ``eventkit status``. Forgetting the subject
replaces every recorded error about one of its events with a text that holds none of it.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from eventkit.projection.checkpoints import checkpoints

REDACTED = "the error quoted data of a forgotten subject and was erased"


def halt_message(sequence: int, event_type: str, subject: str, error: str) -> str:
    """What a halted projector records: ``seq N (Type on subject): error``."""
    return f"seq {sequence} ({event_type} on {subject}): {error}"


def _about(subject: str) -> str:
    return f" on {subject}): "


def redact_errors(db: Session, subject: str) -> int:
    """Replace each recorded error about an event of ``subject``; return how many."""
    c = checkpoints
    needle = _about(subject)
    found = [
        (name, text)
        for name, text in db.execute(
            select(c.c.projector, c.c.last_error).where(c.c.last_error.is_not(None))
        )
        if needle in str(text)
    ]
    for name, text in found:
        head = str(text).split(needle, 1)[0]
        db.execute(
            update(c)
            .where(c.c.projector == name)
            .values(last_error=f"{head} on a forgotten subject): {REDACTED}")
        )
    return len(found)


__all__ = ["REDACTED", "halt_message", "redact_errors"]
