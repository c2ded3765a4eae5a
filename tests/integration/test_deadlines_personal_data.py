"""Reactor deadlines about a person, on a real nats-server with a master key: sealed under the
person's data key (nothing readable on disk), erased by ``forget`` whether pending or already
fired, never handled after ``forget`` returned; a deadline event of a ``personal_data`` class
can be scheduled from any subject."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio
from sqlalchemy import Engine

from eventkit import Aggregate, Event, RecordedEvent, on
from eventkit.app import App
from eventkit.config import Settings
from eventkit.gdpr import forget_subject
from eventkit.projection.sql import make_engine, upgrade
from eventkit.reaction import Reactor, ReactorContext, ReactorRunner
from eventkit.reaction.schedule import DUE_SUBJECT, due_subject
from eventkit.server import ServerProcess, start_server_process
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.wire_constants import ENCRYPTION

pytestmark = [pytest.mark.nats, pytest.mark.slow]

MASTER_KEY = bytes(range(32))


class DlRegistered(Event):
    email: str


class DlSignedUp(Event):
    email: str


class DlWelcomeDue(Event):
    email: str


class DlConsentDue(Event):
    personal_data = True
    email: str


class DlCustomer(Aggregate):
    personal_data = True
    aggregate_type = "customer"


class Welcome(Reactor):
    name = "welcome"
    delay: ClassVar[float] = 3.0
    received: ClassVar[list[tuple[str, str]]] = []

    @on(DlRegistered)
    async def registered(
        self, e: DlRegistered, rec: RecordedEvent[Any], ctx: ReactorContext
    ) -> None:
        await ctx.schedule(DlWelcomeDue(email=e.email), after=timedelta(seconds=Welcome.delay))

    @on(DlSignedUp)
    async def signed_up(self, e: DlSignedUp, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        await ctx.schedule(DlConsentDue(email=e.email), after=timedelta(seconds=Welcome.delay))

    @on(DlWelcomeDue)
    async def welcome(self, e: DlWelcomeDue, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        Welcome.received.append((rec.subject, e.email))

    @on(DlConsentDue)
    async def consent(self, e: DlConsentDue, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        Welcome.received.append((rec.subject, e.email))


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(f) for f in root.rglob("*") if f.is_file() and needle in f.read_bytes()]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = start_server_process(tmp_path / "store")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def app() -> App:
    Welcome.received.clear()
    Welcome.delay = 3.0
    return App(stream=f"dl{uuid.uuid4().hex[:8]}", aggregates=[DlCustomer], reactors=[Welcome()])


@pytest_asyncio.fixture
async def store(server: ServerProcess, app: App) -> AsyncIterator[JetStreamEventStore]:
    s = await app.connect(Settings(nats_urls=(server.url,), master_key=MASTER_KEY))
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = make_engine(f"sqlite:///{tmp_path / 'read.db'}")
    upgrade(e)
    yield e
    e.dispose()


async def raw(store: JetStreamEventStore, pattern: str) -> list[Any]:
    return [m async for m in store.read_raw(pattern)]


async def wait_until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_pending_deadline_about_a_person_is_sealed_and_erased_by_forget(
    server: ServerProcess, app: App, store: JetStreamEventStore, engine: Engine
) -> None:
    email = f"ada-{uuid.uuid4().hex[:10]}@example.com"
    person = f"{app.stream}.customer.{uuid.uuid4().hex}"
    await store.append(person, [DlRegistered(email=email)])
    runner = ReactorRunner(Welcome(), store)
    task = asyncio.create_task(runner.run())
    try:
        pending = f"{app.stream}._eventkit.schedule.>"
        await wait_until(lambda: _nonempty(store, pending))
        (schedule,) = await raw(store, pending)
        assert ENCRYPTION in schedule.headers and email.encode() not in schedule.data
        report = await forget_subject(app, store, engine, person)
        assert report.deadlines == 1
        assert await raw(store, pending) == []
        await asyncio.sleep(Welcome.delay + 1.5)  # past the due time
        assert Welcome.received == []  # never delivered after forget
    finally:
        runner.stop()
        await task
    server.stop()
    assert files_containing(server.store_dir, email.encode()) == []


async def test_a_fired_deadline_is_erased_by_forget_and_never_handled(
    app: App, store: JetStreamEventStore, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    Welcome.delay = 0.2
    due = due_subject(app.stream, "welcome")
    people = [f"{app.stream}.customer.{uuid.uuid4().hex}" for _ in range(2)]
    for person in people:
        await store.append(person, [DlRegistered(email=f"{person[-6:]}@example.com")])
    await ReactorRunner(Welcome(), store).catch_up()  # schedules both; the worker stops
    await wait_until(lambda: _count(store, due, 2))  # both fired, no worker handled them
    # forget the first: its fired copy is erased
    report = await forget_subject(app, store, engine, people[0])
    assert report.deadlines == 1
    assert [m.headers[DUE_SUBJECT] for m in await raw(store, due)] == [people[1]]
    # forget the second, as if its copy had fired after forget looked: the worker passes it over
    # (and erases it) instead of handling it
    import eventkit.gdpr.forget as forgetting

    async def too_late(store: Any, subject: str) -> int:
        return 0

    monkeypatch.setattr(forgetting, "erase_deadlines", too_late)
    await forget_subject(app, store, engine, people[1])
    assert len(await raw(store, due)) == 1
    await ReactorRunner(Welcome(), store).catch_up()
    assert Welcome.received == []
    assert await raw(store, due) == []


async def test_a_personal_data_deadline_is_scheduled_sealed_and_delivered(
    app: App, store: JetStreamEventStore
) -> None:
    Welcome.delay = 0.3
    email = f"grace-{uuid.uuid4().hex[:10]}@example.com"
    signup = f"{app.stream}.signup.{uuid.uuid4().hex}"  # not a personal subject
    await store.append(signup, [DlSignedUp(email=email)])
    runner = ReactorRunner(Welcome(), store)
    task = asyncio.create_task(runner.run())
    try:
        await wait_until(lambda: _received(1))
    finally:
        runner.stop()
        await task
    assert Welcome.received == [(signup, email)]  # the deadline's subject: the one it is about
    (fired,) = await raw(store, due_subject(app.stream, "welcome"))
    assert ENCRYPTION in fired.headers and email.encode() not in fired.data


async def _nonempty(store: JetStreamEventStore, pattern: str) -> bool:
    return bool(await raw(store, pattern))


async def _count(store: JetStreamEventStore, pattern: str, n: int) -> bool:
    return len(await raw(store, pattern)) >= n


async def _received(n: int) -> bool:
    return len(Welcome.received) >= n
