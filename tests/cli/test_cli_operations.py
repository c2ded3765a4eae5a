"""Operating a service through the installed console script against a real nats-server: halted
projectors (status exit 4, skip), the App's own migrations (db init / revision), forget's
confirmation, JSON conventions, --as-of, and the server's foreground log."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from _script import ROOT, SCRIPT, eventkit, said, user_env  # type: ignore[import-not-found]

from eventkit.server import ServerProcess, free_port, start_server_process
from eventkit.store.jetstream import JetStreamEventStore

pytestmark = [pytest.mark.nats]

SERVICE = """
from sqlalchemy import Column, Integer, MetaData, String, Table, insert
from eventkit import App, Event, Projector, on

metadata = MetaData()
notes = Table("svc_notes", metadata, Column("seq", Integer, primary_key=True),
              Column("text", String(50)))


class Noted(Event):
    event_type = "svc.Noted"
    text: str


class Notes(Projector):
    name = "notes"
    metadata = metadata
    retry_backoff = 0.0

    @on(Noted)
    def noted(self, e, rec, db):
        if e.text == "poison":
            raise ValueError("cannot take poison")
        db.execute(insert(notes).values(seq=rec.sequence, text=e.text))


app = App(stream="svc", projectors=[Notes()], migrations="svc:migrations")
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


async def _note(url: str, *texts: str) -> None:
    import sys

    sys.path.insert(0, "")
    from eventkit.domain.events import Event

    class Noted(Event):  # the wire type of the service's event
        event_type = "svc.Noted"
        text: str

    store = await JetStreamEventStore.connect(url, stream="svc")
    async with store:
        for t in texts:
            await store.append("svc.note.n-1", [Noted(text=t)])


async def test_db_init_revision_upgrade_halt_status_and_skip(
    service: Path, server: ServerProcess, tmp_path: Path
) -> None:
    db = tmp_path / "svc.db"
    opts = {"cwd": service, "home": tmp_path / "home"}
    env = {"EVENTKIT_NATS_URL": server.url, "EVENTKIT_DATABASE_URL": f"sqlite:///{db}"}

    def ek(*args: str) -> subprocess.CompletedProcess[str]:
        return eventkit("--app", "svc.app:app", *args, **opts, **env)  # type: ignore[arg-type]

    made = ek("db", "init")
    assert made.returncode == 0, said(made)
    assert (service / "svc" / "migrations" / "env.py").is_file()
    assert ek("db", "init").returncode == 2  # an existing tree is left alone
    rev = ek("db", "revision", "-m", "notes table", "--autogenerate")
    assert rev.returncode == 0, said(rev)
    (script,) = (service / "svc" / "migrations" / "versions").glob("*.py")
    assert "svc_notes" in script.read_text() and "create_table" in script.read_text()
    assert "drop_table('eventkit" not in script.read_text()  # eventkit's tables are not the App's
    up = ek("db", "upgrade")
    revision = re.search(r"app tables at revision (\w+)", said(up))
    assert up.returncode == 0 and revision and revision.group(1) in script.name, said(up)
    assert "app tables at revision " + revision.group(1) in said(ek("db", "current"))
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master")}
    assert {"svc_notes", "svc_alembic_version", "eventkit_alembic_version"} <= tables

    await _note(server.url, "one", "poison", "three")
    halted = ek("run", "--once")
    assert halted.returncode == 4, said(halted)
    status = ek("status")
    assert status.returncode == 4 and "halted" in said(status), said(status)
    rows = json.loads(ek("status", "--json").stdout)
    assert rows[0]["state"] == "halted" and rows[0]["checkpoint"] == 1
    assert rows[0]["lag_events"] == 2

    wrong = ek("skip", "notes", "--seq", "3")
    assert wrong.returncode == 2 and "--seq 2" in said(wrong), said(wrong)
    skipped = ek("skip", "notes", "--seq", "2")
    assert skipped.returncode == 0, said(skipped)
    letters = json.loads(ek("dlq", "list", "--json").stdout)
    assert [(d["sequence"], d["name"], d["kind"]) for d in letters] == [(2, "notes", "projector")]
    assert "skipped by `eventkit skip`" in letters[0]["error"]
    assert "cannot take poison" in letters[0]["error"]
    assert ek("run", "--once").returncode == 0
    after = ek("status", "--json")
    rows = json.loads(after.stdout)
    assert after.returncode == 0 and rows[0]["checkpoint"] == 3
    assert rows[0]["state"] == "stopped" and rows[0]["owner"] is None  # nothing runs it now
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("select text from svc_notes order by seq")] == [
            "one",
            "three",
        ]
    assert ek("skip", "notes", "--seq", "3").returncode == 2  # not halted: refused


def test_run_before_db_upgrade_starts_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    result = eventkit(
        "--app",
        "samples.bank.app:app",
        "run",
        "--once",
        home=home,
        EVENTKIT_DATABASE_URL=f"sqlite:///{db}",
    )
    assert result.returncode == 2 and "eventkit db upgrade" in said(result), said(result)
    assert not (home / "master.key").exists() and not (home / "server.json").exists()


@pytest.fixture
def toured(tmp_path: Path) -> Iterator[Path]:
    """A home after one bank tour (the embedded server keeps running; stopped afterwards)."""
    home = tmp_path / "home"
    env = user_env(home)
    env["PYTHONPATH"] = str(ROOT)
    try:
        proc = subprocess.run(
            [str(Path(SCRIPT).parent / "python"), "-m", "samples.bank"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield home
    finally:
        eventkit("server", "stop", home=home)


@pytest.mark.slow
def test_after_the_tour(toured: Path) -> None:
    app = ("--app", "samples.bank.app:app")

    def ek(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return eventkit(*app, *args, home=toured, stdin=stdin)

    status = ek("status")
    assert status.returncode == 0, said(status)
    assert " running " not in said(status) and "stopped" in said(status)

    info = json.loads(ek("info", "--json").stdout)
    assert isinstance(info["subjects_count"], int) and info["subjects_count"] > 5

    # events --json: JSON Lines, one compact object per line
    assert isinstance(json.loads(ek("status", "--json").stdout), list)  # one document
    history = ek("events", "bank.account.>", "--json")
    assert history.returncode == 2  # a wildcard is not an entity
    subject = _a_subject(toured)
    lines = ek("events", subject, "--json").stdout.splitlines()
    assert len(lines) >= 2 and all(json.loads(line)["sequence"] for line in lines)
    first_time = json.loads(lines[0])["time"]
    as_of = ek("events", subject, "--json", "--as-of", first_time).stdout.splitlines()
    assert [json.loads(x)["sequence"] for x in as_of] == [json.loads(lines[0])["sequence"]]
    assert ek("events", subject, "--json", "--as-of", "1d").stdout.strip() == ""

    # replay --help: every example runs as written
    helptext = ek("replay", "--help").stdout
    examples = re.findall(r"eventkit --app samples\.bank\.app:app (replay .+)", helptext)
    assert len(examples) >= 2
    for example in examples:
        done = ek(*example.split())
        assert done.returncode == 0, (example, said(done))
        assert "checkpoint" in said(done) and "- events/s" not in said(done)
        # the replay reads what `run` reads (system events too): its checkpoint never goes back
        before = int(re.search(r"checkpoint now (\d+)", said(done)).group(1))  # type: ignore[union-attr]
        after = int(re.search(r"; checkpoint (\d+)", said(done)).group(1))  # type: ignore[union-attr]
        assert after >= before, said(done)

    # forget: a never-seen subject is not a forgotten one; a real one asks first
    typo = ek("forget", "bank.customer.no-such-one")
    assert typo.returncode == 1 and "was never stored" in said(typo), said(typo)
    asked = ek("forget", subject, stdin="n\n")
    assert asked.returncode == 1 and "nothing erased" in said(asked), said(asked)
    assert len(ek("events", subject, "--json").stdout.splitlines()) == len(lines)
    gone = ek("forget", subject, "--yes")
    assert gone.returncode == 0, said(gone)
    again = ek("forget", subject, "--yes")
    assert again.returncode == 0 and "forgotten already" in said(again), said(again)

    pattern = ek("forget", "bank.account.*", "--pattern", "--dry-run")
    assert pattern.returncode == 0, said(pattern)
    assert pattern.stdout.count("eventkit cannot erase") == 1
    assert pattern.stdout.count("dry run:") > 1


def _a_subject(home: Path) -> str:
    """An account subject of the tour, from its read model."""
    with sqlite3.connect(home / "eventkit.db") as conn:
        (account,) = conn.execute("select account_id from bank_balances limit 1").fetchone()
    return f"bank.account.{account}"


def test_server_run_logs_to_stdout(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(SCRIPT), "server", "run", "--port", str(free_port())],
        env=user_env(tmp_path / "home"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "Server is ready" in line:
                break
        assert any("Server is ready" in s for s in seen), "".join(seen)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert not (tmp_path / "home" / "nats-server.log").exists()
