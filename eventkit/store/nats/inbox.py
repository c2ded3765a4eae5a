"""One wildcard inbox for every reply the store waits for, and the permission denials that
fail a waiting request at once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client as NATS

from eventkit.errors import PermissionDeniedError
from eventkit.store.nats.delivery import Delivered, RawSubscription, subscribe

T = TypeVar("T")


def first_reply(msg: Delivered, fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(msg)


Waiter = tuple[Callable[[Delivered, asyncio.Future[Any]], None], asyncio.Future[Any], float, str]

VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"', re.I)


class Denials:
    """Permission violations, which the server reports only asynchronously (nats-py hands them
    to ``error_cb``): each one fails at once what waits on the denied subject, instead of a
    timeout and retries seconds later."""

    def __init__(self) -> None:
        self.inbox: Inbox | None = None
        self._guards: set[asyncio.Future[None]] = set()
        self.authorization: str | None = None

    def report(self, error: Exception) -> None:
        text = str(error)
        if "authorization violation" in text.lower():
            self.authorization = text
            return
        found = VIOLATION.search(text)
        if found is None:
            return
        # nats-py lowercases the server's message: subjects are matched without case
        kind, subject = found.group(1).lower(), found.group(2).lower()
        if subject.startswith("$js.api."):
            subject = "$JS.API." + subject[len("$js.api.") :]
        denied = PermissionDeniedError(
            f"the server denied {kind} to {subject!r} for this user: grant it in the user's or "
            f"account's permissions, or connect as a user who has it"
        )
        if self.inbox is not None:
            self.inbox.deny(kind, subject, denied)
        if kind == "subscription" or subject.startswith("$JS.API."):
            for guard in self._guards:
                if not guard.done():
                    guard.set_exception(denied)

    async def guard(self, work: Awaitable[T]) -> T:
        """Await ``work`` (JetStream API calls), failing at once on a JetStream-API denial."""
        loop = asyncio.get_running_loop()
        denied: asyncio.Future[None] = loop.create_future()
        task = asyncio.ensure_future(work)
        self._guards.add(denied)
        try:
            await asyncio.wait((task, denied), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._guards.discard(denied)
        if task.done():
            denied.cancel()
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        denied.result()
        raise AssertionError("unreachable")


class Inbox:
    """One wildcard inbox subscription for every reply the store waits for (acks, direct
    gets). Lighter than ``nc.request``: a counter token per request, one reaper task that
    expires overdue requests every ``TICK`` seconds instead of a timer per request, and replies
    read off the wire (:mod:`eventkit.store.nats.delivery`)."""

    TICK = 0.05

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self.prefix = nc.new_inbox() + "."
        self._cut = len(self.prefix)
        self._waiting: dict[str, Waiter] = {}
        self._ids = itertools.count(1)
        self._sub: RawSubscription | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def deny(self, kind: str, subject: str, error: PermissionDeniedError) -> None:
        """Fail what waits on a denied publish subject (or everything: the inbox is denied)."""
        subject = subject.lower()
        everything = kind == "subscription" and subject.startswith(self.prefix[:-1].lower())
        for _, fut, _, sent_to in list(self._waiting.values()):
            if (everything or sent_to.lower() == subject) and not fut.done():
                fut.set_exception(error)

    async def _dispatch(self, msg: Delivered) -> None:
        entry = self._waiting.get(msg.subject[self._cut :])
        if entry is not None:
            entry[0](msg, entry[1])

    async def _open(self) -> None:
        async with self._lock:
            if self._sub is None:
                self._sub = await subscribe(self._nc, self.prefix + "*", self._dispatch)

    async def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            await asyncio.sleep(self.TICK)
            now = loop.time()
            for _, fut, deadline, _ in list(self._waiting.values()):
                if deadline <= now and not fut.done():
                    fut.set_exception(nats.errors.TimeoutError())
        self._reaper = None

    async def call(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None,
        timeout: float,
        on_reply: Callable[[Delivered, asyncio.Future[Any]], None] = first_reply,
    ) -> Any:
        """Publish with a reply subject; ``on_reply(msg, future)`` sees each reply and resolves
        the future (default: with the first reply). ``nats.errors.TimeoutError`` on timeout."""
        if self._sub is None:
            await self._open()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        token = str(next(self._ids))
        self._waiting[token] = (on_reply, fut, loop.time() + timeout, subject)
        if self._reaper is None:
            self._reaper = loop.create_task(self._reap())
        try:
            await self._nc.publish(subject, payload, reply=self.prefix + token, headers=headers)
            return await fut
        finally:
            del self._waiting[token]

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(BaseException):
                await self._reaper
            self._reaper = None
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
