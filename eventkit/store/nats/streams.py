"""The event stream on the server: created for eventkit, or checked and kept as eventkit needs
it (:func:`ensure_stream`)."""

from __future__ import annotations

import logging
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import StorageType, StreamConfig

from eventkit.errors import ConfigError, StoreUnavailableError, StreamMissingError
from eventkit.store.nats.jetstream_errors import translate_api
from eventkit.store.nats.provenance import missing_message, record_created, traces_of

log = logging.getLogger("eventkit.store.jetstream")

OWNER_KEY = "eventkit"
OWNER_VALUE = "1"
"""The stream metadata that marks a stream eventkit made (and may therefore update)."""


async def ensure_stream(
    store: Any, *, replicas: int = 1, duplicate_window: float = 120.0, create: bool | None = None
) -> None:
    """Create the stream (marked ``metadata: {eventkit: "1"}``), or check an existing one.

    A stream eventkit made is kept as asked (replicas, duplicate window, the flags it needs).
    A stream another service made is never changed: eventkit adopts its replicas and
    duplicate window, and raises ``ConfigError`` naming the fix when it lacks a setting
    eventkit needs (``allow_direct``, ``allow_atomic``, the subjects ``<stream>.>``), so the
    two services never flip its settings back and forth."""
    store.check_server_version()
    store.replicas = replicas
    try:
        info = await store.js.stream_info(store.stream)
    except nats.js.errors.NotFoundError:
        if create is not True:
            traces = await traces_of(store)
            if traces:
                raise StreamMissingError(missing_message(store.stream, traces)) from None
            if create is False:
                raise StreamMissingError(
                    f"stream {store.stream!r} does not exist and create_stream=False; create "
                    f"it by connecting once without create_stream=False"
                ) from None
        want = StreamConfig(
            name=store.stream,
            subjects=[f"{store.stream}.>"],
            storage=StorageType.FILE,
            num_replicas=replicas,
            allow_direct=True,
            allow_atomic=True,
            duplicate_window=duplicate_window,
            metadata={OWNER_KEY: OWNER_VALUE},
        )
        try:
            await store.js.add_stream(want)
        except nats.js.errors.APIError as e:
            raise translate_api(e, f"creating stream {store.stream!r}") from e
        await record_created(store, replicas)
        return
    except nats.js.errors.APIError as e:
        raise translate_api(e, f"looking up stream {store.stream!r}") from e
    except nats.errors.TimeoutError as e:
        raise StoreUnavailableError(
            f"JetStream did not answer for stream {store.stream!r}: is JetStream enabled on the "
            f"server (nats-server -js) and may this user use it?"
        ) from e
    cfg = info.config
    subjects = list(cfg.subjects or [])
    needed: list[str] = []
    if not cfg.allow_direct:
        cfg.allow_direct = True
        needed.append("allow_direct: true")
    if not cfg.allow_atomic:
        cfg.allow_atomic = True
        needed.append("allow_atomic: true")
    if f"{store.stream}.>" not in subjects:
        cfg.subjects = [*subjects, f"{store.stream}.>"]
        needed.append(f"subjects: [..., '{store.stream}.>']")
    if cfg.storage != StorageType.FILE:
        log.warning("stream %s uses %s storage, not file storage", store.stream, cfg.storage)
    owned = (cfg.metadata or {}).get(OWNER_KEY) == OWNER_VALUE
    if not owned:
        if needed:
            raise ConfigError(
                f"stream {store.stream!r} was made by another service and lacks what eventkit "
                f"needs: {', '.join(needed)}. Add it to that service's stream config (NestJS: "
                f"streamConfig), or hand the stream to eventkit: nats stream edit "
                f"{store.stream} --metadata {OWNER_KEY}={OWNER_VALUE} (see docs/wire-format.md)"
            )
        store.replicas = int(cfg.num_replicas or 1)
        if store.replicas != replicas or (
            cfg.duplicate_window is not None and abs(cfg.duplicate_window - duplicate_window) > 1e-6
        ):
            log.info(
                "stream %s belongs to another service: using its replicas (%s) and duplicate "
                "window (%ss) as they are",
                store.stream,
                cfg.num_replicas,
                cfg.duplicate_window,
            )
        return
    changes = [n.split(":", 1)[0] for n in needed]
    if cfg.num_replicas != replicas:
        cfg.num_replicas = replicas
        changes.append("replicas")
    if cfg.duplicate_window is None or abs(cfg.duplicate_window - duplicate_window) > 1e-6:
        cfg.duplicate_window = duplicate_window
        changes.append("duplicate_window")
    if changes:
        log.info("updating stream %s: %s", store.stream, ", ".join(changes))
        try:
            await store.js.update_stream(cfg)
        except nats.js.errors.APIError as e:
            raise translate_api(e, f"updating stream {store.stream!r}") from e


__all__ = ["OWNER_KEY", "OWNER_VALUE", "ensure_stream"]
