"""A newcomer's service through the installed console script against a real nats-server: what
`run --once` and `replay` count, tables in a pipe, a forgotten subject's history, info, dlq list
with a typo, db revision creating nothing, postgres:// URLs."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _script import SCRIPT, eventkit, said, user_env  # type: ignore[import-not-found]

from eventkit.domain.events import Event
from eventkit.server import ServerProcess, start_server_process
from eventkit.store.jetstream import JetStreamEventStore

pytestmark = [pytest.mark.nats]

SERVICE = """
from sqlalchemy import Column, Integer, MetaData, String, Table, delete, insert
from eventkit import App, Event, Projector, Reactor, on

metadata = MetaData()
members = Table("fh_members", metadata, Column("seq", Integer, primary_key=True),
                Column("member", String(50)), Column("subject", String(200)))


class Joined(Event):
    event_type = "fh.Joined"
    member: str


class Noise(Event):
    event_type = "fh.Noise"
    x: int


class Members(Projector):
    name = "members"
    metadata = metadata
    subjects = ["fh.member.>"]

    @on(Joined)
    def joined(self, e, rec, db):
        db.execute(insert(members).values(seq=rec.sequence, member=e.member, subject=rec.subject))

    def forget(self, subject, db):
        db.execute(delete(members).where(members.c.subject == subject))

    def reset(self, db):
        db.execute(delete(members))


class Picky(Projector):
    name = "picky"
    subjects = ["fh.member.>"]
    on_error = "park"
    max_retries = 0
    retry_backoff = 0.0

    @on(Joined)
    def joined(self, e, rec, db):
        if e.member == "poison":
            raise ValueError("no poison")


class Greeter(Reactor):
    name = "greeter"
    subjects = ["fh.member.>"]

    @on(Joined)
    async def greet(self, e, rec, ctx):
        pass


app = App(stream="fh", projectors=[Members(), Picky()], reactors=[Greeter()],
          migrations="fh:migrations")
"""


class Joined(Event):
    event_type = "fh.Joined"
    member: str


class Noise(Event):
    event_type = "fh.Noise"
    x: int


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = start_server_process(tmp_path / "nats")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def service(tmp_path: Path) -> Path:
    pkg = tmp_path / "fh"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "app.py").write_text(textwrap.dedent(SERVICE))
    return tmp_path


async def append(url: str, *writes: tuple[str, Event]) -> None:
    store = await JetStreamEventStore.connect(url, stream="fh")
    async with store:
        for subject, event in writes:
            await store.append(subject, [event])


def test_a_newcomers_service_end_to_end(
    service: Path, server: ServerProcess, tmp_path: Path
) -> None:
    db = tmp_path / "fh.db"
    env = {"EVENTKIT_NATS_URL": server.url, "EVENTKIT_DATABASE_URL": f"sqlite:///{db}"}
    home = tmp_path / "home"

    def ek(*args: str) -> subprocess.CompletedProcess[str]:
        return eventkit("--app", "fh.app:app", *args, home=home, cwd=service, **env)

    # db revision --autogenerate creates nothing: only db upgrade does (as the README says)
    assert ek("db", "init").returncode == 0
    rev = ek("db", "revision", "-m", "members", "--autogenerate")
    assert rev.returncode == 0, said(rev)
    (script,) = (service / "fh" / "migrations" / "versions").glob("*.py")
    assert "fh_members" in script.read_text()
    assert not db.exists(), "db revision created the SQLite file"
    assert ek("db", "upgrade").returncode == 0 and db.exists()

    asyncio.run(
        append(
            server.url,
            ("fh.member.m-1", Joined(member="ada")),
            ("fh.member.m-2", Joined(member="bob")),
            ("fh.member.m-2", Noise(x=1)),
            ("fh.member.m-3", Joined(member="poison")),
        )
    )
    first = ek("run", "--once", "--json")
    assert first.returncode == 0, said(first)
    done = {r["name"]: r for r in json.loads(first.stdout)}
    members, picky = done["members"], done["picky"]
    assert (members["kind"], members["applied"], members["passed_over"]) == ("projector", 3, 1)
    assert (picky["applied"], picky["passed_over"], picky["parked"]) == (2, 1, 1)
    assert done["greeter"]["kind"] == "reactor"

    # forget: the marker and the notice are eventkit's own messages, never counted as applied
    gone = ek("forget", "fh.member.m-1", "--yes")
    assert gone.returncode == 0, said(gone)
    asyncio.run(append(server.url, ("fh.member.m-4", Joined(member="cy"))))
    second = ek("run", "members", "--once")
    assert second.returncode == 0, said(second)
    assert "passed over" in said(second) and "parked" in said(second)  # the table's columns
    third = ek("run", "members", "--once", "--json")
    assert json.loads(third.stdout)[0]["applied"] == 0  # nothing new since the table run
    asyncio.run(append(server.url, ("fh.member.m-5", Joined(member="dee"))))
    (last,) = json.loads(ek("run", "members", "--once", "--json").stdout)
    assert last["applied"] == 1 and last["passed_over"] == 0, last
    replayed = ek("replay", "members", "--from-start", "--yes")
    assert replayed.returncode == 0, said(replayed)
    # bob, poison, cy, dee (m-1's event is erased); the noise, the marker and the notice are
    # passed over
    assert "applied 4 events" in said(replayed)
    assert "passed over 3 messages" in said(replayed)

    # the history of a forgotten subject says so
    history = ek("events", "fh.member.m-1")
    assert history.returncode == 0, said(history)
    assert "fh.member.m-1 was forgotten at" in said(history)
    assert "erasure marker at sequence" in said(history)
    assert "another service" not in said(history) and "foreign_events" not in said(history)
    lines = [json.loads(x) for x in ek("events", "fh.member.m-1", "--json").stdout.splitlines()]
    assert [x.get("forgotten") for x in lines] == [True]

    # a table in a pipe keeps its width: no column cut to fit 80 characters
    piped_env = user_env(home, **env)
    piped_env.pop("COLUMNS")
    status = subprocess.run(
        [str(SCRIPT), "--app", "fh.app:app", "status"],
        capture_output=True,
        text=True,
        env=piped_env,
        cwd=service,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert "…" not in status.stdout, status.stdout
    assert max(len(line) for line in status.stdout.splitlines()) > 80, status.stdout
    assert "last error" in status.stdout and "passed over" in status.stdout

    # a replay refused for a held lease draws no progress bar first
    with sqlite3.connect(db) as conn:
        conn.execute(
            "update eventkit_leases set owner='worker-elsewhere', expires_at=? "
            "where projector='members'",
            (time.time() + 600,),
        )
    held = ek("replay", "members", "--from-start", "--yes")
    assert held.returncode != 0 and "worker-elsewhere" in said(held), said(held)
    assert "0/" not in said(held) and "messages/s" not in said(held), said(held)

    # info lists the reactors; dlq list with a typo names reactors among the known names
    info = json.loads(ek("info", "--json").stdout)
    assert info["projectors"] == ["members", "picky"] and info["reactors"] == ["greeter"]
    typo = ek("dlq", "list", "greter")
    assert typo.returncode == 2 and "greeter" in said(typo) and "members" in said(typo)


def test_version_and_an_out_of_range_as_of(tmp_path: Path) -> None:
    shown = eventkit("--version", home=tmp_path)
    assert shown.returncode == 0 and shown.stdout.startswith("eventkit 0."), said(shown)
    far = eventkit(
        "--app",
        "samples.bank.app:app",
        "events",
        "bank.account.a-1",
        "--as-of",
        "9999999d",
        home=tmp_path,
    )
    assert far.returncode == 2 and "leave out --as-of" in said(far)
    assert "--from-start" not in said(far)  # events has no such option


def test_metrics_listen_on_loopback_by_default(tmp_path: Path) -> None:
    helped = eventkit("run", "--help", home=tmp_path)
    assert "[default: 127.0.0.1]" in said(helped), said(helped)


@pytest.mark.postgres
def test_a_postgres_url_is_postgresql(tmp_path: Path, pg_url: str) -> None:
    url = pg_url.replace("postgresql+psycopg://", "postgres://")
    assert url.startswith("postgres://")
    up = eventkit("--database-url", url, "db", "upgrade", home=tmp_path)
    assert up.returncode == 0, said(up)
    assert "eventkit tables at revision 0" in said(up)
    bare = eventkit(
        "--database-url",
        url.replace("postgres://", "postgresql://"),
        "db",
        "current",
        home=tmp_path,
    )
    assert bare.returncode == 0 and "not supported" not in said(bare), said(bare)
    assert os.listdir(tmp_path) == []  # nothing local was created
