"""Batched direct gets: ``$JS.API.DIRECT.GET.<stream>``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats.errors

from eventkit.errors import ConfigError, StoreUnavailableError
from eventkit.store.nats.delivery import Delivered
from eventkit.store.nats.inbox import Inbox
from eventkit.store.nats.jetstream_errors import Unanswered
from eventkit.store.wire_constants import DESCRIPTION, NUM_PENDING, STATUS


class Pending:
    """One in-flight direct get: data messages until the end-of-batch (or the single reply)."""

    __slots__ = ("error", "more", "msgs", "single")

    def __init__(self, single: bool) -> None:
        self.msgs: list[Delivered] = []
        self.single = single
        self.more = 0
        self.error: str | None = None

    def feed(self, msg: Delivered, done: asyncio.Future[Any]) -> None:
        if done.done():
            return
        headers = msg.headers
        status = headers.get(STATUS) if headers else None
        if not status:
            self.msgs.append(msg)
            if self.single:
                done.set_result(None)
            return
        if status == "204":  # end of batch; Num-Pending says whether more match
            pending = headers.get(NUM_PENDING, "0") if headers else "0"
            self.more = int(pending) if pending.isdigit() else 0
        elif status != "404":
            desc = headers.get(DESCRIPTION, "") if headers else ""
            self.error = f"{status} {desc}".strip()
        done.set_result(None)


class DirectReader:
    """Batched direct gets (``$JS.API.DIRECT.GET.<stream>``)."""

    def __init__(self, inbox: Inbox, stream: str) -> None:
        self._inbox = inbox
        self._api = f"$JS.API.DIRECT.GET.{stream}"

    async def request(
        self,
        request: dict[str, Any],
        timeout: float,
        subject: str | None = None,
    ) -> tuple[list[Delivered], int]:
        """Send one direct get; return its data messages and how many more match after them.

        ``subject``: the ``$JS.API.DIRECT.GET.<stream>.<subject>`` form (last message of the
        subject). A request with ``batch`` or ``multi_last`` streams several messages and ends
        with an end-of-batch status (204); 404 means nothing matched.
        """
        pending = Pending(single="batch" not in request and "multi_last" not in request)
        if subject is None:
            api, body = self._api, json.dumps(request).encode()
        else:
            api, body = f"{self._api}.{subject}", b""
        try:
            await self._inbox.call(api, body, None, timeout, pending.feed)
        except nats.errors.TimeoutError as e:
            raise Unanswered(
                f"direct get on {self._api} got no answer in {timeout}s "
                f"(is the server up, allow_direct on, and may this user read the stream?)"
            ) from e
        except nats.errors.ConnectionClosedError as e:
            raise StoreUnavailableError("the NATS connection is closed") from e
        if pending.error is not None:
            if pending.error.startswith("408"):
                raise ConfigError(f"bad direct get request {request!r}: {pending.error}")
            if pending.error.startswith("503"):
                raise Unanswered("no responders for direct get (stream offline?)")
            raise StoreUnavailableError(f"direct get failed: {pending.error}")
        return pending.msgs, pending.more
