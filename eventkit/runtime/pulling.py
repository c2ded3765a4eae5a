"""The pull transport of every worker: a durable pull consumer, pulled continuously.

Messages arrive on one inbox while earlier ones are being handled (pull requests are topped up
before the buffer runs dry), so fetching overlaps the work and live events reach the runner as
soon as they are stored. They are read off the wire (:mod:`eventkit.store.nats.delivery`): no
nats-py ``Msg``, and the headers parsed in one pass. Request ends (408/409) are counted back.
When the connection drops or comes back (a server restart, a reconnect), the requests
outstanding are taken as lost and asked for again at once (a 503 while JetStream starts is
asked again at the next take), so an idle worker resumes within about a second of the server
answering; requests unanswered past their expiry are asked for again too. (Idle heartbeats in
every request would tell the same, but halve the delivery rate: measured.) A request ended by
a consumer leader change or the consumer's deletion raises :class:`ConsumerInterrupted`
(transient: the supervisor sets the worker up again).

Projectors (``eventkit_<projector>``): the consumer is only transport, the SQL checkpoint is the
truth; every start resets it to ``checkpoint + 1``. A projector's consumer takes the whole stream
(no filter) when its subjects hold a good share of the messages ahead
(:mod:`eventkit.runtime.density`).

Reactors pass their own consumer config and positioning (``setup``) and acknowledge each message
explicitly (through :mod:`eventkit.runtime.port`); with a priority ``group`` (pinned
client) one worker at a time receives, the others stand by. ``passes_over`` (a partition's
consumer of a partitioned reactor) acknowledges the messages of other partitions as they
arrive: they never reach the buffer, the runner or an in-progress ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from eventkit.errors import StoreUnavailableError
from eventkit.runtime.backoff import Pacing
from eventkit.runtime.density import takes_whole_stream
from eventkit.store import protocol as p
from eventkit.store.nats.delivery import Delivered, RawSubscription, subscribe

log = logging.getLogger("eventkit.runtime")

AckMode = Literal["none", "all", "explicit"]

SETUP_FOR = 30.0
"""Seconds a consumer's set-up is tried again while JetStream does not answer (a restart, an
election: an R3 consumer's leader election takes several seconds)."""
STATUS = "Status"
PENDING_MESSAGES = "Nats-Pending-Messages"
PIN_ID = "Nats-Pin-Id"


class ConsumerInterrupted(StoreUnavailableError):
    """The server ended the worker's pull requests: its consumer's leader changed, or the
    consumer was deleted (``reason``). Transient: setting the worker up again recovers."""

    def __init__(self, consumer: str, reason: str) -> None:
        self.consumer = consumer
        self.reason = reason
        super().__init__(f"consumer {consumer!r}: {reason}")


def consumer_name(projector: str) -> str:
    return f"eventkit_{projector}"


def parse_reply(reply: str) -> tuple[int, int, int, int]:
    """``$JS.ACK`` reply subject -> (stream seq, consumer seq, timestamp ns, pending)."""
    t = reply.split(".")
    o = 0 if len(t) == 9 else 2  # v1: 9 tokens; v2 adds domain and account hash
    return int(t[5 + o]), int(t[6 + o]), int(t[7 + o]), int(t[8 + o])


def delivered_count(reply: str) -> int:
    """How many times this message was delivered (1 on the first delivery)."""
    t = reply.split(".")
    return int(t[4 if len(t) == 9 else 6])


class Puller:
    """Keeps pull requests outstanding on a durable consumer and buffers what arrives."""

    def __init__(
        self,
        store: Any,
        projector: str,
        filters: list[str],
        *,
        batch: int = 512,
        ack: AckMode = "none",
        expires: float = 30.0,
        name: str | None = None,
        setup: Callable[[], Awaitable[int]] | None = None,
        group: str | None = None,
        cover: bool = False,
        setup_for: float = SETUP_FOR,
        passes_over: Callable[[Delivered], bool] | None = None,
    ) -> None:
        self.nc = store.nc
        self.js = store.js
        self.stream: str = store.stream
        self.name = name or consumer_name(projector)
        self.setup = setup
        self.group = group
        self._pin = ""
        self.filters = filters
        self.cover = cover
        self.whole = False
        """The consumer takes the whole stream (``cover``: chosen at each start); the runner
        passes over what is not on ``filters``."""
        self.batch = batch
        self.ack = ack
        self.expires = expires
        self._buffer: deque[Delivered] = deque()
        self._arrived = asyncio.Event()
        self._wanted = 1
        """Buffered messages that wake a waiting :meth:`take` (more while it fills a batch)."""
        self._outstanding = 0
        self._last_pull = 0.0
        self._sub: RawSubscription | None = None
        self._api = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.name}"
        self._inbox = ""
        self.error: Exception | None = None
        self.pending_at_start = 0
        self.setup_for = setup_for
        self._lost = False
        """The connection dropped or came back since the requests were made."""
        self._pulling = True
        self.passes_over = passes_over
        """Messages acknowledged on arrival and never buffered (another partition's)."""
        self.passed_over = 0
        listen = getattr(store, "on_connection_change", None)
        if listen is not None:
            listen(self._connection_changed)

    @property
    def pin(self) -> str:
        """The pin id this worker holds in its priority ``group`` ("" when none, as far as it
        knows: the server may have moved it)."""
        return self._pin

    def _config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.name,
            filter_subjects=None if self.whole else self.filters,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE if self.ack == "none" else AckPolicy.ALL,
            max_ack_pending=-1 if self.ack == "none" else 100_000,
            max_waiting=64,
            inactive_threshold=None,
        )

    async def start(self, from_sequence: int = 1, *, fresh: bool = False) -> None:
        """Point the consumer at ``from_sequence`` (or run ``setup``) and start pulling on a
        fresh inbox. ``fresh``: delete the consumer first, which ends every pull request still
        waiting on it (a frozen former lease holder's would receive what the new holder should
        get until they expire)."""
        await self.stop()
        pacing = Pacing(first=0.1, cap=2.0)
        deadline = time.monotonic() + self.setup_for
        while True:
            try:
                if self.setup is not None:
                    self.pending_at_start = await self.setup()
                else:
                    await self._position(from_sequence, fresh)
                break
            except (
                nats.errors.TimeoutError,
                nats.errors.NoRespondersError,
                nats.js.errors.ServiceUnavailableError,  # JetStream not ready (restart, election)
            ) as e:
                wait = pacing.next()
                if time.monotonic() + wait > deadline:
                    raise StoreUnavailableError(
                        f"cannot set up consumer {self.name!r} on stream {self.stream!r} "
                        f"within {self.setup_for:g}s (is a leader being elected?): {e!r}"
                    ) from e
                await asyncio.sleep(wait)
        self._buffer.clear()
        self._arrived.clear()
        self._outstanding = 0
        self.error = None
        self._pulling = True
        self._inbox = self.nc.new_inbox()
        self._sub = await subscribe(self.nc, self._inbox, self._on_msg)
        await self._pull()

    async def _position(self, from_sequence: int, fresh: bool = False) -> None:
        if fresh:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.js.delete_consumer(self.stream, self.name)
        if self.cover:
            self.whole = await self._dense(from_sequence)
        cfg = self._config()
        try:
            info = await self.js.consumer_info(self.stream, self.name)
        except nats.js.errors.NotFoundError:
            info = None
        if info is not None and (
            info.config.ack_policy != cfg.ack_policy
            or sorted(info.config.filter_subjects or [info.config.filter_subject or ""])
            != sorted(cfg.filter_subjects or [""])
            or info.config.deliver_policy != DeliverPolicy.ALL
        ):
            log.info("consumer %s changed its configuration: recreating it", self.name)
            await self.js.delete_consumer(self.stream, self.name)
            info = None
        if info is None:
            await self.js.add_consumer(self.stream, cfg)
        reset = getattr(self.js, "reset_consumer", None)
        try:
            if reset is None:
                raise nats.js.errors.APIError(description="reset not supported")
            result = await reset(self.stream, self.name, seq=max(1, from_sequence))
            self.pending_at_start = int(result.info.num_pending or 0) if result.info else 0
        except nats.js.errors.ServiceUnavailableError:
            raise
        except nats.js.errors.APIError:
            # servers before 2.14: recreate the consumer at the sequence instead
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.js.delete_consumer(self.stream, self.name)
            cfg.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            cfg.opt_start_seq = max(1, from_sequence)
            created = await self.js.add_consumer(self.stream, cfg)
            self.pending_at_start = int(created.num_pending or 0)

    async def _dense(self, from_sequence: int) -> bool:
        return await takes_whole_stream(
            self.js, self.stream, self.name, self.filters, from_sequence, self.whole
        )

    async def _pull(self) -> None:
        want = self.batch * 2 - self._outstanding - len(self._buffer)
        if want < self.batch // 2 or self._sub is None or not self._pulling:
            return
        request: dict[str, Any] = {
            "batch": want,
            "expires": int(self.expires * 1e9),
        }
        if self.group is not None:
            request["group"] = self.group
            if self._pin:
                request["id"] = self._pin
        self._outstanding += want
        self._last_pull = time.monotonic()
        await self.nc.publish(self._api, json.dumps(request).encode(), reply=self._inbox)

    def _connection_changed(self) -> None:
        self._lost = True
        self._arrived.set()  # a waiting take() asks again now

    async def _on_msg(self, msg: Delivered) -> None:
        if msg.reply:
            self._outstanding -= 1
            if self.group is not None and msg.headers and PIN_ID in msg.headers:
                self._pin = msg.headers[PIN_ID]
            if self.passes_over is not None and self.passes_over(msg):
                self.passed_over += 1
                if self.ack != "none":
                    await self.nc.publish(msg.reply, b"+ACK")
                await self._pull()  # (only when a good part of the requests was used up)
                return
            self._buffer.append(msg)
            if len(self._buffer) >= self._wanted:
                self._arrived.set()
            return
        headers = msg.headers or {}
        status = headers.get(STATUS, "")
        if status == "100":  # idle heartbeat
            return
        if status == "423":  # the pin moved to another worker: ask again without it
            self._pin = ""
            self._outstanding = 0
            self._arrived.set()
            if self._sub is not None:
                await self._pull()
            return
        left = headers.get(PENDING_MESSAGES)
        if status in ("408", "409") and left is not None and left.isdigit():
            self._outstanding = max(0, self._outstanding - int(left))
        else:
            self._outstanding = 0
        description = headers.get(p.DESCRIPTION, "")
        if status == "409" and "Exceeded" not in description:
            self.error = ConsumerInterrupted(self.name, f"{status} {description}".strip())
        self._arrived.set()
        if status == "503":
            return  # JetStream does not answer (yet): the next take() asks again
        if self._sub is not None and self.error is None:
            await self._pull()

    async def take(self, limit: int, timeout: float, fill: float = 0.0) -> list[Delivered]:
        """Up to ``limit`` buffered messages; waits up to ``timeout`` for the first one.

        ``fill``: while the stream holds at least a full batch more than is buffered (catching
        up), wait up to ``fill`` seconds for ``limit`` messages: fewer, larger batches (each
        costs its transaction) once the work of a batch leaves the receiving behind. Live
        messages (nothing more pending) are taken at once."""
        if not self._buffer:
            self._arrived.clear()
            if self._lost or time.monotonic() - self._last_pull > self.expires + 5:
                self._lost = False
                self._outstanding = 0  # requests lost (a restart, a reconnect): ask again
            await self._pull()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout)
        if fill > 0 and 0 < len(self._buffer) < limit and self.error is None:
            last = self._buffer[-1].reply
            if last and parse_reply(last)[3] >= limit - len(self._buffer):
                await self._fill(limit, fill)
        if self.error is not None:
            raise self.error
        n = min(limit, len(self._buffer))
        popleft = self._buffer.popleft
        out = [popleft() for _ in range(n)]
        await self._pull()
        return out

    async def _fill(self, limit: int, wait: float) -> None:
        self._arrived.clear()
        self._wanted = limit
        try:
            await self._pull()
            if len(self._buffer) < limit:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), wait)
        finally:
            self._wanted = 1

    async def halt_pulling(self, wait: float) -> None:
        """Ask for nothing more and wait up to ``wait`` seconds for the requests outstanding
        to end (under ack policy none, what they deliver after the inbox closes is lost)."""
        self._pulling = False
        deadline = time.monotonic() + wait
        while self._outstanding > 0 and self._sub is not None and time.monotonic() < deadline:
            if self._lost:
                break  # the requests went with the connection: nothing more will come
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), 0.1)

    async def ack_all(self, msg: Delivered) -> None:
        if self.ack == "all" and msg.reply:
            await self.nc.publish(msg.reply, b"+ACK")

    async def acknowledge(self, msg: Delivered, body: bytes = b"+ACK") -> None:
        """Send one acknowledgement (``+ACK``, ``-NAK {...}``, ``+WPI``, ``+TERM``) for ``msg``;
        nothing under ack policy none."""
        if self.ack != "none" and msg.reply:
            await self.nc.publish(msg.reply, body)

    def buffered(self) -> list[Delivered]:
        """The messages delivered and not yet taken."""
        return list(self._buffer)

    def take_buffered(self) -> list[Delivered]:
        """Everything buffered and not yet taken (to hand back with a nak when stopping)."""
        out = list(self._buffer)
        self._buffer.clear()
        return out

    async def stop(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
        self._buffer.clear()
        self._outstanding = 0
