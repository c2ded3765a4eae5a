"""eventkit's own subscriptions (reply inboxes, consumer deliveries), read off the wire.

nats-py parses every message's headers with a general parser (about 12 µs for the ten headers
of a JetStream message), builds a ``Msg`` and hands it to the callback through a queue and a
task of its own. The messages of these subscriptions are taken from the connection's read loop
as bytes instead: the header block is parsed in one pass (about 3 µs) into the same dict, and
the handler runs at once. Other subscriptions of the connection are left to nats-py.

The hook is the client's message dispatch (``Client._process_msg``, nats-py 2.x), replaced on
the one connection only; a client without it gets ordinary subscriptions, and the same
:class:`Delivered` messages built from nats-py's.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

log = logging.getLogger("eventkit.store")

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
        self._original = nc._process_msg

    async def process(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        handler = self.handlers.get(sid)
        if handler is None:
            await self._original(sid, subject, reply, data, headers or b"")
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


def _router(nc: NATS) -> _Router | None:
    router: _Router | None = getattr(nc, "_eventkit_router", None)
    if router is None and _hookable(type(nc)):
        router = _Router(nc)
        nc._process_msg = router.process  # type: ignore[method-assign]
        nc._eventkit_router = router  # type: ignore[attr-defined]
    return router


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
    """Subscribe ``handler`` to ``subject``; it runs in the connection's read loop, so it must
    not wait for anything but a publish."""
    router = _router(nc)
    if router is None:

        async def adapt(msg: Msg) -> None:
            await handler(Delivered(msg.subject, msg.reply, msg.data, msg.headers))

        return RawSubscription(nc, await nc.subscribe(subject, cb=adapt), None)
    # no callback: nats-py starts no task and queues nothing, the router takes every message
    sub = await nc.subscribe(subject)
    router.handlers[sub._id] = handler
    return RawSubscription(nc, sub, router)
