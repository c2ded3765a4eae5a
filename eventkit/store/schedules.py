"""Messages the server delivers later (ADR-51 message schedules) and plain system messages.

A schedule is one message on its own subject with ``Nats-Schedule: @at <RFC 3339>`` and
``Nats-Schedule-Target``; at that time the server publishes a copy of it (headers and body, no
``Nats-Msg-Id``, plus ``Nats-Scheduler``) on the target subject and removes the schedule. Both
are stored in the stream, so a pending schedule survives restarts of the worker and the server.
The stream needs ``allow_msg_schedules`` (nats-server 2.12+): :func:`enable_schedules`.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import PubAck

from eventkit.errors import ConfigError, ServerVersionError, StoreUnavailableError
from eventkit.store.jetstream import OWNER_KEY, OWNER_VALUE, parse_version
from eventkit.store.wire_constants import MSG_ID

SCHEDULE = "Nats-Schedule"
SCHEDULE_TARGET = "Nats-Schedule-Target"
SCHEDULER = "Nats-Scheduler"
"""On a message the server published from a schedule: the schedule's subject."""

SCHEDULES_SERVER = "2.12.0"


def schedule_at(when: datetime) -> str:
    """The ``Nats-Schedule`` value firing once at ``when`` (fractions kept: never early)."""
    return "@at " + when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


async def enable_schedules(store: Any) -> None:
    """Make sure the store's stream has ``allow_msg_schedules``: a stream eventkit made is
    updated once (the server then also allows rollup headers on it, for good); a stream another
    service made is never changed: ``ConfigError`` naming the setting and the fix.
    ``ServerVersionError`` on a server older than 2.12."""
    if getattr(store, "_schedules_enabled", False):
        return
    version = getattr(store, "server_version", "0.0.0")
    if parse_version(version) < parse_version(SCHEDULES_SERVER):
        raise ServerVersionError("deadlines (ADR-51 message schedules)", SCHEDULES_SERVER, version)
    try:
        info = await store.js.stream_info(store.stream)
        cfg = info.config
        if not cfg.allow_msg_schedules:
            if (cfg.metadata or {}).get(OWNER_KEY) != OWNER_VALUE:
                raise ConfigError(
                    f"deadlines (ctx.schedule) need allow_msg_schedules on stream "
                    f"{store.stream!r}, which another service made, and eventkit never changes "
                    f"such a stream (turning it on also allows rollup headers, which the server "
                    f"cannot turn off again). Set allow_msg_schedules: true in that service's "
                    f"stream config (NestJS: streamConfig), or hand the stream to eventkit: nats "
                    f"stream edit {store.stream} --metadata {OWNER_KEY}={OWNER_VALUE} "
                    f"(see docs/wire-format.md)"
                )
            cfg.allow_msg_schedules = True
            await store.js.update_stream(cfg)
    except nats.js.errors.APIError as e:
        raise StoreUnavailableError(
            f"cannot enable message schedules on stream {store.stream!r}: {e.description}"
        ) from e
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
        raise StoreUnavailableError(f"stream {store.stream!r} did not answer: {e!r}") from e
    store._schedules_enabled = True


async def publish(
    store: Any,
    subject: str,
    payload: bytes,
    headers: dict[str, str],
    *,
    attempts: int = 20,
) -> int:
    """Store one message (retried while unanswered: its ``Nats-Msg-Id`` makes that safe);
    returns its stream sequence."""
    if MSG_ID not in headers:
        raise ConfigError(f"a system message on {subject!r} needs a {MSG_ID} header")
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            ack: PubAck = await store.js.publish(subject, payload, headers=headers, timeout=2.0)
            return int(ack.seq)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
            last = e
        except nats.js.errors.ServiceUnavailableError as e:
            last = e
        except nats.js.errors.APIError as e:
            raise StoreUnavailableError(
                f"storing {subject!r} was refused: {e.description} (err_code {e.err_code})"
            ) from e
        await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
    raise StoreUnavailableError(f"storing {subject!r}: no answer from JetStream ({last!r})")


def dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
