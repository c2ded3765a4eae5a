"""Power loss: the embedded server's store on a FUSE filesystem that keeps writes in memory until
they are fsynced (``lossyfs.py``), appends through the public API, then the server SIGKILLed and
every unfsynced write dropped, and the server started again on what a disk would hold.

With the embedded server's default (``sync_interval: always``) nothing acknowledged is lost. The
control, nats-server's own default interval (EVENTKIT_SERVER_SYNC=2m), loses the
appends acknowledged since the last fsync and hands their sequence numbers to new events, proof
that the harness drops what it should; a projector that had applied them halts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from eventkit.config import Settings
from eventkit.domain.events import new_event_id
from eventkit.errors import StreamMissingError
from eventkit.projection.projector import Projector
from eventkit.projection.runner import ProjectionRunner, RunResult
from eventkit.server import EmbeddedServer, ServerInfo, stop
from eventkit.server.process import _children
from eventkit.store.jetstream import JetStreamEventStore

from ._domain import RelAdded
from ._readmodel import sqlite_engine, totals_projector
from .conftest import env_float, record_result

pytestmark = pytest.mark.nats

LOSSYFS = Path(__file__).with_name("lossyfs.py")
FUSERMOUNT = shutil.which("fusermount3") or shutil.which("fusermount")


class LossyMount:
    """``mountpoint`` shows ``backing`` through lossyfs; :meth:`power_loss` drops the unfsynced."""

    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.proc: subprocess.Popen[bytes] | None = None
        backing.mkdir(parents=True, exist_ok=True)
        mountpoint.mkdir(parents=True, exist_ok=True)

    def mount(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(LOSSYFS), str(self.backing), str(self.mountpoint)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"lossyfs did not mount: {err}")
            assert time.monotonic() < deadline, "lossyfs did not mount within 10 s"
            time.sleep(0.05)

    def unmount(self) -> None:
        """Unmount; every write not fsynced is gone with the lossyfs process."""
        if self.proc is None:
            return
        assert FUSERMOUNT is not None
        subprocess.run([FUSERMOUNT, "-u", str(self.mountpoint)], check=False)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            subprocess.run([FUSERMOUNT, "-uz", str(self.mountpoint)], check=False)
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def lossy(tmp_path: Path) -> Iterator[LossyMount]:
    if FUSERMOUNT is None or not os.path.exists("/dev/fuse"):
        pytest.fail(
            "the power-loss test needs FUSE: /dev/fuse and fusermount3 (Debian: apt-get install "
            "fuse3) and the mfusepy package (in the dev extra)"
        )
    m = LossyMount(tmp_path / "disk", tmp_path / "mnt")
    m.mount()
    try:
        yield m
    finally:
        stop(m.mountpoint / "home")
        m.unmount()


def _kill(info: ServerInfo) -> None:
    os.kill(info.pid, signal.SIGKILL)
    child = _children.pop(info.pid, None)
    if child is not None:
        child.wait()


async def _append_for(store: JetStreamEventStore, seconds: float) -> dict[int, str]:
    """Append one event at a time for ``seconds``; the acknowledged ``{sequence: event id}``."""
    acked: dict[int, str] = {}
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        subject = f"{store.stream}.counter.c{i % 7}"
        eid = new_event_id()
        seq = await store.append(subject, [RelAdded(amount=1, command=str(i))], event_ids=[eid])
        acked[seq] = eid
        i += 1
    return acked


async def _survivors(settings: Settings) -> dict[int, str]:
    async with await JetStreamEventStore.connect(stream="power", settings=settings) as store:
        return {r.sequence: r.event_id async for r in store.read_all()}


async def _lose_power(
    lossy: LossyMount, sync: str, engine: Engine, projector: Projector
) -> tuple[dict[int, str], dict[int, str]]:
    """Append for a while, apply it all with ``projector``, lose power, come back and append
    as much again: (acknowledged before the loss, what the stream then holds)."""
    home = lossy.mountpoint / "home"
    settings = Settings(home=home, server_sync=sync)
    # the stream is made by a server that syncs always (with an interval its meta files are
    # never fsynced, and the whole stream is lost), then the server runs with ``sync``
    async with await JetStreamEventStore.connect(stream="power", settings=Settings(home=home)):
        pass
    stop(home)
    server = EmbeddedServer(sync_interval=sync)
    await asyncio.to_thread(server.ensure_running, home)
    async with await JetStreamEventStore.connect(stream="power", settings=settings) as store:
        acked = await _append_for(store, env_float("EVENTKIT_POWER_LOSS_SECONDS", 3.0))
        result = await ProjectionRunner(projector, store, engine).catch_up()
        assert result.checkpoint == max(acked)
        info = server.status(home)
        assert info is not None
        _kill(info)  # the power goes: the server dies at once ...
    lossy.unmount()  # ... and the disk keeps only what was fsynced
    lossy.mount()
    await asyncio.to_thread(server.ensure_running, home)
    stored = await _survivors(settings)
    async with await JetStreamEventStore.connect(stream="power", settings=settings) as store:
        await _append_for(store, 1.0)  # new events, on reused sequence numbers if some were lost
    return acked, stored


async def _projector_after(lossy: LossyMount, engine: Engine, projector: Projector) -> RunResult:
    settings = Settings(home=lossy.mountpoint / "home")
    async with await JetStreamEventStore.connect(stream="power", settings=settings) as store:
        return await ProjectionRunner(projector, store, engine).catch_up()


async def test_nothing_acknowledged_is_lost_with_the_default_sync(
    lossy: LossyMount, tmp_path: Path
) -> None:
    engine, projector = sqlite_engine(tmp_path / "rm.db"), totals_projector()
    acked, stored = await _lose_power(lossy, "always", engine, projector)
    lost = {seq: eid for seq, eid in acked.items() if stored.get(seq) != eid}
    record_result("power loss, sync always", acknowledged=len(acked), lost=len(lost))
    assert len(acked) > 20
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged appends lost"
    result = await _projector_after(lossy, engine, projector)
    assert not result.halted and result.checkpoint > max(acked)


async def test_the_control_without_always_loses_acknowledged_appends(
    lossy: LossyMount, tmp_path: Path
) -> None:
    engine, projector = sqlite_engine(tmp_path / "rm.db"), totals_projector()
    try:
        acked, stored = await _lose_power(lossy, "2m", engine, projector)
    except StreamMissingError:  # the stream's files were never fsynced: all of it is gone
        record_result("power loss, sync 2m", lost="the whole stream")
        raise
    lost = {seq: eid for seq, eid in acked.items() if stored.get(seq) != eid}
    record_result("power loss, sync 2m", acknowledged=len(acked), lost=len(lost))
    assert lost, "the harness dropped nothing: it would not catch a loss"
    result = await _projector_after(lossy, engine, projector)
    assert result.halted and result.error is not None and "went back" in result.error
