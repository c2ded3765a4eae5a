"""Blue/green through the console script: every command acts on the live version by the
projector's name (run, switch, skip), the internal checkpoint name never shows, an old
version's code is refused with what to deploy, and an abandoned build is listed and dropped."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from _script import eventkit, said  # type: ignore[import-not-found]

from eventkit.server import ServerProcess, start_server_process
from eventkit.store.jetstream import JetStreamEventStore

pytestmark = [pytest.mark.nats]

SERVICE = """
import os
from sqlalchemy import Column, Integer, MetaData, String, Table
from eventkit import App, Event, RowProjector, on

metadata = MetaData()
loans = Table("svc_loans", metadata, Column("id", String(40), primary_key=True),
              Column("total", Integer, nullable=False, default=0))


class Lent(Event):
    event_type = "svc.Lent"
    amount: int


class Loans(RowProjector):
    name = "loans"
    subjects = ["svc.loan.>"]
    table = loans
    version = int(os.environ.get("SVC_VERSION", "1"))
    max_retries = 0
    retry_backoff = 0.0

    @on(Lent)
    def lent(self, e, rec, row):
        if e.amount < 0:
            raise ValueError("a loan cannot be negative")
        row["total"] += e.amount * self.version


app = App(stream="svc", projectors=[Loans()])
"""


@pytest.fixture
def service(tmp_path: Path) -> Path:
    pkg = tmp_path / "svc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "app.py").write_text(textwrap.dedent(SERVICE))
    return tmp_path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = start_server_process(tmp_path / "nats")
    try:
        yield srv
    finally:
        srv.stop()


async def _lend(url: str, *amounts: int) -> None:
    from eventkit.domain.events import Event

    class Lent(Event):
        event_type = "svc.Lent"
        amount: int

    store = await JetStreamEventStore.connect(url, stream="svc")
    async with store:
        for a in amounts:
            await store.append("svc.loan.l-1", [Lent(amount=a)])


async def test_every_command_acts_on_the_live_version_by_its_name(
    service: Path, server: ServerProcess, tmp_path: Path
) -> None:
    db = tmp_path / "svc.db"
    env = {"EVENTKIT_NATS_URL": server.url, "EVENTKIT_DATABASE_URL": f"sqlite:///{db}"}

    def ek(version: int, *args: str) -> subprocess.CompletedProcess[str]:
        return eventkit(
            "--app",
            "svc.app:app",
            *args,
            cwd=service,
            home=tmp_path / "home",
            SVC_VERSION=str(version),
            **env,
        )

    assert ek(1, "db", "upgrade").returncode == 0
    with sqlite3.connect(db) as conn:
        conn.execute("create table svc_loans (id varchar(40) primary key, total integer not null)")
    await _lend(server.url, 1, 2, 3)
    assert ek(1, "run", "--once").returncode == 0
    built = ek(2, "run", "--once", "--json")
    assert built.returncode == 0, said(built)
    assert [r["projector"] for r in json.loads(built.stdout)] == ["loans"]
    switched = ek(2, "switch", "loans", "--yes")
    assert switched.returncode == 0 and "version 2 is live" in said(switched), said(switched)

    await _lend(server.url, -1, 4)
    halted = ek(2, "run", "--once")
    assert halted.returncode == 4 and "loans_v2" not in said(halted), said(halted)
    skipped = ek(2, "skip", "loans", "--seq", "4")
    assert skipped.returncode == 0, said(skipped)
    assert "loans (version 2)" in said(skipped) and "loans_v2" not in said(skipped)
    assert ek(2, "run", "--once").returncode == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("select total from svc_loans").fetchall() == [(20,)]

    old = ek(1, "run", "--once")
    assert old.returncode != 0 and "is retired: version 2 is live" in said(old), said(old)
    assert "deploy the code of version 2" in said(old)

    # a version 3 built (it halts at the bad event too), then abandoned: listed, and dropped
    # by the documented command
    assert ek(3, "run", "--once").returncode == 4
    listed = json.loads(ek(2, "versions", "list", "--json").stdout)
    assert [(v["version"], v["role"], v["table"]) for v in listed] == [
        (2, "live", "svc_loans"),
        (3, "building", "svc_loans_v3"),
    ]
    dropped = ek(2, "versions", "drop", "loans", "3", "--yes")
    assert dropped.returncode == 0, said(dropped)
    with sqlite3.connect(db) as conn:
        names = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert "svc_loans_v3" not in names and "svc_loans" in names
    refused = ek(2, "versions", "drop", "loans", "2", "--yes")
    assert refused.returncode != 0 and "is live" in said(refused)
