"""Switching a blue/green build live, under steady writes, resumably.

::

    await switch(Balances(), store, engine)     # Balances.version = 2, built and running

1. the old version is fenced at a known checkpoint: its lease is held by the switch (its
   workers stand by), and its checkpoint then is the sequence to reach;
2. the new version reaches that sequence (its workers apply; a catch-up run here when none
   runs it);
3. one transaction renames the live table to ``<table>_retired_v<N>`` and the copy to the
   table's name, records the new live version and retires the old one (registry and lease);
4. a second transaction drops the retired table and the old version's bookkeeping.

An error before 3 hands the lease back to the old version's workers (it also expires by
itself); a switch interrupted between 3 and 4 is finished by the next ``switch`` (and the
retired table is covered by ``forget`` and listed by ``status`` meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from sqlalchemy import Engine, insert, select, text, update
from sqlalchemy.orm import Session

from eventkit.errors import ProjectionError
from eventkit.projection import checkpoints as cps
from eventkit.projection import partition_rows as pr
from eventkit.projection import registry as reg
from eventkit.projection.projector import Projector
from eventkit.projection.registry import slot_name
from eventkit.projection.rows import RowProjector
from eventkit.projection.sql import read_transaction, transaction
from eventkit.projection.targets import (
    FOREVER,
    _lock_live,
    _version_of,
    copy_table,
    live_version,
    quoted,
    versions,
)
from eventkit.store.positions import pending_after

SWITCH_TIMEOUT = 60.0
"""How long ``switch`` waits for the new version to reach the old one's checkpoint."""


def finish_retired(engine: Engine, name: str) -> list[str]:
    """Drop the tables of the versions a switch retired (the second half of a switch, also when
    the switch was interrupted before it); their leases stay retired. Returns the tables."""
    dropped = []
    with read_transaction(engine) as db:
        retired = [c for c in reg.copies(db, name) if c.role == reg.RETIRED]
    for c in retired:
        with transaction(engine) as db:
            if c.table_name:
                db.execute(text(f"DROP TABLE IF EXISTS {quoted(db, c.table_name, c.table_schema)}"))
                dropped.append(c.table_name)
            forget_slot(db, c.slot)
            reg.forget_copy(db, name, c.version)
    return dropped


def forget_slot(db: Session, slot: str) -> None:
    """A slot's bookkeeping (checkpoint, dead letters, passed-over counts); its lease is kept."""
    from eventkit.projection.passedover import passed_over

    db.execute(cps.checkpoints.delete().where(cps.checkpoints.c.projector == slot))
    db.execute(cps.dead_letters.delete().where(cps.dead_letters.c.projector == slot))
    db.execute(passed_over.delete().where(passed_over.c.projector == slot))


def _hold_lease(db: Session, slot: str, owner: str, expires_at: float) -> None:
    done = db.execute(
        update(cps.leases)
        .where(cps.leases.c.projector == slot)
        .values(owner=owner, expires_at=expires_at)
    ).rowcount  # type: ignore[attr-defined]
    if not done:
        db.execute(insert(cps.leases).values(projector=slot, owner=owner, expires_at=expires_at))


def _progress(db: Session, slot: str) -> tuple[int, bool]:
    """A version's checkpoint and whether a worker applies it now; for a partitioned version,
    its slowest partition's checkpoint and whether any partition's lease is live (its
    projector-wide lease is held for good)."""
    parts = pr.rows(db, slot)
    if parts:
        return min(r.last_sequence for r in parts), any(r.live for r in parts)
    lease = cps.get_lease(db, slot)
    return cps.get_checkpoint(db, slot).last_sequence, lease is not None and lease.live


async def switch(
    projector: Projector,
    store: Any,
    engine: Engine,
    *,
    timeout: float = SWITCH_TIMEOUT,
    **runner_options: Any,
) -> str:
    """Make the built version live, under steady writes: the old version is fenced at its
    checkpoint (its workers stand by), the new one reaches that sequence (its workers, or a
    catch-up run here when none runs it; ``runner_options`` go to that runner), then one
    transaction renames the copy over the live table and retires the old version, and a
    second drops the old table. Refused (nothing changed, the old version serving on) when the
    new version has not run, is halted or does not reach the sequence within ``timeout``
    seconds. Running it again finishes a switch that was interrupted. Returns what it did."""
    version = _version_of(projector)
    if not isinstance(projector, RowProjector):
        raise ProjectionError(
            f"projector {projector.name!r} is a plain Projector: only a RowProjector switches "
            f"versions (eventkit renames its table copy)"
        )
    name = projector.name
    finished = await asyncio.to_thread(finish_retired, engine, name)
    new_slot = slot_name(name, version)
    with read_transaction(engine) as db:
        live = live_version(db, name)
        cp = cps.get_checkpoint(db, new_slot)
    if live is None or version <= live:
        if finished:
            return (
                f"{name!r}: finished an interrupted switch (version {live} is live in "
                f"{projector.table.name}); dropped {', '.join(finished)}"
            )
        raise ProjectionError(
            f"projector {name!r}: no newer version to switch to (this code is version "
            f"{version}, live is {live or version}); raise `version` and run it first"
        )
    if cp.updated_at is None:
        raise ProjectionError(
            f"version {version} of {name!r} has not run yet: run it "
            f"(eventkit run {name}) until it caught up"
        )
    if cp.state == "halted":
        raise ProjectionError(f"version {version} of {name!r} is halted ({cp.last_error}); fix it")
    old_slot = slot_name(name, live)
    from eventkit.projection.runner import default_owner

    pause = f"{reg.SWITCHING_OWNER}: to version {version} by {default_owner()}"[:200]

    before: list[cps.Lease | None] = []

    def fence_old() -> int:
        with transaction(engine) as db:  # waits for the old version's batch in flight
            before.append(cps.get_lease(db, old_slot))
            until = time.time() + timeout + 30
            _hold_lease(db, old_slot, pause, until)
            if pr.rows(db, old_slot):  # partitioned: its workers stand by, each partition's
                return pr.take_all(db, old_slot, pause, until)  # checkpoint to be reached
            return cps.get_checkpoint(db, old_slot).last_sequence

    at = await asyncio.to_thread(fence_old)
    try:
        await _reach(projector, store, engine, new_slot, at, timeout, runner_options)
        await asyncio.to_thread(_swap, projector, engine, live, at, pause)
    except BaseException:

        def resume_old() -> None:
            was = before[0] if before else None
            kept = {"owner": cps.RELEASED, "expires_at": 0.0}
            if was is not None and was.expires_at >= pr.FOREVER:  # a partitioned version's
                kept = {"owner": was.owner, "expires_at": was.expires_at}  # hold for good
            with transaction(engine) as db:
                db.execute(
                    update(cps.leases)
                    .where(cps.leases.c.projector == old_slot, cps.leases.c.owner == pause)
                    .values(**kept)
                )
                pr.free_all(db, old_slot, pause)

        await asyncio.to_thread(resume_old)
        raise
    dropped = await asyncio.to_thread(finish_retired, engine, name)
    js = getattr(store, "js", None)
    if js is not None:  # the retired version's durable consumer (transport only)
        from eventkit.runtime.pulling import consumer_name

        with contextlib.suppress(Exception):
            await js.delete_consumer(store.stream, consumer_name(old_slot))
    return (
        f"{name!r}: version {version} is live in {projector.table.name} (both versions at "
        f"sequence {at} or later when it switched); version {live} retired"
        + (f" and {', '.join(dropped)} dropped" if dropped else "")
    )


async def _reach(
    projector: Projector,
    store: Any,
    engine: Engine,
    slot: str,
    target: int,
    timeout: float,
    runner_options: dict[str, Any],
) -> None:
    """Wait until ``slot``'s checkpoint is at ``target`` or later: its workers apply, or, when
    none holds its lease, a catch-up run here does."""
    from eventkit.projection.runner import ProjectionRunner

    deadline = time.monotonic() + timeout
    while True:
        with read_transaction(engine) as db:
            cp = cps.get_checkpoint(db, slot)
            reached, applying = _progress(db, slot)
        if cp.state == "halted":
            raise ProjectionError(
                f"version {projector.version} of {projector.name!r} halted while switching "
                f"({cp.last_error}); nothing was switched"
            )
        if reached >= target:
            return
        if time.monotonic() >= deadline:
            lag = await pending_after(store, projector.filters(store.stream), reached)
            raise ProjectionError(
                f"version {projector.version} of {projector.name!r} did not reach sequence "
                f"{target} within {timeout:g}s (at {reached}, {lag} events behind the "
                f"stream): nothing was switched, the live version serves on; run it, then switch"
            )
        if not applying:
            runner = ProjectionRunner(projector, store, engine, lease_wait=0, **runner_options)
            with contextlib.suppress(ProjectionError):  # a worker took the lease: it applies
                await runner.catch_up()
        else:
            await asyncio.sleep(0.05)


def _swap(projector: RowProjector, engine: Engine, live: int, at: int, pause: str) -> None:
    name, version = projector.name, projector.version
    new_slot, old_slot = slot_name(name, version), slot_name(name, live)
    table = type(projector).table
    build = copy_table(table, version)
    retired = reg.retired_name(table.name, live)
    with transaction(engine) as db:
        # both lease rows, in name order like every writer that locks several (no deadlock):
        # waits for a batch in flight of either version
        if db.get_bind().dialect.name == "postgresql":
            db.execute(
                select(cps.leases.c.projector)
                .where(cps.leases.c.projector.in_(sorted({new_slot, old_slot})))
                .order_by(cps.leases.c.projector)
                .with_for_update()
            )
        db.execute(
            update(cps.leases)
            .where(cps.leases.c.projector == new_slot)
            .values(expires_at=cps.leases.c.expires_at)
        )
        if not db.execute(
            update(cps.leases)
            .where(cps.leases.c.projector == old_slot, cps.leases.c.owner == pause)
            .values(owner=f"{reg.RETIRED_OWNER}: version {version} is live", expires_at=FOREVER)
        ).rowcount:  # type: ignore[attr-defined]
            raise ProjectionError(
                f"projector {name!r}: the fence on version {live} expired or was taken over "
                f"while switching; nothing was switched, switch again"
            )
        pr.free_all(db, old_slot, pause)  # its workers, asking for them again, find it retired
        if _lock_live(db, name) != live:
            raise ProjectionError(f"projector {name!r} switched meanwhile")
        cp = cps.get_checkpoint(db, new_slot)
        reached, _ = _progress(db, new_slot)
        if reached < at or cp.state == "halted":
            raise ProjectionError(
                f"version {version} of {name!r} is at {reached} ({cp.state}), not at "
                f"the fenced sequence {at}; nothing was switched"
            )
        quote = engine.dialect.identifier_preparer.quote
        db.execute(
            text(f"ALTER TABLE {quoted(db, table.name, table.schema)} RENAME TO {quote(retired)}")
        )
        db.execute(
            text(
                f"ALTER TABLE {quoted(db, build.name, build.schema)} RENAME TO {quote(table.name)}"
            )
        )
        db.execute(
            update(versions)
            .where(versions.c.projector == name)
            .values(live_version=version, updated_at=cps.utcnow())
        )
        reg.record(db, name, live, reg.RETIRED, retired, table.schema)
        reg.record(db, name, version, reg.LIVE, table.name, table.schema)


__all__ = ["SWITCH_TIMEOUT", "finish_retired", "forget_slot", "switch"]
