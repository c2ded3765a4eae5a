"""Ctrl-C and SIGTERM stop ``eventkit replay`` after the batch in flight: the lease is released,
the output says where it stopped and how to go on, and `run --once` carries on from there."""

from __future__ import annotations

import asyncio
import signal
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

EVENTS = 400

SERVICE = """
import time
from eventkit import App, Event, Projector, on


class Ticked(Event):
    event_type = "rp.Ticked"
    n: int


class Slow(Projector):
    name = "slow"
    batch_size = 10

    @on(Ticked)
    def ticked(self, e, rec, db):
        time.sleep(0.01)  # a replay of a few seconds

    def reset(self, db):
        pass


app = App(stream="rp", projectors=[Slow()])
"""


class Ticked(Event):
    event_type = "rp.Ticked"
    n: int


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = start_server_process(tmp_path / "nats")
    try:
        yield srv
    finally:
        srv.stop()


async def append_ticks(url: str) -> int:
    store = await JetStreamEventStore.connect(url, stream="rp")
    async with store:
        for n in range(EVENTS):
            await store.append(f"rp.tick.t{n % 5}", [Ticked(n=n)])
        return await store.last_sequence()


def lease_and_checkpoint(db: Path) -> tuple[str | None, int]:
    with sqlite3.connect(db) as conn:
        lease = conn.execute("select owner from eventkit_leases where projector='slow'").fetchone()
        cp = conn.execute(
            "select last_sequence from eventkit_checkpoints where projector='slow'"
        ).fetchone()
    return (lease[0] if lease else None), (cp[0] if cp else 0)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_replay_after_the_batch_and_releases_the_lease(
    tmp_path: Path, server: ServerProcess, sig: signal.Signals
) -> None:
    (tmp_path / "rpapp.py").write_text(textwrap.dedent(SERVICE))
    db = tmp_path / "rp.db"
    env = {"EVENTKIT_NATS_URL": server.url, "EVENTKIT_DATABASE_URL": f"sqlite:///{db}"}
    home = tmp_path / "home"
    up = eventkit("--app", "rpapp:app", "db", "upgrade", home=home, cwd=tmp_path, **env)
    assert up.returncode == 0, said(up)
    last = asyncio.run(append_ticks(server.url))

    replay = subprocess.Popen(
        [str(SCRIPT), "--app", "rpapp:app", "replay", "slow", "--from-start", "--yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=user_env(home, **env),
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # the replay holds the lease and has committed a batch
            assert replay.poll() is None, replay.communicate()
            assert time.monotonic() < deadline, "the replay did not start"
            owner, checkpoint = lease_and_checkpoint(db)
            if owner and owner.startswith("replay:") and checkpoint > 0:
                break
            time.sleep(0.05)
        replay.send_signal(sig)
        out, err = replay.communicate(timeout=30)  # a batch is 0.1 s: far less than the rest
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.communicate()
    text = " ".join((out + err).split())
    assert replay.returncode == (130 if sig == signal.SIGINT else 143), text
    assert "Traceback" not in text
    owner, checkpoint = lease_and_checkpoint(db)
    assert 0 < checkpoint < last, text  # stopped part way, at a committed batch
    assert f"stopped by {sig.name} at sequence {checkpoint}" in text
    assert "lease is released" in text and "eventkit run slow --once" in text
    assert owner == ""  # released: a worker takes over at once, not after the ttl

    rest = eventkit("--app", "rpapp:app", "run", "slow", "--once", home=home, cwd=tmp_path, **env)
    assert rest.returncode == 0, said(rest)
    assert lease_and_checkpoint(db)[1] == last
