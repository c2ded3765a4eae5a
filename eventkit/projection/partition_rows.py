"""The SQL rows of a partitioned projector: one lease and one checkpoint per partition
(``eventkit_partitions``, migration 0008_partitions).

Every function takes the caller's ``Session``, so a batch's read-model writes, its fence and its
checkpoints commit together::

    with transaction(engine) as db:
        ensure(db, "balances", 16)                          # the rows, or PartitionCountChanged
        start = claim(db, "balances", 3, owner, ttl=5.0)     # its checkpoint, or None (held)
        ...
        if not fence(db, "balances", [3, 7], owner, 5.0, last_sequence=42):
            raise LeaseLost                                  # rolled back: nothing written

The projector's own row in ``eventkit_leases`` is taken for good by a partitioned projector
(owner :func:`sentinel`), so a runner of the same name without partitions can never apply
beside it; the projector's row in ``eventkit_checkpoints`` keeps its state (halted, the error)
and, at each rebalance, its low watermark (the slowest partition).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    case,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from eventkit.errors import ConfigError
from eventkit.projection import checkpoints as cps
from eventkit.projection.dialect import dialect_of
from eventkit.runtime.partitions import default_key, partition_of

partitions_table = Table(
    "eventkit_partitions",
    cps.metadata,
    Column("projector", String(200), primary_key=True),
    Column("partition", Integer, primary_key=True, autoincrement=False),
    Column("partitions", Integer, nullable=False),
    Column("owner", String(200), nullable=False, server_default=""),
    Column("expires_at", Float, nullable=False, server_default="0"),
    Column("last_sequence", BigInteger, nullable=False, server_default="0"),
    Column("last_event_time", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
t = partitions_table.c

FOREVER = 1e18
"""The expiry of the projector-wide lease a partitioned projector holds (never)."""


class PartitionCountChanged(ConfigError):
    """The class declares another number of partitions than the database holds."""


def sentinel(partitions: int) -> str:
    """The owner of the projector-wide lease while it runs in ``partitions`` partitions."""
    return f"partitioned:{partitions}"


@dataclass(frozen=True, slots=True)
class PartitionRow:
    """One partition: who holds it (until when) and the last stream sequence applied in it."""

    projector: str
    partition: int
    partitions: int
    owner: str
    expires_at: float
    last_sequence: int
    last_event_time: datetime | None

    @property
    def live(self) -> bool:
        return bool(self.owner) and self.expires_at > time.time()


def _row(r: Any) -> PartitionRow:
    return PartitionRow(
        r.projector,
        int(r.partition),
        int(r.partitions),
        r.owner or "",
        float(r.expires_at),
        int(r.last_sequence),
        cps.aware(r.last_event_time),
    )


def rows(db: Session, projector: str) -> list[PartitionRow]:
    """The partitions of ``projector`` (empty when it never ran partitioned)."""
    q = select(partitions_table).where(t.projector == projector).order_by(t.partition)
    with cps._eventkit_tables():
        return [_row(r) for r in db.connection().execute(q)]


def ensure(db: Session, projector: str, partitions: int, stream: str | None = None) -> None:
    """Make the projector's partition rows (each at the projector's checkpoint) and take its
    projector-wide lease for good; :class:`PartitionCountChanged` when they exist with another
    count, :class:`ConfigError` when a runner without partitions holds the projector now."""
    stored = rows(db, projector)
    if stored:
        have = stored[0].partitions
        if have != partitions:
            raise PartitionCountChanged(
                f"projector {projector!r} has {have} partitions in the database but the class "
                f"declares partitions = {partitions}: events would move to other partitions "
                f"mid-stream. Changing the count is a rebuild: raise the projector's `version` "
                f"(blue/green, built beside the live one), or `eventkit replay {projector} "
                f"--from-start` after stopping every worker and deleting its rows of "
                f"eventkit_partitions"
            )
        return
    lease = cps.get_lease(db, projector)
    owner = sentinel(partitions)
    if lease is not None and lease.live and lease.owner != owner:
        raise ConfigError(
            f"projector {projector!r} is being run without partitions by {lease.owner}: stop "
            f"that runner (or wait for its lease to expire) before running it partitioned"
        )
    if not cps.try_acquire_lease(db, projector, owner, FOREVER):
        taken = cps.get_lease(db, projector)  # by another worker of the same count, first?
        if taken is None or taken.owner != owner:
            raise ConfigError(
                f"projector {projector!r} is being run by {taken.owner if taken else 'another'}"
                f" runner: stop it before running the projector with partitions = {partitions}"
            )
    start = cps.get_checkpoint(db, projector)
    if start.updated_at is None:
        cps.save_checkpoint(db, projector, last_sequence=0, state="running", stream=stream)
    now = cps.utcnow()
    try:
        with db.begin_nested():
            db.execute(
                insert(partitions_table),
                [
                    {
                        "projector": projector,
                        "partition": p,
                        "partitions": partitions,
                        "owner": "",
                        "expires_at": 0.0,
                        "last_sequence": start.last_sequence,
                        "last_event_time": start.last_event_time,
                        "updated_at": now,
                    }
                    for p in range(partitions)
                ],
            )
    except IntegrityError:
        pass  # another worker made them first


def claim(db: Session, projector: str, partition: int, owner: str, ttl: float) -> int | None:
    """Take a partition that is free, expired or ours: its checkpoint, or None when held."""
    now = time.time()
    result = db.connection().execute(
        update(partitions_table)
        .where(
            t.projector == projector,
            t.partition == partition,
            (t.owner == owner) | (t.expires_at < now),
        )
        .values(owner=owner, expires_at=now + ttl)
    )
    if result.rowcount != 1:
        return None
    return int(
        db.connection()
        .execute(select(t.last_sequence).where(t.projector == projector, t.partition == partition))
        .scalar_one()
    )


def renew(db: Session, projector: str, held: list[int], owner: str, ttl: float) -> set[int]:
    """Extend our leases of ``held``; the partitions still ours."""
    if not held:
        return set()
    db.connection().execute(
        update(partitions_table)
        .where(t.projector == projector, t.partition.in_(held), t.owner == owner)
        .values(expires_at=time.time() + ttl)
    )
    q = select(t.partition).where(t.projector == projector, t.partition.in_(held), t.owner == owner)
    return {int(p) for p in db.connection().execute(q).scalars()}


def fence(
    db: Session,
    projector: str,
    held: list[int],
    owner: str,
    ttl: float,
    *,
    last_sequence: int | None = None,
    last_event_time: datetime | None = None,
) -> bool:
    """In a batch's transaction, first thing: renew our leases of ``held`` and (with
    ``last_sequence``) move their checkpoints forward to it. False when any of them is no
    longer ours: the caller must roll back (nothing of the batch may commit).

    On PostgreSQL the UPDATE locks the rows until commit, so a takeover waits for the batch
    and then sees the renewed expiry; a projector-wide writer (:func:`~eventkit.projection.
    checkpoints.touch_rows`) waits too, by the share lock taken here on the projector's lease
    row."""
    if not held:
        return True
    conn = db.connection()
    if dialect_of(conn).row_locks:
        lease = cps.leases.c.projector
        conn.execute(select(lease).where(lease == projector).with_for_update(read=True))
    values: dict[str, Any] = {"expires_at": time.time() + ttl}
    if last_sequence is not None:
        values["last_sequence"] = case(
            (t.last_sequence < last_sequence, last_sequence), else_=t.last_sequence
        )
        values["updated_at"] = cps.utcnow()
        if last_event_time is not None:
            values["last_event_time"] = last_event_time
    result = conn.execute(
        update(partitions_table)
        .where(t.projector == projector, t.partition.in_(held), t.owner == owner)
        .values(**values)
    )
    return bool(result.rowcount == len(held))


def advance(db: Session, projector: str, partition: int, last_sequence: int) -> None:
    """Move one partition's checkpoint to ``last_sequence`` (a parked event), never back."""
    db.connection().execute(
        update(partitions_table)
        .where(
            t.projector == projector,
            t.partition == partition,
            t.last_sequence < last_sequence,
        )
        .values(last_sequence=last_sequence, updated_at=cps.utcnow())
    )


def release(db: Session, projector: str, partitions: list[int], owner: str) -> None:
    """Give partitions back (a clean stop, or a rebalance): free at once for their new owner."""
    if partitions:
        db.connection().execute(
            update(partitions_table)
            .where(t.projector == projector, t.partition.in_(partitions), t.owner == owner)
            .values(owner="", expires_at=0.0)
        )


def hold_all(db: Session, projector: str, owner: str, ttl: float) -> str:
    """Take every partition's lease for ``owner`` (a replay); the live owners that hold some
    (nothing is taken then), or "" when all are ours now."""
    now = time.time()
    others = sorted({r.owner for r in rows(db, projector) if r.live and r.owner != owner})
    if others:
        return ", ".join(others)
    db.connection().execute(
        update(partitions_table)
        .where(t.projector == projector)
        .values(owner=owner, expires_at=now + ttl)
    )
    return ""


def take_all(db: Session, projector: str, owner: str, expires_at: float) -> int:
    """Take every partition's lease for ``owner`` until ``expires_at``, whoever holds it (a
    switch fencing the old version: its workers' next batch commits nothing and they stand by;
    on PostgreSQL this waits for their batches in flight); the highest checkpoint."""
    db.connection().execute(
        update(partitions_table)
        .where(t.projector == projector)
        .values(owner=owner, expires_at=expires_at)
    )
    value = (
        db.connection()
        .execute(select(func.max(t.last_sequence)).where(t.projector == projector))
        .scalar()
    )
    return 0 if value is None else int(value)


def free_all(db: Session, projector: str, owner: str) -> None:
    """Give back every partition ``owner`` holds (the end of a switch's fence)."""
    db.connection().execute(
        update(partitions_table)
        .where(t.projector == projector, t.owner == owner)
        .values(owner="", expires_at=0.0)
    )


def rewind_all(db: Session, projector: str, to_sequence: int) -> None:
    """Set every partition's checkpoint to ``to_sequence`` (a replay, holding them all)."""
    db.connection().execute(
        update(partitions_table)
        .where(t.projector == projector)
        .values(last_sequence=to_sequence, updated_at=cps.utcnow())
    )


def checkpoint_of_subject(db: Session, projector: str, subject: str) -> int | None:
    """The checkpoint of the partition a subject's markers and system events are applied in
    (by the subject, whatever ``partition_key`` says); None when not partitioned."""
    with cps._eventkit_tables():
        first = (
            db.connection()
            .execute(select(t.partitions).where(t.projector == projector).limit(1))
            .scalar()
        )
    if first is None:
        return None
    part = partition_of(default_key(subject), int(first))
    value = (
        db.connection()
        .execute(select(t.last_sequence).where(t.projector == projector, t.partition == part))
        .scalar()
    )
    return None if value is None else int(value)


def low_watermark(db: Session, projector: str) -> int | None:
    """The slowest partition's checkpoint (every event up to it is applied in every one)."""
    value = (
        db.connection()
        .execute(select(func.min(t.last_sequence)).where(t.projector == projector))
        .scalar()
    )
    return None if value is None else int(value)


def record_watermark(db: Session, projector: str) -> None:
    """Copy the low watermark onto the projector's checkpoint row (status, replay, forget)."""
    low = low_watermark(db, projector)
    if low is not None:
        db.connection().execute(
            update(cps.checkpoints)
            .where(cps.checkpoints.c.projector == projector, cps.checkpoints.c.last_sequence < low)
            .values(last_sequence=low, updated_at=cps.utcnow())
        )


__all__ = [
    "PartitionCountChanged",
    "PartitionRow",
    "advance",
    "checkpoint_of_subject",
    "claim",
    "ensure",
    "fence",
    "free_all",
    "hold_all",
    "low_watermark",
    "partitions_table",
    "record_watermark",
    "release",
    "renew",
    "rewind_all",
    "rows",
    "sentinel",
    "take_all",
]
