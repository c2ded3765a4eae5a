"""A forget in one service reaches the projectors of another service through the system event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_gdpr_domain as d
from sqlalchemy import Column, MetaData, String, Table, delete, insert, select
from sqlalchemy.orm import Session

from eventkit.app import App
from eventkit.domain.handlers import on
from eventkit.gdpr import forget_subject
from eventkit.projection.projector import Projector
from eventkit.projection.runner import run_projectors
from eventkit.projection.sql import make_engine, upgrade
from eventkit.server import ServerProcess
from eventkit.store.records import RecordedEvent

pytestmark = [pytest.mark.nats]

other_models = MetaData()
mailing = Table(
    "gdpr_test_mailing",
    other_models,
    Column("subject", String(200), primary_key=True),
    Column("name", String(400), nullable=False),
)


class Mailing(Projector):
    """Another service's read model of the same customers."""

    name = "gdpr_mailing"
    subjects = [f"{d.STREAM}.customer.>"]

    @on(d.GdprCustomerRegistered)
    def registered(self, e: d.GdprCustomerRegistered, rec: RecordedEvent[Any], db: Session) -> None:
        db.execute(insert(mailing).values(subject=rec.subject, name=e.name))

    def forget(self, subject: str, db: Session) -> None:
        db.execute(delete(mailing).where(mailing.c.subject == subject))


other_service = App(stream=d.STREAM, aggregates=[d.GdprCustomer], projectors=[Mailing()])


async def test_forget_notice_makes_another_services_projector_forget(
    server: ServerProcess, tmp_path: Path
) -> None:
    store = await d.app.connect(d.settings(server.url))
    other_store = await other_service.connect(d.settings(server.url))
    ours = d.prepare_db(f"sqlite:///{tmp_path / 'ours.db'}")
    theirs = make_engine(f"sqlite:///{tmp_path / 'theirs.db'}")
    upgrade(theirs)
    other_models.create_all(theirs)
    try:
        gone, kept = f"{d.STREAM}.customer.c-1", f"{d.STREAM}.customer.c-2"
        await store.append(gone, [d.GdprCustomerRegistered(name="Ada")])
        await store.append(kept, [d.GdprCustomerRegistered(name="Grace")])
        await run_projectors(other_service, other_store, theirs, once=True)
        with Session(theirs) as db:
            assert sorted(db.scalars(select(mailing.c.name))) == ["Ada", "Grace"]

        report = await forget_subject(d.app, store, ours, gone)
        assert report.notice_sequence is not None

        (result,) = await run_projectors(other_service, other_store, theirs, once=True)
        assert result.checkpoint == report.notice_sequence
        with Session(theirs) as db:
            assert list(db.execute(select(mailing.c.subject, mailing.c.name))) == [(kept, "Grace")]
    finally:
        await other_store.close()
        await store.close()
        ours.dispose()
        theirs.dispose()
