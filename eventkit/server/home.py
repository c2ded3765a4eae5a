"""The state of a home's server on disk: the lock, the state file, the store key check."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from eventkit.config import DEFAULT_HOME
from eventkit.errors import ConfigError
from eventkit.server.layout import (
    _DECRYPT_FAILURE,
    _KDF_ROUNDS,
    _KEY_CHECK,
    _LOCK,
    _STATE,
    _STORE,
)
from eventkit.server.process import ServerProcess, _children, _log_tail, _pid_alive, _read_log

# ---------------------------------------------------------------------- state on disk


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
    sync_interval: str = ""
    """What the server was started with: ``always``, an interval, or empty (not recorded: a
    server started by an older eventkit, with nats-server's default of 2 minutes)."""

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
            sync_interval=str(data.get("sync_interval", "")),
        )


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
