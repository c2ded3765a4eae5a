"""A read model that counts how often each stream sequence was applied (to catch doubles)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, func, select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.orm import Session

from eventkit.domain.handlers import on
from eventkit.projection.projector import Projector
from eventkit.projection.sql import make_engine, read_transaction, upgrade
from eventkit.store.records import RecordedEvent

from ._domain import RelAdded

metadata = MetaData()
totals = Table(
    "rel_totals", metadata, Column("subject", String, primary_key=True), Column("total", Integer)
)
applications = Table(
    "rel_applications", metadata, Column("seq", Integer, primary_key=True), Column("n", Integer)
)


class Totals(Projector):
    """Total per subject, and one row per applied sequence with how often it was applied."""

    name = "rel_totals"
    idempotent = False
    handler_delay = 0.0

    @on(RelAdded)
    def added(self, e: RelAdded, rec: RecordedEvent[Any], db: Session) -> None:
        if self.handler_delay:
            time.sleep(self.handler_delay)
        db.execute(
            insert(totals)
            .values(subject=rec.subject, total=e.amount)
            .on_conflict_do_update(
                index_elements=["subject"], set_={"total": totals.c.total + e.amount}
            )
        )
        db.execute(
            insert(applications)
            .values(seq=rec.sequence, n=1)
            .on_conflict_do_update(index_elements=["seq"], set_={"n": applications.c.n + 1})
        )

    def reset(self, db: Session) -> None:
        db.execute(totals.delete())
        db.execute(applications.delete())


def totals_projector(delay: float = 0.0) -> Totals:
    """A fresh Totals subclass with its own consumer name (projector names are class-level)."""
    name = f"rel_totals_{uuid.uuid4().hex[:8]}"
    cls: type[Totals] = type(f"Totals_{name}", (Totals,), {"handler_delay": delay, "name": name})
    return cls()


def sqlite_engine(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    metadata.create_all(engine)
    return engine


def read_model(engine: Engine) -> tuple[dict[str, int], dict[int, int]]:
    with read_transaction(engine) as db:
        t = {r.subject: r.total for r in db.execute(select(totals))}
        a = {r.seq: r.n for r in db.execute(select(applications))}
    return t, a


def applied_count(engine: Engine) -> int:
    with read_transaction(engine) as db:
        return int(db.execute(select(func.count()).select_from(applications)).scalar_one())
