"""What an acknowledged append survives on the server eventkit is connected to.

A nats-server acknowledges an append before it fsyncs it unless its JetStream config says
``sync_interval: always``; a power loss then loses what was acknowledged since the last fsync
(and the server hands those sequence numbers out again). The stream's replicas, storage and
persist mode are visible to every client; the sync interval only through the server's
monitoring endpoint, which eventkit reads for its embedded server::

    d = await durability(store)
    d.sync          # 'always', '120s', or None when the server does not tell clients
    d.warning()     # None, or what can be lost and the fix
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("eventkit.durability")

SYNC_FIX = (
    "set EVENTKIT_SERVER_SYNC=always (the embedded server's default; restart it with: eventkit "
    "server stop), or on a server you run: jetstream { sync_interval: always }"
)

_warned: set[tuple[str, str]] = set()


@dataclass(frozen=True, slots=True)
class Durability:
    """The durability of the event stream as far as this client can see it."""

    sync: str | None
    """``always``, an interval (``120s``), or None: not visible to clients."""
    seen_from: str
    """Where ``sync`` was read: the server's monitoring endpoint, the embedded server's
    recorded config, or nowhere."""
    replicas: int
    storage: str
    """``file`` or ``memory``."""
    persist_mode: str
    """``default``, or ``async`` (acknowledged before it is even written)."""

    @property
    def syncs_always(self) -> bool:
        return self.sync == "always"

    def risks(self) -> list[str]:
        """What can lose acknowledged appends here, each with its fix (empty: nothing known)."""
        out: list[str] = []
        if self.storage == "memory":
            out.append(
                "the stream is stored in memory: a server restart loses it; use file storage"
            )
        if self.persist_mode == "async":
            out.append(
                "the stream has persist_mode async: appends are acknowledged before they are "
                "written; never use it for events (nats stream edit: persist_mode default)"
            )
        if self.sync is not None and not self.syncs_always:
            where = (
                "a power loss"
                if self.replicas == 1
                else f"a power loss of all {self.replicas} replicas' machines together"
            )
            out.append(
                f"the server fsyncs every {self.sync}: {where} loses the appends acknowledged "
                f"since the last fsync, and their sequence numbers are then reused; {SYNC_FIX}"
            )
        return out

    def warning(self) -> str | None:
        """One sentence for a log, or None when nothing known can lose acknowledged appends."""
        risks = self.risks()
        if not risks:
            return None
        return "acknowledged appends can be lost: " + "; ".join(risks)

    def summary(self) -> str:
        """``sync always, R3, file storage`` (``sync unknown`` when the server does not say)."""
        sync = f"sync {self.sync}" if self.sync is not None else "sync not visible to clients"
        mode = ", persist_mode async" if self.persist_mode == "async" else ""
        return f"{sync}, R{self.replicas}, {self.storage} storage{mode}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["risks"] = self.risks()
        return data


def _varz(http_port: int, timeout: float = 1.0) -> dict[str, Any] | None:
    url = f"http://127.0.0.1:{http_port}/varz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body: Any = json.loads(resp.read().decode() or "{}")
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return body if isinstance(body, dict) else None


def sync_from_varz(varz: dict[str, Any]) -> str | None:
    """``always`` or ``<seconds>s`` from a ``/varz`` document, None when it has no JetStream."""
    config = (varz.get("jetstream") or {}).get("config") or {}
    if not config:
        return None
    if config.get("sync_always"):
        return "always"
    interval = config.get("sync_interval")
    if not isinstance(interval, int | float) or interval <= 0:
        return "120s"  # nats-server's default when none is set
    return f"{interval / 1e9:g}s"


async def server_sync(embedded: Any) -> tuple[str | None, str]:
    """The sync interval of the embedded server ``embedded`` (a ``ServerInfo``, or None)."""
    if embedded is None:
        return None, "not visible to clients (set sync_interval: always in the server's config)"
    varz = await asyncio.to_thread(_varz, int(embedded.http_port))
    if varz is not None:
        sync = sync_from_varz(varz)
        if sync is not None:
            return sync, "the embedded server's /varz"
    recorded = str(getattr(embedded, "sync_interval", "") or "")
    return (recorded or "120s"), "the embedded server's recorded config"


async def durability(store: Any) -> Durability:
    """What the server of ``store`` (a ``JetStreamEventStore``) says about the stream."""
    raw = await store.nc.request(
        f"$JS.API.STREAM.INFO.{store.stream}", b"", timeout=store.read_timeout
    )
    config = json.loads(raw.data).get("config") or {}
    sync, seen_from = await server_sync(getattr(store, "embedded", None))
    return Durability(
        sync=sync,
        seen_from=seen_from,
        replicas=int(config.get("num_replicas") or 1),
        storage=str(config.get("storage") or "file"),
        persist_mode=str(config.get("persist_mode") or "default"),
    )


async def report(store: Any) -> Durability | None:
    """Log the stream's durability (debug), and warn once per process and server when
    acknowledged appends can be lost. Never raises (None when the server did not answer)."""
    try:
        found = await durability(store)
    except Exception as e:  # a report must not stop a connect
        log.debug("durability of stream %s not known: %r", store.stream, e)
        return None
    log.debug("stream %s: %s", store.stream, found.summary())
    warning = found.warning()
    server = str(getattr(store.nc, "connected_url", "") or "")
    key = (server, store.stream)
    if warning is not None and key not in _warned:
        _warned.add(key)
        log.warning("stream %s: %s", store.stream, warning)
    return found


__all__ = ["SYNC_FIX", "Durability", "durability", "report", "server_sync", "sync_from_varz"]
