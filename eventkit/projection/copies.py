"""Every table eventkit made for a projector: forgetting a subject in each, dropping one.

::

    with transaction(engine) as db:
        forget_everywhere(db, Balances(), "bank.account.a-1", marker=118)
    drop_version(engine, "balances", 3)        # `eventkit versions drop balances 3`

The registry (:mod:`eventkit.projection.registry`) lists each version of a projector and the
table it writes: live, building (a blue/green copy, abandoned or not) and retired (a switch not
finished). A forget covers all of them, whichever version's code runs it.
"""

from __future__ import annotations

import copy

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from eventkit.errors import ConfigError, ProjectionError
from eventkit.projection import checkpoints as cps
from eventkit.projection import partition_rows as pr
from eventkit.projection import registry as reg
from eventkit.projection.projector import Projector
from eventkit.projection.rows import RowProjector
from eventkit.projection.sql import read_transaction, transaction
from eventkit.projection.switching import forget_slot
from eventkit.projection.targets import copy_table, quoted


def writing(projector: Projector, found: reg.Copy) -> Projector:
    """``projector`` as it writes ``found``'s table (its ``table`` is that copy)."""
    if not isinstance(projector, RowProjector) or not found.table_name:
        return projector
    live = type(projector).table
    if found.table_name == live.name and found.table_schema == live.schema:
        return projector
    view = copy.copy(projector)
    view.__dict__.pop("_bound_handlers", None)
    table = copy_table(live, found.version, name=found.table_name)
    view.__dict__["table"] = table
    view.__dict__["_target"] = table
    return view


def forget_everywhere(db: Session, projector: Projector, subject: str, marker: int | None) -> None:
    """Run ``projector.forget(subject)`` on every table of it eventkit knows, in the caller's
    transaction, fenced like a batch: each version's lease row is locked first (PostgreSQL; its
    batch in flight ends), its row cache told. A version whose checkpoint is at or past the
    erasure ``marker`` forgot the subject when its runner applied the marker, in stream order:
    forgetting again now would also remove what other subjects' events added since, so it is
    left alone; a version behind the marker, a retired table, or no marker: forgotten now."""
    found = reg.copies(db, projector.name)
    if not found:  # never ran (or before the registry): its own name and table
        cps.touch_rows(db, projector.name)
        if not _applied(db, projector.name, marker, subject):
            projector.forget(subject, db)
        return
    for c in found:
        cps.touch_rows(db, c.slot)
    for c in found:
        if c.role != reg.RETIRED and _applied(db, c.slot, marker, subject):
            continue
        writing(projector, c).forget(subject, db)


def _applied(db: Session, slot: str, marker: int | None, subject: str) -> bool:
    if marker is None:
        return False
    reached = pr.checkpoint_of_subject(db, slot, subject)  # partitioned: the marker's partition
    if reached is None:
        reached = cps.get_checkpoint(db, slot).last_sequence
    return reached >= marker


def versions_of(engine: Engine, names: list[str]) -> list[reg.Copy]:
    """The registered versions of the projectors ``names``, by name then version."""
    with read_transaction(engine) as db:
        return [c for n in names for c in reg.copies(db, n)]


def drop_version(engine: Engine, name: str, version: int) -> str:
    """Drop a version that is not live: its table, checkpoint, dead letters, lease and registry
    row (a worker still running it stops at its next batch: its fence finds no row). Refused
    for the live version and while a worker holds the version's lease (stop it first).
    Returns what it did."""
    with transaction(engine) as db:
        found = reg.copy_of(db, name, version)
        if found is None:
            raise ConfigError(
                f"projector {name!r} has no version {version} in this database "
                f"(eventkit versions list shows them)"
            )
        if found.role == reg.LIVE:
            raise ConfigError(
                f"version {version} of {name!r} is live: it serves readers and is not dropped; "
                f"switch to a newer version first"
            )
        lease = cps.get_lease(db, found.slot)
        parts = pr.rows(db, found.slot)  # partitioned: its workers hold partitions, not this
        held = sorted({r.owner for r in parts if r.live})
        if not parts and lease is not None and lease.live:
            held = [] if lease.owner.startswith(reg.RETIRED_OWNER) else [lease.owner]
        if held:
            raise ProjectionError(
                f"version {version} of {name!r} is being run by {', '.join(held)}: stop its "
                f"workers first (nothing was dropped)"
            )
        if found.table_name:
            table = quoted(db, found.table_name, found.table_schema)
            db.execute(text(f"DROP TABLE IF EXISTS {table}"))
        forget_slot(db, found.slot)
        reg.forget_copy(db, name, version)
        db.execute(  # built again, every partition starts from the start
            pr.partitions_table.delete().where(pr.partitions_table.c.projector == found.slot)
        )
        if found.role != reg.RETIRED:  # a retired version's lease stays retired
            db.execute(cps.leases.delete().where(cps.leases.c.projector == found.slot))
    return (
        f"dropped version {version} of {name!r} ({found.role})"
        + (f": table {found.table_name}" if found.table_name else "")
        + ", its checkpoint and dead letters"
    )


__all__ = ["drop_version", "forget_everywhere", "versions_of", "writing"]
