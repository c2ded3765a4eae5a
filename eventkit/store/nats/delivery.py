"""eventkit's own subscriptions (reply inboxes, consumer deliveries), read off the wire.

nats-py parses every message's headers with a general parser (about 12 µs for the ten headers
of a JetStream message), builds a ``Msg`` and hands it to the callback through a queue and a
task of its own. The messages of these subscriptions are taken from the connection's read loop
as bytes instead: the header block is parsed in one pass (about 3 µs) into the same dict, and
the handler runs at once. Other subscriptions of the connection are left to nats-py.

This fast path is the one place eventkit steps past nats-py's public API: it replaces the
client's message dispatch (``Client._process_msg``, nats-py 2.x) on the one connection, and
reads ``sub._id`` and ``nc._error_cb``. It is guarded four ways:

- ``EVENTKIT_NATS_FAST_PATH=0`` turns it off: ordinary nats-py subscriptions (callbacks on
  ``Msg``), the same :class:`Delivered` messages, nothing private touched.
- It is taken only on a client whose dispatch has the signature it was written against.
- Every subscription keeps nats-py's own callback: a message the hook does not take (a client
  that dispatches another way) is delivered by nats-py, slower, never left waiting.
- A self-test on each connection, before its first subscription: a probe message to a fresh
  inbox must reach the hook with its subject, reply, body and headers intact (no later than
  nats-py's own delivery of it to a second subscription, give or take a grace). Otherwise
  the hook is removed and a warning logged. A server that refuses the probe (a user who may
  not publish to its own inbox) leaves the hook on, untested, and says so at INFO level.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from eventkit.errors import ConfigError

log = logging.getLogger("eventkit.store")

FAST_PATH_ENV = "EVENTKIT_NATS_FAST_PATH"
"""``0`` (or ``off``, ``false``, ``no``): nats-py's own dispatch for every subscription."""

SELF_TEST_TIMEOUT = 5.0
"""Seconds the connect-time self-test waits for its probe to come back; past that it falls
back (ordinary subscriptions) rather than wait longer."""

SELF_TEST_GRACE = 2.0
"""Seconds the hook may lag nats-py's own delivery of the same probe."""

STATUS = "Status"
DESCRIPTION = "Description"
_BLANK = " \t\n\r\x0b\x0c"
"""What ``bytes.strip()`` strips (``str.strip()`` strips other Unicode spaces too)."""


class Delivered:
    """One message of a raw subscription: what eventkit reads of nats-py's ``Msg``."""

    __slots__ = ("data", "headers", "reply", "subject")

    def __init__(
        self, subject: str, reply: str, data: bytes, headers: dict[str, str] | None
    ) -> None:
        self.subject = subject
        self.reply = reply
        self.data = data
        self.headers = headers


Handler = Callable[[Delivered], Awaitable[None]]


def parse_headers(block: bytes) -> dict[str, str]:
    """A NATS header block (``NATS/1.0[ status[ description]]\\r\\nName: value\\r\\n...``) as
    nats-py's dict: an inline status as ``Status`` and ``Description``; a line without a colon,
    or whose name is not one printable ASCII token, is passed over; undecodable bytes in a value
    become U+FFFD."""
    lines = block.decode("utf-8", "replace").split("\r\n")
    out: dict[str, str] = {}
    first = lines[0]
    if len(first) > 9:  # "NATS/1.0 503", "NATS/1.0 404 No Messages"
        status, _, desc = first[9:].partition(" ")
        if status.isdigit():
            out[STATUS] = status
        desc = desc.strip(_BLANK)
        if desc:
            out[DESCRIPTION] = desc
    names = _NAMES
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            key = names.get(name, _UNSEEN)
            if key is _UNSEEN:
                key = _header_name(name)
            if key is not None:
                out[key] = value.strip(_BLANK)
    return out


_UNSEEN = ""
_NAMES: dict[str, str | None] = {}
"""Header names as they appear on the wire -> the name (None: not a valid one); the same few
names recur on every message."""


def _header_name(raw: str) -> str | None:
    name = raw.strip(_BLANK)
    valid = name if name.isascii() and name.isprintable() and " " not in name else None
    if len(_NAMES) < 4096:
        _NAMES[raw] = valid
    return valid


class _Router:
    """The replaced dispatch of one connection: raw handlers by subscription id, the rest to
    nats-py's own."""

    def __init__(self, nc: NATS) -> None:
        self.handlers: dict[int, Handler] = {}
        self._nc = nc
        self.original = nc._process_msg
        self._had_own = "_process_msg" in vars(nc)

    def remove(self) -> None:
        """Give the connection its own dispatch back."""
        if self._had_own:
            self._nc._process_msg = self.original  # type: ignore[method-assign]
        else:
            with contextlib.suppress(AttributeError):
                del self._nc._process_msg

    async def process(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        handler = self.handlers.get(sid)
        if handler is None:
            await self.original(sid, subject, reply, data, headers or b"")
            return
        stats = self._nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            await handler(
                Delivered(
                    subject.decode(),
                    reply.decode() if reply else "",
                    data,
                    parse_headers(headers) if headers else None,
                )
            )
        except Exception as e:  # never out into the read loop: it would stop reading for good
            log.exception("eventkit: a subscription's handler failed on %r", subject)
            await self._nc._error_cb(e)


_DISPATCH_PARAMETERS = ("self", "sid", "subject", "reply", "data", "headers")


def _hookable(cls: type) -> bool:
    """Whether the client's dispatch is the one this module was written against (nats-py 2.x):
    another shape (a future release) gets ordinary subscriptions instead of a broken hook."""
    dispatch = getattr(cls, "_process_msg", None)
    if not callable(dispatch):
        return False
    try:
        names = tuple(inspect.signature(dispatch).parameters)
    except (TypeError, ValueError):
        return False
    return names == _DISPATCH_PARAMETERS


def fast_path_wanted() -> bool:
    """Whether ``EVENTKIT_NATS_FAST_PATH`` leaves the fast path on (the default)."""
    raw = os.environ.get(FAST_PATH_ENV, "").strip().lower()
    if raw in ("", "1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise ConfigError(
        f"{FAST_PATH_ENV}={raw!r} is not a switch: use 1 (the fast path, the default) or 0 "
        "(nats-py's own message dispatch)"
    )


_PROBE_BODY = b"eventkit dispatch self-test"
_PROBE_HEADERS = {"Eventkit-Probe": "1", "Nats-Msg-Id": "probe"}

_DECIDED = "_eventkit_dispatch"
"""Attribute of a connection: the future of its router, installed and self-tested once (None:
ordinary subscriptions). On the connection itself, so it goes when the connection goes."""


async def _router(nc: NATS) -> _Router | None:
    decided: asyncio.Future[_Router | None] | None = getattr(nc, _DECIDED, None)
    if decided is None:
        decided = asyncio.ensure_future(_install(nc))
        setattr(nc, _DECIDED, decided)
    return await asyncio.shield(decided)


async def _install(nc: NATS) -> _Router | None:
    if not fast_path_wanted() or not _hookable(type(nc)):
        return None
    router = _Router(nc)
    nc._process_msg = router.process  # type: ignore[method-assign]
    verdict = await _self_test(nc, router)
    if verdict is None:
        return router
    if verdict.startswith(_UNTESTED):
        log.info("eventkit: the fast message path is on, %s", verdict)
        return router
    router.remove()
    log.warning(
        "eventkit: the fast message path is off for this connection (%s); nats-py's own "
        "dispatch is used instead, slower but correct. Set %s=0 to skip this self-test.",
        verdict,
        FAST_PATH_ENV,
    )
    return None


_UNTESTED = "untested:"


async def _self_test(nc: NATS, router: _Router) -> str | None:
    """None when a probe published to a fresh inbox reached the hook intact; else why not
    (``untested: ...`` when the server refused the probe: the user may not publish to its
    own inbox).

    A second, ordinary subscription to the inbox is the witness: once nats-py has handed it
    the probe, the hook's copy (sent by the server in the same burst) has been read too, or
    is read within ``SELF_TEST_GRACE``. No flush: nats-py writes its PING ahead of buffered
    publishes, so a PONG proves nothing about them."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[Delivered] = loop.create_future()
    seen_by_nats_py: asyncio.Future[None] = loop.create_future()
    denied: asyncio.Future[None] = loop.create_future()
    subject = nc.new_inbox()

    async def probe(msg: Delivered) -> None:
        if not got.done():
            got.set_result(msg)

    async def witness(msg: Msg) -> None:
        if not seen_by_nats_py.done():
            seen_by_nats_py.set_result(None)

    report = nc._error_cb

    async def watch(error: Exception) -> None:  # a permissions violation comes only here
        text = str(error).lower()
        if "permissions violation" in text and subject.lower() in text:
            if not denied.done():
                denied.set_result(None)
            return  # the probe's own refusal: answered here, not the application's error
        await report(error)

    subs: list[Any] = []
    nc._error_cb = watch
    try:
        subs.append(await nc.subscribe(subject))
        router.handlers[subs[0]._id] = probe
        subs.append(await nc.subscribe(subject, cb=witness))
        await nc.publish(subject, _PROBE_BODY, reply=subject + ".r", headers=_PROBE_HEADERS)
        await asyncio.wait(
            (seen_by_nats_py, denied),
            timeout=SELF_TEST_TIMEOUT,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if denied.done():
            return f"{_UNTESTED} the server refused the probe to the connection's own inbox"
        if not seen_by_nats_py.done():
            return f"no probe came back within {SELF_TEST_TIMEOUT:g}s"
        try:
            msg = await asyncio.wait_for(got, SELF_TEST_GRACE)
        except TimeoutError:
            return "the probe message did not reach the hook: this nats-py dispatches another way"
    except Exception as e:
        return f"the probe failed: {e!r}"
    finally:
        if nc._error_cb is watch:
            nc._error_cb = report
        if subs:
            router.handlers.pop(subs[0]._id, None)
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for fut in (got, seen_by_nats_py, denied):
            fut.cancel()
    seen = (msg.subject, msg.reply, msg.data, msg.headers)
    if seen != (subject, subject + ".r", _PROBE_BODY, _PROBE_HEADERS):
        return f"the probe message reached the hook changed: {seen!r}"
    return None


class RawSubscription:
    """A subscription whose messages reach ``handler`` as :class:`Delivered`."""

    def __init__(self, nc: NATS, sub: Any, router: _Router | None) -> None:
        self._nc = nc
        self._sub = sub
        self._router = router

    async def unsubscribe(self) -> None:
        if self._router is not None:
            self._router.handlers.pop(self._sub._id, None)
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()


async def subscribe(nc: NATS, subject: str, handler: Handler) -> RawSubscription:
    """Subscribe ``handler`` to ``subject``. With the fast path it runs in the connection's read
    loop, so it must not wait for anything but a publish.

    The subscription always has nats-py's own callback too: the hook takes the messages of the
    subscriptions it knows before nats-py queues them, so the callback sees none of those; on
    a client that does not dispatch through the hook, the callback delivers them, slower, and
    nothing waits for a message that never comes."""
    router = await _router(nc)

    async def adapt(msg: Msg) -> None:
        await handler(Delivered(msg.subject, msg.reply, msg.data, msg.headers))

    sub = await nc.subscribe(subject, cb=adapt)
    if router is not None:
        router.handlers[sub._id] = handler
    return RawSubscription(nc, sub, router)
