"""GDPR forget against a real nats-server (from the wheel) and real SQLite / PostgreSQL files."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import test_gdpr_domain as d
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from eventkit.cli.main import app as cli
from eventkit.errors import ForgottenError
from eventkit.gdpr import audit_entries, decode_notice, forget_message, forget_subject
from eventkit.gdpr import tables as t
from eventkit.server import ServerProcess, start_server_process
from eventkit.store.erasure import is_marker
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.snapshots import Snapshot

pytestmark = [pytest.mark.nats, pytest.mark.slow]


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'read.db'}"
    return d.POSTGRES_URL


async def _seed(store: JetStreamEventStore, marker: str) -> dict[str, str]:
    """Customer c-1 (personal, encrypted), customer c-2, account with the marker in clear."""
    s = {
        "c1": f"{d.STREAM}.customer.c-1",
        "c2": f"{d.STREAM}.customer.c-2",
        "a1": f"{d.STREAM}.account.{uuid.uuid4().hex}",  # an opaque id, as subject tokens must be
        "a2": f"{d.STREAM}.account.keep",
    }
    await store.append(s["c1"], [d.GdprCustomerRegistered(name=f"Ada {marker}")])
    for i in range(20):
        await store.append(s["c1"], [d.GdprCustomerRenamed(name=f"Ada {marker} #{i}")])
    await store.append(s["c2"], [d.GdprCustomerRegistered(name="Grace other")])
    await store.append(s["a1"], [d.GdprAccountNoted(note=f"plain {marker}") for _ in range(5)])
    await store.append(s["a2"], [d.GdprAccountNoted(note="kept note")])
    await store.snapshots.put(
        Snapshot(s["c1"], 21, "customer", 1, ["name"], {"name": f"Ada {marker}"})
    )
    await store.snapshots.put(
        Snapshot(s["a1"], 25, "account", 1, ["note"], {"note": f"plain {marker}"})
    )
    return s


async def _raw(store: JetStreamEventStore, subject: str) -> list[tuple[int, bytes, dict[str, str]]]:
    return [(m.sequence, m.data, m.headers) async for m in store.read_raw(subject)]


async def test_forget_leaves_no_byte_of_the_subject_on_disk_and_keeps_the_rest(
    server: ServerProcess, db_url: str
) -> None:
    marker = f"MRK{uuid.uuid4().hex[:12]}"
    engine = d.prepare_db(db_url)
    store = await d.connect(server.url)
    s = await _seed(store, marker)
    await d.project(store, engine)
    kept_before = {k: await _raw(store, s[k]) for k in ("c2", "a2")}
    assert _name_rows(engine, s["a1"]) == [f"plain {marker}"]
    # the scan works: the plain subject's marker is on disk before the forget
    assert d.files_containing(server.store_dir, marker.encode())

    report_a = await forget_subject(d.app, store, engine, s["a1"])
    report_c = await forget_subject(d.app, store, engine, s["c1"])
    # a plain subject has no key: only subjects with personal data get one
    assert (report_a.messages, report_a.snapshots) == (5, 1)
    assert report_a.key == "none"
    assert (report_c.messages, report_c.key) == (21, "shredded")
    assert report_c.snapshots == 1
    assert report_c.projectors == ["gdpr_names", "gdpr_counts"]
    assert report_c.projectors_without_forget == ["gdpr_counts"]
    assert report_c.notice_sequence is not None

    # everything else is still there, byte for byte; the forgotten subjects read as gone
    for k in ("c2", "a2"):
        assert await _raw(store, s[k]) == kept_before[k]
    # what stays of a forgotten subject in the stream: its erasure marker, holding no data
    for k, report in (("a1", report_a), ("c1", report_c)):
        left = await _raw(store, s[k])
        assert [(seq, data) for seq, data, _ in left] == [(report.marker_sequence, b"{}")]
        assert is_marker(left[0][2])
    assert await store.read(s["a1"]) == []
    assert await store.read(s["c1"]) == []
    assert await store.snapshots.get(s["c1"]) is None
    assert await store.snapshots.get(s["a1"]) is None
    assert [r.event.name for r in await store.read(s["c2"])] == ["Grace other"]
    with pytest.raises(ForgottenError):
        await store.append(s["c1"], [d.GdprCustomerRenamed(name="again")])
    # read_all passes over the system notice; the notice opens to the subject with the key
    seen = [r.subject async for r in store.read_all()]
    assert sorted(set(seen)) == sorted({s["c2"], s["a2"]})
    notice = await store.get(report_c.notice_sequence)
    assert notice is not None and s["c1"].encode() not in notice.data
    opened = decode_notice(notice, store.codec.cipher)
    assert opened is not None and opened.subject == s["c1"]

    # read models, audit
    assert _name_rows(engine, s["a1"]) == [] and _name_rows(engine, s["c1"]) == []
    assert _name_rows(engine, s["c2"]) == ["Grace other"]
    audit = audit_entries(engine, d.STREAM)
    assert [a["messages_erased"] for a in audit] == [5, 21]
    assert audit[1]["key_shredded"] is True and audit[1]["hmac_scheme"] == "hmac-sha256"
    flat = json.dumps(audit, default=str)
    assert "c-1" not in flat and marker.lower() not in flat and marker not in flat
    await store.close()
    engine.dispose()

    # on disk: not one occurrence of the data marker anywhere; the opaque subject token only
    # in the event stream (its erasure marker), never in the key or snapshot buckets or SQL
    server.stop()
    assert d.files_containing(server.store_dir, marker.encode()) == []
    token = s["a1"].rsplit(".", 1)[-1].encode()
    holding_token = d.files_containing(server.store_dir, token)
    assert holding_token and all(f"/streams/{d.STREAM}/" in f for f in holding_token)
    if db_url.startswith("sqlite"):
        db_dir = Path(db_url.removeprefix("sqlite:///")).parent
        assert d.files_containing(db_dir, marker.encode()) == []
        in_sql = [f for f in d.files_containing(db_dir, token) if "jetstream/" not in f]
        assert in_sql == []


def _name_rows(engine: Engine, subject: str) -> list[str]:
    with engine.connect() as conn:
        return [
            r[0] for r in conn.execute(select(d.names.c.name).where(d.names.c.subject == subject))
        ]


async def test_a_backup_of_the_event_stream_is_unreadable_for_the_forgotten_subject(
    server: ServerProcess, tmp_path: Path
) -> None:
    engine = d.prepare_db(f"sqlite:///{tmp_path / 'read.db'}")
    store = await d.connect(server.url)
    s = await _seed(store, "BKP")
    await store.close()
    # the backup: the JetStream store without the key bucket's stream (kept apart, see docs)
    server.stop()
    backup = tmp_path / "backup"
    d.copy_tree(server.store_dir, backup, skip=f"KV_{d.STREAM}_keys")
    server.start()

    store = await d.connect(server.url)
    await forget_subject(d.app, store, engine, s["c1"])
    await store.close()
    server.stop()
    # restore: the old event stream from the backup, the keys from the live key bucket
    keys_dir = next(server.store_dir.rglob(f"KV_{d.STREAM}_keys"))
    restored_keys = backup / keys_dir.relative_to(server.store_dir)
    d.copy_tree(keys_dir, restored_keys)
    restored = start_server_process(backup)
    try:
        store = await d.connect(restored.url)
        raw = await _raw(store, s["c1"])
        assert len(raw) == 21  # the backup still holds the ciphertext...
        with pytest.raises(ForgottenError):
            await store.read(s["c1"])  # ...which nobody can decrypt any more
        assert [r.event.name for r in await store.read(s["c2"])] == ["Grace other"]
        assert len(await store.read(s["a2"])) == 1
        assert await store.snapshots.get(s["c1"]) is None
        await store.close()
    finally:
        restored.stop()
        engine.dispose()


async def test_an_interrupted_forget_finishes_when_run_again(
    server: ServerProcess, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'read.db'}"
    engine = d.prepare_db(db_url)
    store = await d.connect(server.url)
    s = await _seed(store, "INTR")
    await d.project(store, engine)
    script = f"""
import asyncio, os, signal, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import test_gdpr_domain as d
from eventkit.gdpr import forget_subject
from eventkit.projection.sql import make_engine

def progress(step, n):
    if step == "message" and n == 3:
        os.kill(os.getpid(), signal.SIGKILL)

async def main():
    store = await d.connect({server.url!r})
    await forget_subject(d.app, store, make_engine({db_url!r}), {s["a1"]!r}, progress=progress)

asyncio.run(main())
"""
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script], cwd=Path.cwd(), timeout=60
    )
    assert proc.returncode == -9  # killed half-way
    left = await _raw(store, s["a1"])
    # 3 of its 5 messages were erased before the kill; the erasure marker came first
    assert len(left) == 3 and is_marker(left[-1][2])
    with pytest.raises(ForgottenError):  # closed for writers already
        await store.append(s["a1"], [d.GdprAccountNoted(note="late")])
    with engine.connect() as conn:
        step = conn.execute(select(t.forget_requests.c.step, t.forget_requests.c.finished_at)).one()
    assert step.finished_at is None

    report = await forget_subject(d.app, store, engine, s["a1"])
    assert report.resumed
    assert [m[0] for m in await _raw(store, s["a1"])] == [report.marker_sequence]
    assert await store.snapshots.get(s["a1"]) is None
    assert _name_rows(engine, s["a1"]) == []
    with engine.connect() as conn:
        done = conn.execute(select(t.forget_requests.c.finished_at)).scalar_one()
    assert done is not None
    # the audit counts every message the request erased, the killed run's share included
    assert [a["messages_erased"] for a in audit_entries(engine, d.STREAM)] == [5]
    await store.close()
    engine.dispose()
    server.stop()
    assert d.files_containing(server.store_dir, b"INTR") == []
    assert d.files_containing(tmp_path, b"plain INTR") == []


async def test_an_interrupted_forget_of_a_personal_subject_is_unreadable_in_between(
    server: ServerProcess, tmp_path: Path
) -> None:
    engine = d.prepare_db(f"sqlite:///{tmp_path / 'read.db'}")
    store = await d.connect(server.url)
    s = await _seed(store, "HALF")
    calls: list[str] = []

    def stop_after_key(step: str, n: int) -> None:
        calls.append(step)
        if step == "key":
            raise KeyboardInterrupt  # the process goes down right after the key step

    with pytest.raises(KeyboardInterrupt):
        await forget_subject(d.app, store, engine, s["c1"], progress=stop_after_key)
    left = [m async for m in store.read_raw(s["c1"])]
    assert len(left) == 22 and is_marker(left[-1].headers)  # messages not erased yet...
    other = await d.connect(server.url)  # ...but no process can read them any more
    assert await other.read(s["c1"]) == []
    assert other.codec.cipher is not None
    await other.codec.cipher.prepare([s["c1"]], create=False)
    with pytest.raises(ForgottenError):  # nor decrypt a copy of one, held from before
        other.codec.decode(left[0])
    await other.close()
    report = await forget_subject(d.app, store, engine, s["c1"])
    assert report.resumed and report.messages == 21 and report.key == "already shredded"
    assert [m[0] for m in await _raw(store, s["c1"])] == [left[-1].sequence]
    await store.close()
    engine.dispose()


async def test_forget_one_message_names_the_read_models_that_applied_it(
    server: ServerProcess, tmp_path: Path
) -> None:
    engine = d.prepare_db(f"sqlite:///{tmp_path / 'read.db'}")
    store = await d.connect(server.url)
    s = await _seed(store, "SEQ")
    (first, *_rest) = await _raw(store, s["a2"])
    await d.project(store, engine)
    report = await forget_message(d.app, store, engine, first[0])
    assert report.found and report.erased and report.subject == s["a2"]
    assert report.stale_projectors == ["gdpr_names", "gdpr_counts"]
    assert await store.get(first[0]) is None
    assert len(await _raw(store, s["c1"])) == 21
    again = await forget_message(d.app, store, engine, first[0])
    assert not again.found
    audit = audit_entries(engine, d.STREAM)
    assert audit[-1]["kind"] == "message" and audit[-1]["sequence"] == first[0]
    await store.close()
    engine.dispose()


def test_cli_forget_dry_run_pattern_nothing_and_seq(server: ServerProcess, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'read.db'}"
    engine = d.prepare_db(db_url)

    async def seed() -> dict[str, str]:
        store = await d.connect(server.url)
        s = await _seed(store, "CLI")
        await d.project(store, engine)
        await store.close()
        return s

    s = asyncio.run(seed())
    runner = CliRunner()
    base = ["--app", "test_gdpr_domain:app", "--nats-url", server.url, "--database-url", db_url]
    env = {"EVENTKIT_MASTER_KEY": d.MASTER_KEY_B64}

    def forget(*args: str, input: str | None = None) -> Any:
        return runner.invoke(cli, [*base, "forget", *args], env=env, input=input)

    out = forget(s["c1"], "--dry-run")
    assert out.exit_code == 0, out.output
    assert "would erase:  21" in out.output and "gdpr_counts" in out.output
    assert "Raft" in out.output and "crypto-shredding" in out.output
    assert asyncio.run(_count(server.url, s["c1"])) == 21  # nothing erased

    out = forget(f"{d.STREAM}.customer.*")
    assert out.exit_code == 2 and "--pattern" in out.output

    out = forget(f"{d.STREAM}.customer.*", "--pattern", input="n\n")
    assert "2 subject(s) with 22 message(s)" in out.output
    assert out.exit_code == 1 and asyncio.run(_count(server.url, s["c1"])) == 21

    out = forget(f"{d.STREAM}.customer.*", "--pattern", "--yes")
    assert out.exit_code == 0, out.output
    assert asyncio.run(_count(server.url, f"{d.STREAM}.customer.*")) == 0

    out = forget(f"{d.STREAM}.customer.nobody")  # never stored: a typo, told apart
    assert out.exit_code == 1 and "was never stored" in out.output, out.output

    out = forget(s["c1"], "--yes")  # forgotten by the pattern above
    assert out.exit_code == 0 and "forgotten already" in out.output, out.output

    out = forget("--seq", "999999")
    assert out.exit_code == 0 and "no message at sequence 999999" in out.output
    engine.dispose()


async def _count(url: str, subject: str) -> int:
    store = await JetStreamEventStore.connect(url, stream=d.STREAM)
    try:
        return len([m for m in await _raw(store, subject) if not is_marker(m[2])])
    finally:
        await store.close()
