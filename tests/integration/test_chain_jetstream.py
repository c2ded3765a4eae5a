"""The hash chain against a real nats-server: a flipped bit in a block file (server stopped, file
edited, restarted) fails the load and ``eventkit verify`` names the subject and sequence; a
truncated block whose sequences are reused is reported; ``forget`` and ``forget --seq`` leave a
history that verifies; concurrent writers (checked, unconditional, batched) keep every chain."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from eventkit import Aggregate, App, Event, Repository, on
from eventkit.cli.main import app as cli
from eventkit.errors import ConcurrencyError, IntegrityError
from eventkit.gdpr import forget_message, forget_subject
from eventkit.projection.sql import make_engine, upgrade
from eventkit.server import ServerProcess
from eventkit.store.base import Write
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.proof import verify_history

pytestmark = [pytest.mark.nats]

STREAM = "chn"


class ChnNoted(Event):
    text: str


class ChnLedger(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.count = 0

    def note(self, text: str) -> None:
        self.record(ChnNoted(text=text))

    @on(ChnNoted)
    def _noted(self, e: ChnNoted) -> None:
        self.count += 1


@pytest.fixture
def chain_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable app module on the stream (what ``--app`` names)."""
    name = f"chainapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(f"""
        from eventkit import App
        app = App(stream="{STREAM}")
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:app"


async def verify_cli(target: str, url: str, *args: str) -> tuple[int, dict[str, Any]]:
    """``eventkit verify ... --json`` in a thread (the CLI runs its own event loop)."""
    argv = ["--app", target, "--nats-url", url, "verify", *args, "--json"]
    result = await asyncio.to_thread(CliRunner().invoke, cli, argv)
    try:
        out = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"no JSON from verify: {result.output!r}") from result.exception
    return result.exit_code, out


def block_file(server: ServerProcess) -> Path:
    (blk,) = Path(server.store_dir).glob(f"**/streams/{STREAM}/msgs/1.blk")
    return blk


def flip_bit(server: ServerProcess, inside: bytes) -> None:
    """Flip one bit of the stored body that holds ``inside`` (the server is stopped)."""
    blk = block_file(server)
    data = bytearray(blk.read_bytes())
    at = data.find(inside)
    assert at > 0
    data[at + 4] ^= 0x01
    blk.write_bytes(bytes(data))


def truncate_before(server: ServerProcess, inside: bytes) -> None:
    """Cut the block inside the record whose body holds ``inside``: the tail from there is lost,
    as after a crash (the index is dropped too, so the server rebuilds it from the blocks)."""
    blk = block_file(server)
    data = blk.read_bytes()
    record_start = data.rfind(b"NATS/1.0", 0, data.find(inside))
    blk.write_bytes(data[: record_start - 40])
    for index in blk.parent.glob("index.db"):
        index.unlink()


async def test_a_flipped_bit_on_disk_fails_the_load_and_verify_names_it(
    server: ServerProcess, chain_app: str
) -> None:
    store = await JetStreamEventStore.connect(server.url, stream=STREAM)
    ledgers = Repository(store, ChnLedger)
    subject = ledgers.subject("l-1")
    for i in range(5):
        await ledgers.update("l-1", lambda a, i=i: a.note(f"entry-{i}-abcdefgh"), create=True)
    await store.append(f"{STREAM}.chnledger.other", [ChnNoted(text="untouched")])
    await store.close()
    code, out = await verify_cli(chain_app, server.url, "--all")
    assert code == 0 and out["ok"], out
    server.stop()
    flip_bit(server, b"entry-2-abcdefgh")  # one bit of the body of sequence 3
    server.start()

    store = await JetStreamEventStore.connect(server.url, stream=STREAM)
    try:
        with pytest.raises(IntegrityError) as info:
            await Repository(store, ChnLedger).load("l-1")
        assert info.value.subject == subject
        # the server drops a record whose checksum fails (sequence 4 then links to nothing it
        # holds); a body that reached us changed would be named at 3 itself
        assert info.value.sequence in (3, 4)
        assert (await Repository(store, ChnLedger).load("other")).count == 1
    finally:
        await store.close()
    code, out = await verify_cli(chain_app, server.url, subject)
    assert code == 5 and not out["ok"]
    named = {(x["subject"], x["sequence"]) for x in out["problems"]}
    assert named == {(subject, info.value.sequence)}, out["problems"]
    code, out = await verify_cli(chain_app, server.url, "--all")
    assert code == 5 and {x["subject"] for x in out["problems"]} == {subject}


async def test_a_truncated_block_whose_sequences_are_reused_is_reported(
    server: ServerProcess, chain_app: str
) -> None:
    store = await JetStreamEventStore.connect(server.url, stream=STREAM)
    for i in range(10):
        await store.append(f"{STREAM}.chnledger.t-{i % 2}", [ChnNoted(text=f"tail-{i:02d}-xyzw")])
    await store.close()
    code, out = await verify_cli(chain_app, server.url, "--all")
    assert code == 0, out
    server.stop()
    truncate_before(server, b"tail-07-xyzw")  # inside sequence 8's record
    server.start()

    store = await JetStreamEventStore.connect(server.url, stream=STREAM)
    try:
        last = await store.last_sequence()
        assert last < 10, "the truncation should have cost the stream its tail"
        for i in range(10 - last):
            await store.append(f"{STREAM}.chnledger.new", [ChnNoted(text=f"new-{i}")])
        assert await store.last_sequence() == 10  # sequences handed out a second time
    finally:
        await store.close()
    code, out = await verify_cli(chain_app, server.url, "--all")
    assert code == 5, out
    reused = sorted(x["sequence"] for x in out["problems"] if x["kind"] == "reused")
    assert reused == list(range(last + 1, 11)), out["problems"]


async def test_forget_and_forget_seq_then_verify_all_is_clean(
    server: ServerProcess, chain_app: str, tmp_path: Path
) -> None:
    store = await JetStreamEventStore.connect(server.url, stream=STREAM)
    engine = make_engine(f"sqlite:///{tmp_path / 'read.db'}")
    upgrade(engine)
    app = App(stream=STREAM)
    try:
        gone, kept = f"{STREAM}.chnledger.gone", f"{STREAM}.chnledger.kept"
        await store.append(gone, [ChnNoted(text=t) for t in ("a", "b", "c")])
        first = await store.append(kept, [ChnNoted(text="one")])
        secret = await store.append(kept, [ChnNoted(text="secret-text")])
        await store.append(kept, [ChnNoted(text="three")])
        await forget_subject(app, store, engine, gone)
        report = await forget_message(app, store, engine, secret)
        assert report.erased
        await store.append(kept, [ChnNoted(text="four")])
        assert [r.event.text for r in await store.read(kept)] == ["one", "three", "four"]
        assert first == 4
        everything = [m async for m in store.read_raw()]
        assert not any(b"secret-text" in m.data for m in everything)
    finally:
        await store.close()
        engine.dispose()
    code, out = await verify_cli(chain_app, server.url, "--all")
    assert code == 0 and out["ok"], out["problems"]
    assert out["erased"] == 1
    argv = ["--app", chain_app, "--nats-url", server.url, "--database-url"]
    argv += [f"sqlite:///{tmp_path / 'read.db'}", "status"]
    shown = await asyncio.to_thread(CliRunner().invoke, cli, argv)
    assert shown.exit_code == 0, shown.output
    assert f"history: verified at {out['started']}" in " ".join(shown.output.split())


async def test_chains_hold_under_concurrent_writers(nats_url: str) -> None:
    stream = f"chc{uuid.uuid4().hex[:8]}"
    stores = [await JetStreamEventStore.connect(nats_url, stream=stream) for _ in range(4)]
    shared = [f"{stream}.chnledger.s-{i}" for i in range(3)]
    stored = 0

    async def writer(n: int, store: JetStreamEventStore) -> None:
        nonlocal stored
        ledgers = Repository(store, ChnLedger)
        for i in range(15):
            kind = (n + i) % 3
            if kind == 0:  # unconditional: chained after what it reads last
                await store.append(shared[i % 3], [ChnNoted(text=f"u{n}.{i}")])
                stored += 1
            elif kind == 1:  # load, decide, save with the expected sequence (retried)
                await ledgers.update(f"s-{i % 3}", lambda a: a.note("x"), create=True)
                stored += 1
            else:  # one atomic batch over two subjects, without expectations
                events = [ChnNoted(text=f"b{n}.{i}"), ChnNoted(text="b")]
                try:
                    await store.append_many(
                        [Write(shared[i % 3], events), Write(shared[(i + 1) % 3], events[:1])]
                    )
                    stored += 3
                except ConcurrencyError:
                    pass

    try:
        await asyncio.gather(*(writer(n, s) for n, s in enumerate(stores)))
        report = await verify_history(stores[0])
        assert report.ok, report.problems
        assert report.chained == report.messages == stored
        for subject in shared:
            await stores[1].read(subject)  # the load path checks them too
    finally:
        await stores[0].js.delete_stream(stream)
        for s in stores:
            await s.close()


async def test_replicas_of_a_store_encrypted_at_rest_are_refused_clearly(tmp_path: Path) -> None:
    from eventkit.errors import ConfigError
    from eventkit.server import start_server_process
    from eventkit.store.nats.blocks import node_messages

    srv = start_server_process(tmp_path / "enc", encrypt_key="a-test-key-of-thirty-two-chars!!")
    try:
        store = await JetStreamEventStore.connect(srv.url, stream=STREAM)
        await store.append(f"{STREAM}.chnledger.e", [ChnNoted(text="sealed")])
        await store.close()
    finally:
        srv.stop()
    with pytest.raises(ConfigError, match="encrypted at rest"):
        list(node_messages(tmp_path / "enc", STREAM))


if sys.platform == "win32":  # pragma: no cover
    pytest.skip("block files are read by path", allow_module_level=True)
