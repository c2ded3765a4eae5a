"""What forget leaves in eventkit's own records: no recorded error quoting the person, no subject
in clear in the notice of an app without a master key (checked on disk while the server runs and
after it stopped), and two forgets of one subject at once both finish with the full count."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import test_gdpr_domain as d
from sqlalchemy import Column, MetaData, String, Table, delete, insert, select
from sqlalchemy.orm import Session

from eventkit.app import App
from eventkit.domain.events import Event
from eventkit.domain.handlers import on
from eventkit.gdpr import audit_entries, forget_subject
from eventkit.projection.checkpoints import checkpoints
from eventkit.projection.projector import Projector
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import make_engine, upgrade
from eventkit.projection.status import status
from eventkit.server import ServerProcess
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.records import RecordedEvent

pytestmark = [pytest.mark.nats]

STREAM = "gdprplain"
models = MetaData()
notes = Table(
    "gdpr_plain_notes",
    models,
    Column("subject", String(200), primary_key=True),
    Column("note", String(400)),
)


class PlainNoted(Event):
    event_type = "PlainNoted"
    note: str


class Picky(Projector):
    """Halts on a note it does not like, quoting the note in its error (as handlers do)."""

    name = "gdpr_picky"
    subjects = [f"{STREAM}.note.*"]

    @on(PlainNoted)
    def noted(self, e: PlainNoted, rec: RecordedEvent[Any], db: Session) -> None:
        if e.note.startswith("BAD"):
            raise ValueError(f"cannot file the note {e.note!r}")
        db.execute(insert(notes).values(subject=rec.subject, note=e.note))

    def forget(self, subject: str, db: Session) -> None:
        db.execute(delete(notes).where(notes.c.subject == subject))


plain_app = App(stream=STREAM, projectors=[Picky()])  # no personal data, no master key


async def test_forget_leaves_the_person_in_no_error_notice_or_file(
    server: ServerProcess, tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'read.db'}")
    upgrade(engine)
    models.create_all(engine)
    store = await JetStreamEventStore.connect(server.url, stream=STREAM)
    data = f"MRK{uuid.uuid4().hex[:12]}"
    subject = f"{STREAM}.note.{uuid.uuid4().hex}"
    await store.append(subject, [PlainNoted(note=f"hello {data}")])
    await store.append(subject, [PlainNoted(note=f"BAD {data}")])
    result = await ProjectionRunner(Picky(), store, engine).catch_up()
    assert result.halted
    with engine.connect() as conn:
        error = conn.execute(select(checkpoints.c.last_error)).scalar_one()
    assert data in error  # the scan works: the halted projector quotes the person

    report = await forget_subject(plain_app, store, engine, subject)
    assert report.messages == 2 and report.notice_sequence is not None

    with engine.connect() as conn:
        error = conn.execute(select(checkpoints.c.last_error)).scalar_one()
    assert data not in error and subject not in error and "forgotten subject" in error
    shown = await status(plain_app.projectors, store, engine)
    assert data not in repr(shown) and subject not in repr(shown)
    notice = await store.get(report.notice_sequence)
    assert notice is not None
    assert subject.encode() not in notice.data and data.encode() not in notice.data
    # on disk while the server still runs, then after it stopped: the data nowhere
    db_files = [tmp_path / "read.db", tmp_path / "read.db-wal"]
    for f in db_files:
        assert not f.exists() or data.encode() not in f.read_bytes()
    assert d.files_containing(Path(server.store_dir), data.encode()) == []
    await store.close()
    engine.dispose()
    server.stop()
    assert d.files_containing(Path(server.store_dir), data.encode()) == []
    for f in db_files:
        assert not f.exists() or data.encode() not in f.read_bytes()


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_two_forgets_of_one_subject_at_once_both_finish(
    server: ServerProcess, tmp_path: Path, database: str
) -> None:
    url = f"sqlite:///{tmp_path / 'read.db'}" if database == "sqlite" else d.POSTGRES_URL
    engine = d.prepare_db(url)
    one, two = await d.connect(server.url), await d.connect(server.url)
    subject = f"{d.STREAM}.account.{uuid.uuid4().hex}"
    for _ in range(30):
        await one.append(subject, [d.GdprAccountNoted(note="n") for _ in range(100)])
    reports = await asyncio.gather(
        forget_subject(d.app, one, engine, subject),
        forget_subject(d.app, two, engine, subject),
    )
    left = [m async for m in one.read_raw(subject)]
    assert len(left) == 1  # the erasure marker only
    counts = [a["messages_erased"] for a in audit_entries(engine, d.STREAM)]
    assert counts and all(c == 3000 for c in counts)
    assert all(r.marker_sequence == left[0].sequence for r in reports)
    await one.close()
    await two.close()
    engine.dispose()
