"""Names, files and limits of an embedded server, and its start error."""

from __future__ import annotations

import re

from eventkit.errors import StoreUnavailableError

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
