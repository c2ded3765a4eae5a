"""eventkit's SQL records of an erasure: the request log, the audit log, the read-model rows.

The request row (``eventkit_forget_requests``) is keyed by the HMAC of the subject and holds the
step a run reached, so an interrupted ``forget`` resumes; the audit row (``eventkit_forget_audit``)
is written with the request's end in one transaction. Neither holds the subject in clear.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from eventkit.errors import ConfigError
from eventkit.gdpr import tables
from eventkit.gdpr.reports import ForgetReport
from eventkit.projection.checkpoints import checkpoints, dead_letters
from eventkit.projection.copies import forget_everywhere
from eventkit.projection.dialect import dialect_of
from eventkit.projection.partition_rows import partitions_table
from eventkit.projection.redaction import redact_errors
from eventkit.projection.sql import transaction


def check_tables(engine: Engine) -> None:
    try:
        with engine.connect() as conn:
            missing = [
                name
                for name in (tables.forget_requests.name, tables.forget_audit.name)
                if not inspect(conn).has_table(name)
            ]
    except SQLAlchemyError as e:
        raise ConfigError(f"cannot reach the SQL database for the forget log: {e}") from e
    if missing:
        raise ConfigError(
            f"eventkit's GDPR tables are missing ({', '.join(missing)}): run `eventkit db "
            f"upgrade` first"
        )


def load_request(engine: Engine, stream: str, digest: str) -> dict[str, Any] | None:
    r = tables.forget_requests
    with engine.connect() as conn:
        row = conn.execute(
            select(r).where(r.c.stream == stream, r.c.subject_hmac == digest)
        ).first()
    return dict(row._mapping) if row is not None else None


def save_request(engine: Engine, stream: str, digest: str, step: str, erased: int) -> None:
    r = tables.forget_requests
    now = datetime.now(UTC)
    values = {"step": step, "messages_erased": erased, "updated_at": now, "finished_at": None}
    where = (r.c.stream == stream, r.c.subject_hmac == digest)
    for _ in range(2):
        try:
            with transaction(engine) as db:
                done = db.execute(update(r).where(*where).values(**values)).rowcount  # type: ignore[attr-defined]
                if not done:
                    db.execute(
                        insert(r).values(
                            stream=stream, subject_hmac=digest, started_at=now, **values
                        )
                    )
            return
        except IntegrityError:
            continue  # another forget of the subject inserted the request first: update it


def forget_rows(
    engine: Engine,
    readers: list[Any],
    subject: str,
    stream: str,
    digest: str,
    marker: int | None = None,
) -> int:
    """Forget ``subject`` in every table of every reader eventkit knows (live, building and
    retired copies), fenced against their runners (see :func:`forget_everywhere`: a version
    past the erasure ``marker`` forgot it in stream order already); delete its dead letters,
    redact the errors quoting it; one transaction."""
    by_pragma = dialect_of(engine).erases_by_pragma
    with transaction(engine) as db:
        if by_pragma:
            db.execute(text("PRAGMA secure_delete = ON"))
        for p in readers:
            forget_everywhere(db, p, subject, marker)
        dead = db.execute(  # type: ignore[attr-defined]
            delete(dead_letters).where(dead_letters.c.subject == subject)
        ).rowcount
        redact_errors(db, subject)
        r = tables.forget_requests
        db.execute(
            update(r)
            .where(r.c.stream == stream, r.c.subject_hmac == digest)
            .values(step="projectors", updated_at=datetime.now(UTC))
        )
    if by_pragma:
        truncate_wal(engine)
    return int(dead or 0)


def truncate_wal(engine: Engine) -> None:
    # WAL frames still hold the old pages (with the erased rows) until a checkpoint: fold
    # them into the (securely overwritten) database file and truncate the WAL.
    # (outside any transaction: on the DBAPI connection, not through the engine's BEGIN)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.close()
    finally:
        raw.close()


def last_audit_id(engine: Engine, stream: str, digest: str) -> int:
    """The id of the subject's newest audit entry (0: none), read when a forget starts."""
    a = tables.forget_audit
    with engine.connect() as conn:
        found = conn.execute(
            select(func.max(a.c.id)).where(
                a.c.stream == stream, a.c.subject_hmac == digest, a.c.kind == "subject"
            )
        ).scalar()
    return int(found or 0)


def finish_request(engine: Engine, report: ForgetReport, audited: int = 0) -> bool:
    """Write the audit entry and mark the request done; False (no entry written) when a forget
    of the subject running at the same time wrote one after ``audited`` (the id
    :func:`last_audit_id` gave when this one started): one entry per erasure."""
    row = {
        "stream": report.stream,
        "kind": "subject",
        "subject_hmac": report.subject_hmac,
        "hmac_scheme": report.hmac_scheme,
        "sequence": None,
        "messages_erased": report.messages,
        "snapshots_erased": report.snapshots,
        "key_shredded": report.key == "shredded",
        "projectors": json.dumps(report.projectors),
        "projectors_without_forget": json.dumps(report.projectors_without_forget),
        "at": datetime.now(UTC),
    }
    r, a = tables.forget_requests, tables.forget_audit
    mine = (r.c.stream == report.stream, r.c.subject_hmac == report.subject_hmac)
    with transaction(engine) as db:
        # the request row, locked (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises):
        # two finishing forgets of one subject take turns here
        db.execute(select(r.c.id).where(*mine).with_for_update()).first()
        joined = db.execute(
            select(a.c.id).where(
                a.c.stream == report.stream,
                a.c.subject_hmac == report.subject_hmac,
                a.c.kind == "subject",
                a.c.id > audited,
            )
        ).first()
        if joined is None:
            db.execute(insert(a).values(**row))
        db.execute(
            update(r).where(*mine).values(step="done", updated_at=row["at"], finished_at=row["at"])
        )
    return joined is None


def insert_audit(engine: Engine, row: dict[str, Any]) -> None:
    with transaction(engine) as db:
        db.execute(insert(tables.forget_audit).values(**row))


def checkpoint_positions(engine: Engine) -> dict[str, int]:
    """How far each projector applied; a partitioned one's furthest partition (a message may
    have been applied there: its own row is behind, as of its workers' last rebalance)."""
    c, parts = checkpoints, partitions_table
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(c.name):
                return {}
            out = {
                str(name): int(seq)
                for name, seq in conn.execute(select(c.c.projector, c.c.last_sequence))
            }
            if inspect(conn).has_table(parts.name):
                furthest = select(parts.c.projector, func.max(parts.c.last_sequence))
                for name, seq in conn.execute(furthest.group_by(parts.c.projector)):
                    out[str(name)] = max(out.get(str(name), 0), int(seq))
            return out
    except SQLAlchemyError:
        return {}


def audit_entries(engine: Engine, stream: str | None = None) -> list[dict[str, Any]]:
    """The forget audit log (newest last), as dicts; subjects appear only as HMACs."""
    a = tables.forget_audit
    query = select(a).order_by(a.c.id)
    if stream is not None:
        query = query.where(a.c.stream == stream)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


__all__ = [
    "audit_entries",
    "check_tables",
    "checkpoint_positions",
    "finish_request",
    "forget_rows",
    "insert_audit",
    "last_audit_id",
    "load_request",
    "save_request",
    "truncate_wal",
]
