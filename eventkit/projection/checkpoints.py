"""eventkit's SQL bookkeeping: checkpoints and leases, and the tables of the dead letters
(:mod:`eventkit.projection.letters`) and of projector versions.

Every function takes the caller's ``Session`` so it joins the caller's transaction: the runner
writes a batch's read-model rows and its checkpoint in one commit::

    with transaction(engine) as db:
        cp = get_checkpoint(db, "balances")
        ...
        save_checkpoint(db, "balances", last_sequence=42, last_event_time=t)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    case,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from eventkit.errors import ConfigError, ProjectionError
from eventkit.projection.dialect import dialect_of

State = Literal["running", "halted"]

metadata = MetaData()

checkpoints = Table(
    "eventkit_checkpoints",
    metadata,
    Column("projector", String(200), primary_key=True),
    Column("last_sequence", BigInteger, nullable=False),
    Column("last_event_time", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("state", String(20), nullable=False),
    Column("last_error", Text),
    # bumped by writers of the projector's rows outside its runner (migration 0005)
    Column("revision", BigInteger, nullable=False, server_default="0"),
    # the stream whose sequences it counts (migration 0006; None: not claimed yet)
    Column("stream", String(200), nullable=True),
    # the event id (Nats-Msg-Id) of the message at last_sequence (migration 0006)
    Column("last_event_id", String(200)),
)

dead_letters = Table(
    "eventkit_dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("projector", String(200), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("subject", String(1000), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
)

leases = Table(
    "eventkit_leases",
    metadata,
    Column("projector", String(200), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("expires_at", Float, nullable=False),
)

LIVE: Final = "live"
BUILDING: Final = "building"
RETIRED: Final = "retired"

projector_versions = Table(
    "eventkit_projector_versions",
    metadata,
    Column("projector", String(200), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("slot", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("table_name", String(300), nullable=True),
    Column("table_schema", String(200), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; eventkit stores UTC, so attach it."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A projector's position: the last stream sequence whose effect is in the read model."""

    projector: str
    last_sequence: int
    last_event_time: datetime | None
    updated_at: datetime | None
    state: State
    last_error: str | None
    revision: int = 0
    """Bumped by every writer of the projector's rows outside its runner (:func:`touch_rows`)."""
    stream: str | None = None
    """The stream whose sequences ``last_sequence`` counts (None until a batch claimed it)."""
    last_event_id: str | None = None
    """The event id of the message applied at ``last_sequence`` (None: not known)."""


@contextlib.contextmanager
def _eventkit_tables() -> Iterator[None]:
    """A missing table of eventkit's becomes a ``ConfigError`` naming the fix; any other
    database error (unreachable, locked, ...) passes as it is."""
    try:
        yield
    except DBAPIError as e:
        text = str(e.orig).lower()
        if (
            "no such table" in text
            or "no such column" in text
            or (("relation" in text or "column" in text) and "does not exist" in text)
        ):
            raise ConfigError(
                f"eventkit's tables are missing or older than this eventkit in this database "
                f"({type(e).__name__}); run "
                f"`eventkit db upgrade` (or eventkit.projection.sql.upgrade(engine)) first"
            ) from e
        raise


def get_checkpoint(db: Session, projector: str) -> Checkpoint:
    """The checkpoint of ``projector`` (sequence 0, state running when it never ran)."""
    with _eventkit_tables():
        row = (
            db.connection()  # Core on the session's transaction: once per batch, no ORM layer
            .execute(select(checkpoints).where(checkpoints.c.projector == projector))
            .first()
        )
    return checkpoint_of(projector, row)


def checkpoint_of(projector: str, row: Any) -> Checkpoint:
    """A checkpoint from its row (None: the projector never ran)."""
    if row is None:
        return Checkpoint(projector, 0, None, None, "running", None)
    return Checkpoint(
        projector=row.projector,
        last_sequence=int(row.last_sequence),
        last_event_time=aware(row.last_event_time),
        updated_at=aware(row.updated_at),
        state=row.state,
        last_error=row.last_error,
        revision=int(row.revision or 0),
        stream=row.stream,
        last_event_id=row.last_event_id,
    )


def check_stream(cp: Checkpoint, stream: str, label: str | None = None) -> None:
    """Refuse a checkpoint that counts the sequences of another stream: a projector of the same
    name on another stream would start at a foreign position (skipping or re-applying events)
    and write the same tables."""
    if cp.stream is not None and cp.stream != stream:
        raise ProjectionError(
            f"projector {label or cp.projector!r} in this database follows stream "
            f"{cp.stream!r} (checkpoint {cp.last_sequence}), not {stream!r}: two apps on "
            f"different streams cannot share a projector name in one database; give one of "
            f"them another name (and tables), or use another database"
        )


def slots_named(db: Session, name: str) -> list[str]:
    """The slots ``name`` stands for: a projector's name gives those of its live and building
    versions; a slot's name (``balances_v2``) gives itself."""
    t = projector_versions
    with _eventkit_tables():
        found = [
            str(s)
            for s in db.connection()
            .execute(
                select(t.c.slot).where(
                    or_(t.c.projector == name, t.c.slot == name), t.c.role != RETIRED
                )
            )
            .scalars()
        ]
    return found or [name]


def touch_rows(db: Session, projector: str) -> None:
    """Say that ``projector``'s rows change outside its runner (a retried dead letter, a
    forget, a hand edit), first thing in the writer's transaction. ``projector`` is the
    projector's name (every version of it that runs, the live one after a blue/green switch
    included) or one version's slot (``balances_v2``).

    On PostgreSQL the writer first waits for the runner's batch in flight, by locking the lease
    row every batch locks first, so the two never interleave (SQLite runs one writer at a time).
    The checkpoint's ``revision`` is bumped: a runner that keeps rows in memory between batches
    (a ``RowProjector``'s row cache) reads them from SQL again from its next batch on."""
    conn = db.connection()
    names = sorted(slots_named(db, projector))
    if dialect_of(conn).row_locks:
        conn.execute(
            select(leases.c.projector)
            .where(leases.c.projector.in_(names))
            .order_by(leases.c.projector)
            .with_for_update()
        )
    conn.execute(
        update(checkpoints)
        .where(checkpoints.c.projector.in_(names))
        .values(revision=checkpoints.c.revision + 1)
    )


def save_checkpoint(
    db: Session,
    projector: str,
    *,
    last_sequence: int,
    last_event_time: datetime | None = None,
    state: State | None = None,
    last_error: str | Literal[False] | None = False,
    stream: str | None = None,
    last_event_id: str | None = None,
) -> None:
    """Insert or update a checkpoint (``last_error=False`` leaves the stored error as it is;
    ``stream`` claims it for a stream).

    ``last_event_id``: the id of the event at ``last_sequence``; without it a checkpoint that
    moves forgets the id it had (one that stays keeps it)."""
    values: dict[str, Any] = {"last_sequence": last_sequence, "updated_at": utcnow()}
    if stream is not None:
        values["stream"] = stream
    if last_event_id is not None:
        values["last_event_id"] = last_event_id
    else:
        values["last_event_id"] = case(
            (checkpoints.c.last_sequence == last_sequence, checkpoints.c.last_event_id),
            else_=None,
        )
    if last_event_time is not None:
        values["last_event_time"] = last_event_time
    if state is not None:
        values["state"] = state
    if last_error is not False:
        values["last_error"] = last_error
    result = db.connection().execute(
        update(checkpoints).where(checkpoints.c.projector == projector).values(**values)
    )
    if result.rowcount == 0:
        values["last_event_id"] = last_event_id
        values.setdefault("state", "running")
        values.setdefault("last_error", None)
        db.execute(insert(checkpoints).values(projector=projector, **values))


def set_state(db: Session, projector: str, state: State, error: str | None) -> None:
    cp = get_checkpoint(db, projector)
    save_checkpoint(db, projector, last_sequence=cp.last_sequence, state=state, last_error=error)


# -- leases -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Lease:
    projector: str
    owner: str
    expires_at: float

    @property
    def live(self) -> bool:
        return self.expires_at > time.time()


def get_lease(db: Session, projector: str) -> Lease | None:
    row = db.execute(select(leases).where(leases.c.projector == projector)).first()
    return None if row is None else Lease(row.projector, row.owner, float(row.expires_at))


def try_acquire_lease(db: Session, projector: str, owner: str, ttl: float) -> bool:
    """Take the lease when it is free, expired or already ours; True when we hold it."""
    now = time.time()
    with _eventkit_tables():
        result = db.execute(
            update(leases)
            .where(
                leases.c.projector == projector,
                (leases.c.owner == owner) | (leases.c.expires_at < now),
            )
            .values(owner=owner, expires_at=now + ttl)
        )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return True
    if get_lease(db, projector) is not None:
        return False
    try:
        with db.begin_nested():
            db.execute(
                insert(leases).values(projector=projector, owner=owner, expires_at=now + ttl)
            )
    except IntegrityError:
        return False
    return True


def renew_lease(db: Session, projector: str, owner: str, ttl: float) -> bool:
    """Extend our lease; False when another owner holds it now (we must stop applying).

    Inside a batch transaction this is the fence: on PostgreSQL the UPDATE locks the lease row
    until commit, so a takeover waits for the batch and then sees the renewed expiry.
    """
    result = db.connection().execute(
        update(leases)
        .where(leases.c.projector == projector, leases.c.owner == owner)
        .values(expires_at=time.time() + ttl)
    )
    return bool(result.rowcount == 1)


RELEASED = ""
"""The owner of a released lease: no runner's renewal matches it, so a renewal still in flight
when its runner stopped can never bring the lease back."""


def release_lease(db: Session, projector: str, owner: str) -> None:
    db.execute(
        update(leases)
        .where(leases.c.projector == projector, leases.c.owner == owner)
        .values(owner=RELEASED, expires_at=0.0)
    )


__all__ = [
    "BUILDING",
    "LIVE",
    "RETIRED",
    "Checkpoint",
    "Lease",
    "check_stream",
    "checkpoint_of",
    "checkpoints",
    "dead_letters",
    "get_checkpoint",
    "get_lease",
    "leases",
    "metadata",
    "projector_versions",
    "release_lease",
    "renew_lease",
    "save_checkpoint",
    "set_state",
    "slots_named",
    "touch_rows",
    "try_acquire_lease",
]
