"""Shared domain and helpers of the GDPR integration tests (no tests here).

A personal-data aggregate (GdprCustomer, encrypted), a plain one (GdprAccount), a projector that
keeps names (with forget) and one that only counts (without forget, to be named in reports).
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, delete, select, text
from sqlalchemy.orm import Session

from eventkit.app import App
from eventkit.config import Settings
from eventkit.domain.aggregate import Aggregate
from eventkit.domain.events import Event
from eventkit.domain.handlers import on
from eventkit.projection.projector import Projector
from eventkit.projection.sql import make_engine, upgrade
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.records import RecordedEvent

MASTER_KEY = base64.b64decode("q3J0S1ZlcnlTZWNyZXRNYXN0ZXJLZXlGb3JUZXN0cyE=")
assert len(MASTER_KEY) == 32
MASTER_KEY_B64 = base64.b64encode(MASTER_KEY).decode()
STREAM = "gdprt"
POSTGRES_URL = os.environ.get(
    "EVENTKIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

read_models = MetaData()
names = Table(
    "gdpr_test_names",
    read_models,
    Column("subject", String(200), primary_key=True),
    Column("name", String(400), nullable=False),
)
counts = Table(
    "gdpr_test_counts",
    read_models,
    Column("event_type", String(100), primary_key=True),
    Column("n", Integer, nullable=False),
)


class GdprCustomerRegistered(Event):
    name: str


class GdprCustomerRenamed(Event):
    name: str


class GdprAccountNoted(Event):
    note: str


class GdprCustomer(Aggregate):
    personal_data = True
    aggregate_type = "customer"


class GdprAccount(Aggregate):
    aggregate_type = "account"


class Names(Projector):
    name = "gdpr_names"
    subjects = [f"{STREAM}.customer.*", f"{STREAM}.account.*"]

    @on(GdprCustomerRegistered)
    def registered(self, e: GdprCustomerRegistered, rec: RecordedEvent[Any], db: Session) -> None:
        db.execute(delete(names).where(names.c.subject == rec.subject))
        db.execute(names.insert().values(subject=rec.subject, name=e.name))

    @on(GdprCustomerRenamed)
    def renamed(self, e: GdprCustomerRenamed, rec: RecordedEvent[Any], db: Session) -> None:
        db.execute(names.update().where(names.c.subject == rec.subject).values(name=e.name))

    @on(GdprAccountNoted)
    def noted(self, e: GdprAccountNoted, rec: RecordedEvent[Any], db: Session) -> None:
        db.execute(delete(names).where(names.c.subject == rec.subject))
        db.execute(names.insert().values(subject=rec.subject, name=e.note))

    def forget(self, subject: str, db: Session) -> None:
        db.execute(delete(names).where(names.c.subject == subject))

    def reset(self, db: Session) -> None:
        db.execute(delete(names))


class Counts(Projector):
    """Keeps no personal data, and has no forget(): reports must name it."""

    name = "gdpr_counts"

    @on(GdprCustomerRegistered)
    def registered(self, e: GdprCustomerRegistered, rec: RecordedEvent[Any], db: Session) -> None:
        _bump(db, "registered")

    @on(GdprAccountNoted)
    def noted(self, e: GdprAccountNoted, rec: RecordedEvent[Any], db: Session) -> None:
        _bump(db, "noted")


def _bump(db: Session, kind: str) -> None:
    row = db.execute(select(counts.c.n).where(counts.c.event_type == kind)).first()
    if row is None:
        db.execute(counts.insert().values(event_type=kind, n=1))
    else:
        db.execute(counts.update().where(counts.c.event_type == kind).values(n=row[0] + 1))


app = App(
    stream=STREAM,
    aggregates=[GdprCustomer, GdprAccount],
    projectors=[Names(), Counts()],
)


def settings(url: str, database_url: str | None = None) -> Settings:
    return Settings(nats_urls=(url,), master_key=MASTER_KEY, database_url=database_url)


async def connect(url: str) -> JetStreamEventStore:
    return await app.connect(settings(url))


def prepare_db(url: str) -> Engine:
    """A clean database: eventkit's tables by migration, the read models, nothing else."""
    if url.startswith("postgresql"):
        # a database of our own, so other suites sharing the server are never touched
        admin = make_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if (
                conn.exec_driver_sql(
                    "SELECT 1 FROM pg_database WHERE datname = 'eventkit_gdpr_tests'"
                ).first()
                is None
            ):
                conn.exec_driver_sql("CREATE DATABASE eventkit_gdpr_tests")
        admin.dispose()
        url = url.rsplit("/", 1)[0] + "/eventkit_gdpr_tests"
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    else:
        engine = make_engine(url)
    upgrade(engine)
    read_models.create_all(engine)
    return engine


async def project(store: JetStreamEventStore, engine: Engine) -> int:
    """Apply the whole stream to every projector (what the runner does), with checkpoints."""
    last = 0
    recs = [r async for r in store.read_all()]
    with Session(engine) as db, db.begin():
        for rec in recs:
            for p in app.projectors:
                if p.handles(rec.event_type):
                    p.apply(rec, db)
            last = rec.sequence
        for p in app.projectors:
            db.execute(
                text(
                    "INSERT INTO eventkit_checkpoints "
                    "(projector, last_sequence, updated_at, state) "
                    "VALUES (:p, :s, CURRENT_TIMESTAMP, 'running')"
                ),
                {"p": p.name, "s": last},
            )
    return last


def files_containing(root: Path, needle: bytes) -> list[str]:
    """Every file under ``root`` whose bytes contain ``needle``."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            hits.append(str(path.relative_to(root)))
    return hits


@contextmanager
def env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def copy_tree(src: Path, dst: Path, *, skip: str | None = None) -> None:
    shutil.copytree(
        src, dst, ignore=(lambda d, names: [n for n in names if n == skip]) if skip else None
    )
