"""One nats-server process: its config file, start, readiness, stop, kill and restart."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from eventkit.server.binary import find_server_binary, server_version
from eventkit.server.conftext import config_text
from eventkit.server.layout import (
    _CONFIG,
    _LOG,
    _ROUTINE,
    KEY_ENV,
    LOOPBACK,
    READY_TIMEOUT,
    STOP_TIMEOUT,
    ServerStartError,
)

# ---------------------------------------------------------------------- small helpers


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bind to port 0, read it back, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def _healthy(http_port: int) -> bool:
    url = f"http://{LOOPBACK}:{http_port}/healthz?js-enabled-only=true"
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            status: int = resp.status
            body: Any = json.loads(resp.read().decode() or "{}")
            return status == 200 and isinstance(body, dict) and body.get("status") == "ok"
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _read_log(log_file: Path, offset: int = 0) -> str:
    """The log written since ``offset`` (the size before this run: the log is appended to)."""
    try:
        with open(log_file, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _log_tail(log_file: Path, offset: int = 0, lines: int = 12) -> str:
    """The lines that explain a failure: warnings, errors and stderr, else the last lines."""
    text = _read_log(log_file, offset).strip().splitlines()
    if not text:
        return "(nothing logged)"
    telling = [line for line in text if not _ROUTINE.search(line)]
    return "\n".join((telling or text)[-lines:])


def _pid_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


# Popen objects of servers this process started, kept so they are reaped (no zombies) and
# do not warn "subprocess is still running" when collected.
_children: dict[int, subprocess.Popen[bytes]] = {}


# ---------------------------------------------------------------------- one server process


class ServerProcess:
    """A running nats-server started by :func:`start_server_process`.

    Example::

        srv = start_server_process(tmp_path / "store")
        nc = await nats.connect(srv.url)
        srv.kill(); srv.restart()          # same port, same store
        srv.stop()
    """

    def __init__(
        self,
        *,
        binary: Path,
        config_file: Path,
        log_file: Path | None,
        store_dir: Path,
        port: int,
        http_port: int | None,
        encrypt_key: str | None,
        detach: bool,
        ready_timeout: float,
        log_stdout: bool = False,
    ) -> None:
        self.log_stdout = log_stdout
        self.binary = binary
        self.config_file = config_file
        self.log_file = log_file
        self.store_dir = store_dir
        self.port = port
        self.http_port = http_port
        self.detach = detach
        self.ready_timeout = ready_timeout
        self._encrypt_key = encrypt_key
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def __repr__(self) -> str:
        return f"ServerProcess(url={self.url!r}, pid={self.pid}, store_dir={str(self.store_dir)!r})"

    @property
    def url(self) -> str:
        """The client URL, ``nats://127.0.0.1:<port>``."""
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process id, None when it is not running."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """True while the process has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def _spawn(self) -> None:
        env = dict(os.environ)
        env.pop(KEY_ENV, None)
        if self._encrypt_key is not None:
            # Quoted so the server's config parser takes it as one string, whatever it holds.
            env[KEY_ENV] = json.dumps(self._encrypt_key)
        stderr: Any = subprocess.DEVNULL
        stdout: Any = None
        if self.log_stdout:  # the server's log goes to this process's stdout (containers)
            stderr = subprocess.STDOUT
        elif self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            stderr = open(self.log_file, "ab")  # noqa: SIM115 - closed right after the spawn
        try:
            self._proc = subprocess.Popen(
                [str(self.binary), "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=stdout if self.log_stdout else stderr,
                stderr=stderr,
                env=env,
                start_new_session=self.detach,
                close_fds=True,
            )
        finally:
            if stderr not in (subprocess.DEVNULL, subprocess.STDOUT):
                stderr.close()
        _children[self._proc.pid] = self._proc

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the port accepts connections and JetStream reports healthy."""
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise ServerStartError(
                    f"nats-server exited during start (exit code {code}); {self._diagnosis()}"
                )
            if _accepts(self.port, 0.2) and (self.http_port is None or _healthy(self.http_port)):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ServerStartError(
                    f"nats-server on port {self.port} was not ready after "
                    f"{timeout:.0f}s; {self._diagnosis()}"
                )
            time.sleep(0.05)

    def _diagnosis(self) -> str:
        if self.log_file is None:
            return f"run '{self.binary} -c {self.config_file}' to see why"
        return f"from {self.log_file}:\n{_log_tail(self.log_file, self._log_offset)}"

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Idempotent."""
        self._end(timeout)

    def kill(self) -> None:
        """SIGKILL, no clean shutdown (a crash, for tests). Idempotent."""
        self._end(None)

    def _end(self, grace: float | None) -> None:
        """SIGTERM and ``grace`` seconds to exit (None: SIGKILL at once), then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            if grace is not None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(grace)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        _children.pop(proc.pid, None)
        self._proc = None

    def restart(self, timeout: float | None = None) -> None:
        """Stop if running, then start again on the same port and store directory."""
        self.stop()
        self.start(timeout)

    def start(self, timeout: float | None = None) -> None:
        """Start the process (again) and wait until it is ready."""
        if self.is_running():
            return
        self._spawn()
        self.wait_ready(timeout)


def start_server_process(
    store_dir: Path,
    port: int | None = None,
    *,
    http_port: int | None = None,
    monitoring: bool = True,
    server_name: str | None = None,
    cluster: str | None = None,
    extra_config: str = "",
    sync_interval: str | None = None,
    encrypt_key: str | None = None,
    config_file: Path | None = None,
    log_file: Path | None = None,
    pid_file: Path | None = None,
    binary: Path | None = None,
    detach: bool = True,
    ready_timeout: float = READY_TIMEOUT,
    wait: bool = True,
    log_stdout: bool = False,
) -> ServerProcess:
    """Start a JetStream nats-server on 127.0.0.1 and wait until it is ready.

    ``port``/``http_port`` None pick free ports. ``sync_interval`` (``"always"``, ``"2m"``)
    sets how often the store is fsynced; None keeps nats-server's default (2 minutes). The
    config file and log go into ``store_dir`` unless given. ``cluster`` is a ``cluster { ... }``
    block and ``extra_config`` any further config text (a ``jetstream { ... }`` block in it is
    merged into eventkit's), for multi-node setups (then pass ``server_name`` too, and
    ``wait=False`` until every node is started if they need each other to become healthy).

    Example::

        srv = start_server_process(tmp_path / "n1", server_name="n1",
                                   cluster='cluster { name: c, listen: "127.0.0.1:6250" }')
    """
    store_dir = Path(store_dir).absolute()
    store_dir.mkdir(parents=True, exist_ok=True)
    exe = binary if binary is not None else find_server_binary()
    server_version(exe)
    port = port if port is not None else free_port()
    if monitoring and http_port is None:
        http_port = free_port()
    if not monitoring:
        http_port = None
    config_file = config_file if config_file is not None else store_dir / _CONFIG
    log_file = None if log_stdout else (log_file if log_file is not None else store_dir / _LOG)
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(
        config_text(
            port=port,
            http_port=http_port,
            store_dir=store_dir,
            log_file=log_file,
            pid_file=pid_file,
            server_name=server_name,
            encrypted=encrypt_key is not None,
            cluster=cluster,
            extra_config=extra_config,
            sync_interval=sync_interval,
        )
    )
    handle = ServerProcess(
        binary=exe,
        config_file=config_file,
        log_file=log_file,
        store_dir=store_dir,
        port=port,
        http_port=http_port,
        encrypt_key=encrypt_key,
        detach=detach,
        ready_timeout=ready_timeout,
        log_stdout=log_stdout,
    )
    handle._spawn()
    if wait:
        handle.wait_ready()
    return handle
