"""The home server: one embedded nats-server per home directory, started or reused."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from eventkit.config.values import SYNC_ALWAYS, check_server_sync
from eventkit.errors import ConfigError
from eventkit.server.binary import find_server_binary, server_version
from eventkit.server.home import (
    ServerInfo,
    _check_store_key,
    _fail_on_decrypt_errors,
    _home,
    _is_nats_server,
    _locked,
    _read_state,
    _record_store_key,
    _terminate,
    _write_state,
)
from eventkit.server.layout import (
    _CONFIG,
    _LOG,
    _PID,
    _STATE,
    _STORE,
    READY_TIMEOUT,
    STOP_TIMEOUT,
    ServerStartError,
)
from eventkit.server.process import (
    ServerProcess,
    _accepts,
    _pid_alive,
    free_port,
    start_server_process,
)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------- the home server


class EmbeddedServer:
    """Start, reuse, stop and inspect the nats-server that serves one home directory.

    ``sync_interval`` (EVENTKIT_SERVER_SYNC): ``"always"`` (the default) fsyncs every write
    before the server acknowledges it; an interval such as ``"2m"`` (nats-server's own default)
    is faster, and a power loss then loses what was acknowledged within the interval.

    Example::

        server = EmbeddedServer()
        info = server.ensure_running(Path(".eventkit"))
        server.status(Path(".eventkit"))    # ServerInfo(...) or None
        server.stop(Path(".eventkit"))      # True if it was running
    """

    def __init__(
        self,
        binary: Path | None = None,
        ready_timeout: float = READY_TIMEOUT,
        *,
        sync_interval: str = SYNC_ALWAYS,
    ) -> None:
        check_server_sync(sync_interval)
        self._binary = binary
        self.ready_timeout = ready_timeout
        self.sync_interval = sync_interval

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
                if info.sync_interval != self.sync_interval:
                    log.warning(
                        "the running server of %s was started with sync_interval %s, not %s "
                        "(EVENTKIT_SERVER_SYNC); restart it to apply: eventkit server stop",
                        home,
                        info.sync_interval or "2m (nats-server's default)",
                        self.sync_interval,
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
            sync_interval=self.sync_interval,
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
            sync_interval=self.sync_interval,
        )
        _write_state(home, info)
        return info


# ---------------------------------------------------------------------- module-level shortcuts

_default = EmbeddedServer()


def ensure_running(
    home: Path | None = None,
    *,
    encrypt_key: str | None = None,
    port: int | None = None,
    sync_interval: str = SYNC_ALWAYS,
) -> ServerInfo:
    """Reuse or start the embedded server of ``home`` (default ``./.eventkit``).

    ``sync_interval``: see :class:`EmbeddedServer` (``"always"`` unless you opt out).

    Example::

        info = ensure_running(settings.home, encrypt_key=settings.server_store_key,
                              sync_interval=settings.server_sync)
    """
    server = _default
    if sync_interval != server.sync_interval:
        server = EmbeddedServer(sync_interval=sync_interval)
    return server.ensure_running(home, encrypt_key=encrypt_key, port=port)


def status(home: Path | None = None) -> ServerInfo | None:
    """The running embedded server of ``home``, or None. Example: ``status(Path(".eventkit"))``."""
    return _default.status(home)


def stop(home: Path | None = None) -> bool:
    """Stop the embedded server of ``home``; True if one was running."""
    return _default.stop(home)
