"""The event store on NATS JetStream.

One event per append is a plain publish with ``Nats-Expected-Last-Subject-Sequence`` and
``Nats-Msg-Id``; several events are one ADR-50 atomic batch. Reads use the batched direct get.
Transport errors are translated here, and only here, into eventkit errors.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import contextlib
import itertools
import json
import logging
import re
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from eventkit.errors import (
    ConcurrencyError,
    ConfigError,
    EventkitError,
    EventTooLargeError,
    ForgottenError,
    PermissionDeniedError,
    ServerVersionError,
    StoreUnavailableError,
)
from eventkit.store import protocol as p
from eventkit.store.base import (
    EncodedMessage,
    EventStore,
    Write,
    check_read_position,
    encode_writes,
)
from eventkit.store.codec import Codec, PayloadCipher
from eventkit.store.erasure import BODY, is_marker, marker_headers
from eventkit.store.records import RecordedEvent, StoredMessage
from eventkit.store.snapshots import Snapshot, SnapshotStore
from eventkit.store.subjects import (
    is_wildcard,
    subject_matches,
    validate_filter,
    validate_stream_name,
    validate_subject,
)

log = logging.getLogger(__name__)

READ_BATCH = 1000
"""Messages per batched direct get request."""
READ_MAX_BYTES = 8 * 1024 * 1024
"""Bytes per batched direct get request (the server ends the batch early past it)."""

T = TypeVar("T")
FIRST_CONNECT_ATTEMPTS = 2
"""Tries per server of the first connect; afterwards the connection reconnects for ever."""

_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    asyncio.TimeoutError,
)


class _Backoff:
    """Waits between tries of something unanswered, until ``retry_for`` seconds have passed
    since the helper was made: 0.05 s, doubling up to 1 s."""

    def __init__(self, retry_for: float, first_delay: float = 0.05) -> None:
        self._loop = asyncio.get_running_loop()
        self.deadline = self._loop.time() + retry_for
        self._delay = first_delay

    async def wait(self) -> bool:
        """Sleep before the next try; False (no sleep) when the deadline would pass first."""
        if self._loop.time() + self._delay >= self.deadline:
            return False
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, 1.0)
        return True


class JetStreamError(EventkitError):
    """A JetStream API error eventkit has no more specific translation for."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        self.code = code
        self.err_code = err_code
        self.description = description
        super().__init__(f"JetStream error {err_code} ({code}): {description}")


def parse_version(text: str) -> tuple[int, int, int]:
    """``"v2.12.1-beta"`` -> ``(2, 12, 1)``; ``(0, 0, 0)`` when unreadable."""
    core = text.strip().lstrip("v").split("-", 1)[0].split("+", 1)[0]
    parts = [*core.split("."), "0", "0", "0"][:3]
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return (0, 0, 0)


def parse_nats_time(text: str) -> datetime:
    """RFC 3339 with up to nanoseconds (``2026-11-27T09:33:34.123456789Z``) to an aware UTC time."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        # older Pythons / unusual forms: cut the fraction to microseconds
        base, _, rest = text.rstrip("Z").partition(".")
        digits = "".join(itertools.takewhile(str.isdigit, rest))
        zone = rest[len(digits) :] or "+00:00"
        dt = datetime.fromisoformat(f"{base}.{digits[:6]:0<6}{zone}")
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt if dt.tzinfo is UTC else dt.astimezone(UTC)


def format_nats_time(t: datetime) -> str:
    """An aware datetime as the RFC 3339 UTC text JetStream takes (``...Z``)."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ack_error(ack: dict[str, Any]) -> tuple[int, int, str] | None:
    err = ack.get("error")
    if not err:
        return None
    return int(err.get("code", 0)), int(err.get("err_code", 0)), str(err.get("description", ""))


def _actual_from(description: str) -> int | None:
    # "wrong last sequence: 5"
    tail = description.rsplit(":", 1)[-1].strip()
    return int(tail) if tail.isdigit() else None


def _first_reply(msg: Msg, fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(msg)


_Waiter = tuple[Callable[[Msg, asyncio.Future[Any]], None], asyncio.Future[Any], float, str]

_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"', re.I)


class _Denials:
    """Permission violations, which the server reports only asynchronously (nats-py hands them
    to ``error_cb``): each one fails at once what waits on the denied subject, instead of a
    timeout and retries seconds later."""

    def __init__(self) -> None:
        self.inbox: _Inbox | None = None
        self._guards: set[asyncio.Future[None]] = set()
        self.authorization: str | None = None

    def report(self, error: Exception) -> None:
        text = str(error)
        if "authorization violation" in text.lower():
            self.authorization = text
            return
        found = _VIOLATION.search(text)
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


class _Inbox:
    """One wildcard inbox subscription for every reply the store waits for (acks, direct
    gets). Lighter than ``nc.request``: a counter token per request, and one reaper task that
    expires overdue requests every ``TICK`` seconds instead of a timer per request."""

    TICK = 0.05

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self.prefix = nc.new_inbox() + "."
        self._cut = len(self.prefix)
        self._waiting: dict[str, _Waiter] = {}
        self._ids = itertools.count(1)
        self._sub: Any = None
        self._reaper: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def deny(self, kind: str, subject: str, error: PermissionDeniedError) -> None:
        """Fail what waits on a denied publish subject (or everything: the inbox is denied)."""
        subject = subject.lower()
        everything = kind == "subscription" and subject.startswith(self.prefix[:-1].lower())
        for _, fut, _, sent_to in list(self._waiting.values()):
            if (everything or sent_to.lower() == subject) and not fut.done():
                fut.set_exception(error)

    async def _dispatch(self, msg: Msg) -> None:
        entry = self._waiting.get(msg.subject[self._cut :])
        if entry is not None:
            entry[0](msg, entry[1])

    async def _open(self) -> None:
        async with self._lock:
            if self._sub is None:
                self._sub = await self._nc.subscribe(self.prefix + "*", cb=self._dispatch)

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
        on_reply: Callable[[Msg, asyncio.Future[Any]], None] = _first_reply,
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
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


async def _first_connect(
    options: dict[str, Any], hopeless: asyncio.Future[Exception], bound: float
) -> NATS:
    """``nats.connect`` that gives up at once on an error retrying cannot fix (TLS, bad
    credentials), and after ``bound`` seconds at the most: nats-py may otherwise wait for ever."""
    connecting = asyncio.ensure_future(nats.connect(**options))
    done, _ = await asyncio.wait(
        (connecting, hopeless), timeout=bound, return_when=asyncio.FIRST_COMPLETED
    )
    if connecting in done:
        return connecting.result()
    connecting.cancel()
    with contextlib.suppress(BaseException):
        await connecting
    if hopeless.done():
        raise hopeless.result()
    raise TimeoutError(f"no connection within {bound:.0f}s")


def _chained(
    user_cb: Callable[[], Awaitable[None]] | None, ours: Callable[[], None]
) -> Callable[[], Awaitable[None]]:
    async def cb() -> None:
        ours()
        if user_cb is not None:
            await user_cb()

    return cb


class _Pending:
    """One in-flight direct get: data messages until the end-of-batch (or the single reply)."""

    __slots__ = ("error", "more", "msgs", "single")

    def __init__(self, single: bool) -> None:
        self.msgs: list[Msg] = []
        self.single = single
        self.more = 0
        self.error: str | None = None

    def feed(self, msg: Msg, done: asyncio.Future[Any]) -> None:
        if done.done():
            return
        headers = msg.headers
        status = headers.get(p.STATUS) if headers else None
        if not status:
            self.msgs.append(msg)
            if self.single:
                done.set_result(None)
            return
        if status == "204":  # end of batch; Num-Pending says whether more match
            pending = headers.get(p.NUM_PENDING, "0") if headers else "0"
            self.more = int(pending) if pending.isdigit() else 0
        elif status != "404":
            desc = headers.get(p.DESCRIPTION, "") if headers else ""
            self.error = f"{status} {desc}".strip()
        done.set_result(None)


class _Unanswered(StoreUnavailableError):
    """A read that got no answer (timeout, no responders): worth trying again."""


class _DirectReader:
    """Batched direct gets (``$JS.API.DIRECT.GET.<stream>``)."""

    def __init__(self, inbox: _Inbox, stream: str) -> None:
        self._inbox = inbox
        self._api = f"$JS.API.DIRECT.GET.{stream}"

    async def request(
        self,
        request: dict[str, Any],
        timeout: float,
        subject: str | None = None,
        min_last_seq: int = 0,
    ) -> tuple[list[Msg], int]:
        """Send one direct get; return its data messages and how many more match after them.

        ``subject``: the ``$JS.API.DIRECT.GET.<stream>.<subject>`` form (last message of the
        subject). A request with ``batch`` or ``multi_last`` streams several messages and ends
        with an end-of-batch status (204); 404 means nothing matched. ``min_last_seq``: only a
        server whose copy of the stream reaches that sequence answers (a lagging replica hands
        the request to the leader): read-your-writes on a replicated stream.
        """
        pending = _Pending(single="batch" not in request and "multi_last" not in request)
        if min_last_seq:
            request = {**request, "min_last_seq": min_last_seq}
        if subject is None:
            api, body = self._api, json.dumps(request).encode()
        else:
            api, body = f"{self._api}.{subject}", json.dumps(request).encode() if request else b""
        try:
            await self._inbox.call(api, body, None, timeout, pending.feed)
        except nats.errors.TimeoutError as e:
            raise _Unanswered(
                f"direct get on {self._api} got no answer in {timeout}s "
                f"(is the server up, allow_direct on, and may this user read the stream?)"
            ) from e
        except nats.errors.ConnectionClosedError as e:
            raise StoreUnavailableError("the NATS connection is closed") from e
        if pending.error is not None:
            if pending.error.startswith("408"):
                raise ConfigError(f"bad direct get request {request!r}: {pending.error}")
            if pending.error.startswith("503"):
                raise _Unanswered("no responders for direct get (stream offline?)")
            if pending.error.startswith("412"):
                raise _Unanswered(
                    f"no replica of {self._api} has caught up to sequence {min_last_seq} yet"
                )
            raise StoreUnavailableError(f"direct get failed: {pending.error}")
        return pending.msgs, pending.more


def _to_stored(msg: Msg) -> StoredMessage:
    h = msg.headers or {}
    return StoredMessage(
        h[p.SUBJECT], int(h[p.SEQUENCE]), parse_nats_time(h[p.TIME_STAMP]), h, msg.data
    )


class JetStreamEventStore(EventStore):
    """The event store on a JetStream stream (subjects ``<stream>.>``).

    ::

        url = "nats://127.0.0.1:4222"
        async with await JetStreamEventStore.connect(url, stream="bank") as store:
            seq = await store.append("bank.account.a-1", [AccountOpened(owner="ada")],
                                     expected_sequence=0)
            events = await store.read("bank.account.a-1")

    ``connect`` creates the stream (file storage, ``allow_direct``, ``allow_atomic``, the duplicate
    window and replicas given) or updates an existing one to have them.
    """

    def __init__(
        self,
        nc: NATS,
        stream: str,
        *,
        codec: Codec | None = None,
        own_connection: bool = True,
        publish_timeout: float = 2.0,
        retry_for: float = 20.0,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.stream = validate_stream_name(stream)
        self.codec = codec or Codec()
        self.publish_timeout = publish_timeout
        self.read_timeout = max(publish_timeout, 5.0)
        self.retry_for = retry_for
        self._own = own_connection
        self._inbox = _Inbox(nc)
        self._reader = _DirectReader(self._inbox, stream)
        self._snapshots: KVSnapshotStore | None = None
        self.replicas = 1
        self._errors: collections.deque[Exception] = collections.deque(maxlen=100)
        self._denials = _Denials()
        self._denials.inbox = self._inbox
        self.server_version = "0.0.0"
        self._high = 0
        """The highest stream sequence this process has seen (appended or read)."""
        self._connection_listeners: list[Callable[[], None]] = []

    # -- connecting -----------------------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        url: str | Sequence[str] | None = None,
        *,
        stream: str,
        replicas: int = 1,
        duplicate_window: float = 120.0,
        cipher: PayloadCipher | None = None,
        codec: Codec | None = None,
        settings: Any = None,
        publish_timeout: float = 2.0,
        retry_for: float = 20.0,
        **connect_options: Any,
    ) -> Self:
        """Connect, then create or update the stream with what eventkit needs.

        ``url`` None: the servers of ``settings`` (``EVENTKIT_NATS_URL``), else the embedded server
        (started on demand under ``./.eventkit``). ``duplicate_window`` (seconds) bounds how long a
        retried append is recognised by its event ids alone. Raises ``ServerVersionError`` when the
        server is older than 2.12 (atomic batches), ``StoreUnavailableError`` when unreachable.
        """
        validate_stream_name(stream)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 5:
            raise ConfigError(f"replicas must be an int 1..5, got {replicas!r}")
        if not duplicate_window > 0:
            raise ConfigError(f"duplicate_window must be > 0 seconds, got {duplicate_window!r}")
        options: dict[str, Any] = {}
        if settings is not None:
            options.update(settings.nats_connect_options())
        if url is not None:
            options["servers"] = [url] if isinstance(url, str) else list(url)
        if not options.get("servers"):
            from eventkit.server import ensure_running

            if settings is not None:
                info = ensure_running(settings.home, encrypt_key=settings.server_store_key)
            else:
                info = ensure_running()
            options["servers"] = [info.url]
        options.setdefault("name", "eventkit")
        options.setdefault("max_reconnect_attempts", -1)
        options.setdefault("reconnect_time_wait", 0.25)
        options.update(connect_options)
        errors: collections.deque[Exception] = collections.deque(maxlen=100)
        denials = _Denials()
        user_error_cb = options.get("error_cb")
        hopeless: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        listeners: list[Callable[[], None]] = []

        def changed() -> None:
            for listener in listeners:
                listener()

        async def on_error(e: Exception) -> None:
            errors.append(e)
            denials.report(e)
            if isinstance(e, nats.errors.SlowConsumerError):
                changed()  # messages were dropped: what listens may have missed some
            if (
                isinstance(e, ssl.SSLError) or denials.authorization is not None
            ) and not hopeless.done():
                hopeless.set_result(e)  # retrying the first connect cannot help
            if user_error_cb is not None:
                await user_error_cb(e)

        options["error_cb"] = on_error
        for event in ("disconnected_cb", "reconnected_cb"):
            options[event] = _chained(options.get(event), changed)
        # nats-py retries a failed first connect for ever unless attempts are bounded: bound the
        # first connect (bad credentials, TLS errors, a server that is down fail at once), then
        # restore the reconnect policy asked for
        reconnects = options["max_reconnect_attempts"]
        options["max_reconnect_attempts"] = FIRST_CONNECT_ATTEMPTS
        bound = float(options.get("connect_timeout", 2.0)) * (FIRST_CONNECT_ATTEMPTS + 1)
        bound = bound * len(options["servers"]) + 1.0
        try:
            nc = await _first_connect(options, hopeless, bound)
        except (OSError, nats.errors.Error, TimeoutError) as e:
            if denials.authorization is not None:
                raise PermissionDeniedError(
                    f"NATS at {options['servers']} refused the credentials "
                    f"({denials.authorization}); check EVENTKIT_USER/EVENTKIT_PASSWORD, "
                    f"EVENTKIT_TOKEN, EVENTKIT_NKEY or EVENTKIT_CREDS"
                ) from e
            raise StoreUnavailableError(
                f"cannot connect to NATS at {options['servers']}: {e!r}; is the server running "
                f"(eventkit server status), the URL right (EVENTKIT_NATS_URL) and TLS set up "
                f"as the server expects (EVENTKIT_TLS_*)?"
            ) from e
        nc.options["max_reconnect_attempts"] = reconnects
        store = cls(
            nc,
            stream,
            codec=codec or Codec(cipher=cipher),
            publish_timeout=publish_timeout,
            retry_for=retry_for,
        )
        store._errors = errors
        store._denials = denials
        store._connection_listeners = listeners
        denials.inbox = store._inbox
        try:
            await denials.guard(
                store.ensure_stream(replicas=replicas, duplicate_window=duplicate_window)
            )
        except BaseException:
            await nc.close()
            raise
        return store

    def on_connection_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever the connection drops, comes back, or the client drops
        messages as a slow consumer: anything learnt from core-NATS notices may be stale then.
        (Only for stores made by :meth:`connect`.)"""
        self._connection_listeners.append(listener)

    def check_server_version(self, version: str | None = None) -> None:
        """``ServerVersionError`` unless the server (or ``version``) supports atomic batches."""
        if version is None:
            server = self.nc._current_server
            version = (server.server_version if server is not None else "") or "0.0.0"
        self.server_version = version
        if parse_version(version) < parse_version(p.ATOMIC_BATCH_SERVER):
            raise ServerVersionError(
                "atomic multi-event appends (ADR-50)", p.ATOMIC_BATCH_SERVER, version
            )

    async def ensure_stream(self, *, replicas: int = 1, duplicate_window: float = 120.0) -> None:
        """Create the stream, or update it to have what eventkit needs (never narrows it)."""
        self.check_server_version()
        self.replicas = replicas
        try:
            info = await self.js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            want = StreamConfig(
                name=self.stream,
                subjects=[f"{self.stream}.>"],
                storage=StorageType.FILE,
                num_replicas=replicas,
                allow_direct=True,
                allow_atomic=True,
                duplicate_window=duplicate_window,
            )
            try:
                await self.js.add_stream(want)
            except nats.js.errors.APIError as e:
                raise self._translate_api(e, f"creating stream {self.stream!r}") from e
            return
        except nats.js.errors.APIError as e:
            raise self._translate_api(e, f"looking up stream {self.stream!r}") from e
        except nats.errors.TimeoutError as e:
            raise StoreUnavailableError(
                f"JetStream did not answer for stream {self.stream!r}: is JetStream enabled on the "
                f"server (nats-server -js) and may this user use it?"
            ) from e
        cfg = info.config
        subjects = list(cfg.subjects or [])
        changes: list[str] = []
        if not cfg.allow_direct:
            cfg.allow_direct = True
            changes.append("allow_direct")
        if not cfg.allow_atomic:
            cfg.allow_atomic = True
            changes.append("allow_atomic")
        if f"{self.stream}.>" not in subjects:
            cfg.subjects = [*subjects, f"{self.stream}.>"]
            changes.append("subjects")
        if cfg.num_replicas != replicas:
            cfg.num_replicas = replicas
            changes.append("replicas")
        if cfg.duplicate_window is None or abs(cfg.duplicate_window - duplicate_window) > 1e-6:
            cfg.duplicate_window = duplicate_window
            changes.append("duplicate_window")
        if cfg.storage != StorageType.FILE:
            log.warning("stream %s uses %s storage, not file storage", self.stream, cfg.storage)
        if changes:
            log.info("updating stream %s: %s", self.stream, ", ".join(changes))
            try:
                await self.js.update_stream(cfg)
            except nats.js.errors.APIError as e:
                raise self._translate_api(e, f"updating stream {self.stream!r}") from e

    def _translate_api(self, e: nats.js.errors.APIError, doing: str) -> EventkitError:
        code = int(e.code or 0)
        err_code = int(e.err_code or 0)
        desc = str(e.description or "")
        if "permission" in desc.lower() or code == 403:
            return PermissionDeniedError(f"{doing}: permission denied ({desc})")
        return JetStreamError(code, err_code, f"{doing}: {desc}")

    @property
    def max_payload(self) -> int:
        """The server's max message size (headers + payload), in bytes."""
        return int(self.nc.max_payload)

    # -- appending ------------------------------------------------------------------------
    async def append_many(self, writes: Sequence[Write]) -> list[int]:
        """Append to several subjects in one atomic batch; return each write's last sequence.

        A write without ``expected_sequence`` is sent with the expectation of its subject's
        last sequence, read just before (and read again when another writer came between), so
        that the server refuses it on a forgotten subject (``ForgottenError``)."""
        if all(isinstance(w, Write) and w.expected_sequence is not None for w in writes):
            return await self._append_checked(writes)
        for _ in range(UNCHECKED_ATTEMPTS):
            derived = {w.subject for w in writes if w.expected_sequence is None}
            lasts = await self._last_messages(sorted(derived))
            checked: list[Write] = []
            for w in writes:
                if w.subject not in derived:
                    checked.append(w)
                    continue
                last = lasts.get(w.subject)
                if last is not None and is_marker(last.headers):
                    raise ForgottenError(w.subject)
                checked.append(with_expectation(w, last.sequence if last is not None else 0))
            try:
                return await self._append_checked(checked)
            except ConcurrencyError as e:
                if e.subject not in derived:
                    raise
        raise StoreUnavailableError(
            f"append to {writes[0].subject!r}: other writers kept appending to its subject "
            f"between reading its last sequence and appending ({UNCHECKED_ATTEMPTS} tries)"
        )

    async def _last_messages(self, subjects: Sequence[str]) -> dict[str, StoredMessage]:
        """The last message of each subject (one direct get for them all)."""
        if len(subjects) == 1:
            last = await self.last_message(subjects[0])
            return {} if last is None else {subjects[0]: last}
        for s in subjects:
            validate_subject(s, self.stream)
        found: dict[str, StoredMessage] = {}
        msgs, _ = await self._direct({"multi_last": list(subjects), "batch": len(subjects)})
        for msg in msgs:
            m = _to_stored(msg)
            found[m.subject] = m
        return found

    async def _append_checked(self, writes: Sequence[Write]) -> list[int]:
        msgs = await encode_writes(self, writes, self.max_payload)
        if len(msgs) == 1:
            last = [await self._publish_one(writes[0], msgs[0])]
        else:
            last = await self._publish_batch(writes, msgs)
        self._seen(max(last))
        return last

    async def _request(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str],
        timeout: float,
    ) -> Msg:
        """One request to the server (the seam where tests inject a lost ack)."""
        msg: Msg = await self._inbox.call(subject, payload, headers, timeout)
        return msg

    async def _send(self, send: Callable[[], Awaitable[Msg]], describe: str) -> dict[str, Any]:
        """Send until the server answers; return its ack (JSON)."""
        backoff: _Backoff | None = None  # the deadline counts from the first unanswered try
        while True:
            try:
                msg = await send()
                if not (msg.headers and msg.headers.get(p.STATUS) == "503"):
                    break
                error: Exception | None = None
            except _TRANSIENT as e:
                error = e
            except nats.errors.MaxPayloadError as e:
                raise EventTooLargeError(describe, -1, self.max_payload) from e
            except nats.errors.ConnectionClosedError as e:
                raise StoreUnavailableError(
                    f"{describe}: the NATS connection is closed; the append may or may not be "
                    f"stored: retry it with the same event ids"
                ) from e
            # no answer: the message may or may not have been stored; retrying is safe
            # because every event keeps its Nats-Msg-Id, and conflicts are resolved below
            backoff = backoff or _Backoff(self.retry_for, first_delay=0.02)
            if not await backoff.wait():
                raise StoreUnavailableError(
                    f"{describe}: no answer from JetStream within {self.retry_for}s ({error!r}); "
                    f"the append may or may not be stored: retry it with the same event ids"
                ) from error
        try:
            ack: dict[str, Any] = json.loads(msg.data)
        except ValueError as e:
            raise StoreUnavailableError(f"{describe}: unreadable ack {msg.data!r}") from e
        return ack

    async def _publish_one(self, w: Write, m: EncodedMessage) -> int:
        subject, headers, payload = m
        timeout = self.publish_timeout
        ack = await self._send(
            lambda: self._request(subject, payload, headers, timeout), f"append to {subject!r}"
        )
        err = _ack_error(ack)
        if err is None:
            return int(ack["seq"])
        (last,) = await self._resolve_error(err, [w], 1)
        return last

    async def _publish_batch(
        self, writes: Sequence[Write], msgs: list[EncodedMessage]
    ) -> list[int]:
        n = len(msgs)
        nc = self.nc

        async def send() -> Msg:
            # a fresh batch id per try: a half-sent earlier try can never merge into this one
            batch_id = uuid.uuid4().hex
            for i in range(n - 1):
                subject, headers, payload = msgs[i]
                h = dict(headers)
                h[p.BATCH_ID] = batch_id
                h[p.BATCH_SEQUENCE] = str(i + 1)
                await nc.publish(subject, payload, headers=h)
            subject, headers, payload = msgs[-1]
            h = dict(headers)
            h[p.BATCH_ID] = batch_id
            h[p.BATCH_SEQUENCE] = str(n)
            h[p.BATCH_COMMIT] = "1"
            return await self._request(subject, payload, h, self.publish_timeout)

        describe = f"atomic append of {n} events to {sorted({m[0] for m in msgs})}"
        gaps = 0
        while True:
            ack = await self._send(send, describe)
            err = _ack_error(ack)
            if err is None:
                break
            if err[1] == p.ERR_BATCH_GAP and gaps < 5:
                # part of the batch was lost on the way (e.g. a reconnect): send it again
                gaps += 1
                continue
            if err[1] == p.ERR_BATCH_DISABLED:
                raise ServerVersionError(
                    "atomic multi-event appends (allow_atomic on the stream)",
                    p.ATOMIC_BATCH_SERVER,
                    self.server_version,
                )
            return await self._resolve_error(err, writes, n)
        return _batch_sequences(writes, int(ack["seq"]))

    async def _resolve_error(
        self, err: tuple[int, int, str], writes: Sequence[Write], count: int
    ) -> list[int]:
        """An append was refused: it may be our own earlier try (lost ack), else a conflict."""
        code, err_code, desc = err
        conflict = err_code in (p.ERR_WRONG_LAST_SEQUENCE, p.ERR_WRONG_LAST_SEQUENCE_CONSTANT)
        if conflict or err_code == p.ERR_BATCH_DUPLICATE_MSG_ID:
            # A retry whose first try was stored is refused (10071 on R1, 10201 for a batch):
            # look for our own last event id on the subject; an append is all-or-nothing.
            last = await self._find_stored(writes[-1])
            if last is not None:
                return _batch_sequences(writes, last) if count > 1 else [last]
        if conflict:
            # nothing was stored. 10164 (a replicated stream, another expectation in flight)
            # names no sequence: look it up. A forgotten subject raises ForgottenError here.
            checked = [w for w in writes if w.expected_sequence is not None]
            reported = _actual_from(desc)
            for w in checked:
                actual = await self.last_sequence(w.boundary or w.subject)
                if actual != w.expected_sequence:
                    if len(checked) == 1 and reported is not None:
                        actual = reported
                    raise ConcurrencyError(w.subject, w.expected_sequence or 0, actual)
            w0 = checked[0] if checked else writes[0]
            raise ConcurrencyError(w0.subject, w0.expected_sequence or 0, reported)
        if err_code == p.ERR_BATCH_DUPLICATE_MSG_ID:
            raise ConfigError(
                f"append to {writes[0].subject!r}: some of its event ids are stored already "
                f"(but not all of them); give new events new ids"
            )
        if "permission" in desc.lower():
            raise PermissionDeniedError(f"append to {writes[0].subject!r}: {desc}")
        raise JetStreamError(code, err_code, f"append to {writes[0].subject!r}: {desc}")

    async def _find_stored(self, w: Write) -> int | None:
        """The sequence of ``w``'s last event id on its subject, if it is stored."""
        target = w.ids[-1]
        msgs, _ = await self._direct({}, subject=w.subject)
        if not msgs or not msgs[0].headers:
            return None
        if msgs[0].headers.get(p.MSG_ID) == target:
            return int(msgs[0].headers[p.SEQUENCE])
        # others appended after us: our events come after the sequence we expected
        async for m in self._scan((w.expected_sequence or 0) + 1, w.subject, None, None):
            if m.headers.get(p.MSG_ID) == target:
                return m.sequence
        return None

    # -- reading --------------------------------------------------------------------------
    def _seen(self, sequence: int) -> None:
        if sequence > self._high:
            self._high = sequence

    async def _direct(
        self,
        request: dict[str, Any],
        subject: str | None = None,
        reader: _DirectReader | None = None,
    ) -> tuple[list[Msg], int]:
        """One direct get (on the event stream, or ``reader``'s stream), tried again while
        unanswered (a restart, a leader election) for up to ``retry_for`` seconds, like appends;
        reads are idempotent.

        On a replicated event stream the request asks for a server that has at least every
        sequence this process has seen (``min_last_seq``): a process reads its own writes and
        its reads never go backwards, while caught-up replicas still share the load.
        """
        own = reader is None
        reader = reader or self._reader
        floor = self._high if own and self.replicas > 1 else 0
        backoff = _Backoff(self.retry_for)
        while True:
            try:
                msgs, more = await reader.request(request, self.read_timeout, subject, floor)
                break
            except _Unanswered as e:
                if not await backoff.wait():
                    raise StoreUnavailableError(
                        f"{e}; still unanswered after {self.retry_for:g}s of retries"
                    ) from e
        if own and msgs and msgs[-1].headers:
            seq = msgs[-1].headers.get(p.SEQUENCE)
            if seq is not None:
                self._seen(int(seq))
        return msgs, more

    async def read(self, subject: str, after: int = 0) -> list[RecordedEvent[Any]]:
        """Every event of ``subject`` after sequence ``after``, in order (batched direct gets).

        A forgotten subject (see :mod:`eventkit.store.erasure`) has no events."""
        validate_subject(subject, self.stream)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ConfigError(f"after must be an int >= 0, got {after!r}")
        raw = [m async for m in self._scan(after + 1, subject, None, None)]
        cipher = self.codec.cipher
        if any(is_marker(m.headers) for m in raw):
            forgotten = getattr(cipher, "forgotten", None)
            if forgotten is not None:
                forgotten(subject)
            return []
        if raw and cipher is not None and any(p.ENCRYPTION in m.headers for m in raw):
            await cipher.prepare([subject], create=False)
        decode = self.codec.decode
        return [decode(m) for m in raw]

    async def _scan(
        self,
        start: int,
        subject: str | None,
        from_time: datetime | None,
        end: int | None,
        reader: _DirectReader | None = None,
    ) -> AsyncIterator[StoredMessage]:
        """Messages from ``start`` (or ``from_time``) on, of ``subject`` (a filter) or all."""
        req: dict[str, Any] = {"batch": READ_BATCH, "max_bytes": READ_MAX_BYTES}
        if subject is not None:
            req["next_by_subj"] = subject
        if from_time is not None:
            req["start_time"] = format_nats_time(from_time)
        else:
            req["seq"] = max(1, start)
        while True:
            msgs, more = await self._direct(req, reader=reader)
            if not msgs:
                return
            for msg in msgs:
                m = _to_stored(msg)
                if end is not None and m.sequence > end:
                    return
                yield m
            if more <= 0:
                return
            req.pop("start_time", None)
            req["seq"] = m.sequence + 1

    async def read_all(
        self,
        from_sequence: int = 1,
        from_time: datetime | None = None,
        subjects: Sequence[str] | None = None,
    ) -> AsyncIterator[RecordedEvent[Any]]:
        """Stream every event (of ``subjects`` filters, when given) from a sequence or a time,
        in stream order, up to the stream's last sequence at the call::

            async for rec in store.read_all(from_time=datetime(2026, 1, 1, tzinfo=UTC)):
                print(rec.sequence, rec.event)
        """
        check_read_position(from_sequence, from_time)
        filters = [validate_filter(s, self.stream) for s in subjects] if subjects else None
        single = filters[0] if filters and len(filters) == 1 else None
        end = await self.last_sequence()
        if end == 0:
            return
        cipher = self.codec.cipher
        decode = self.codec.decode
        system = p.system_prefix(self.stream)  # eventkit's own events (GDPR notices)
        async for m in self._scan(from_sequence, single, from_time, end):
            if m.sequence < from_sequence or m.subject.startswith(system):
                continue
            if (
                filters
                and single is None
                and not any(subject_matches(f, m.subject) for f in filters)
            ):
                continue
            if is_marker(m.headers):
                continue
            if cipher is not None and p.ENCRYPTION in m.headers:
                await cipher.prepare([m.subject], create=False)
            yield decode(m)

    async def read_raw(
        self, subject: str | None = None, from_sequence: int = 1
    ) -> AsyncIterator[StoredMessage]:
        """Stored messages (of ``subject``, a filter, when given) without decoding."""
        if subject is not None:
            validate_filter(subject, self.stream)
        async for m in self._scan(from_sequence, subject, None, None):
            yield m

    async def read_stream(
        self, stream: str, subject: str, from_sequence: int = 1
    ) -> AsyncIterator[StoredMessage]:
        """Stored messages of another stream of this account (a KV bucket's), by filter."""
        reader = _DirectReader(self._inbox, stream)
        async for m in self._scan(from_sequence, subject, None, None, reader):
            yield m

    async def last_message(
        self, subject: str, *, stream: str | None = None, leader: bool = False
    ) -> StoredMessage | None:
        """The last message of ``subject`` on the event stream (or ``stream``), None if none.

        ``leader``: asked of the stream leader (not a possibly lagging replica)."""
        name = stream or self.stream
        if leader:
            try:
                raw = await self._denials.guard(self.js.get_msg(name, subject=subject))
            except nats.js.errors.NotFoundError:
                return None
            except nats.js.errors.APIError as e:
                raise self._translate_api(e, f"reading the last message of {subject!r}") from e
            headers = dict(raw.headers or {})
            when = parse_nats_time(str(raw.time)) if raw.time else datetime.now(UTC)
            return StoredMessage(
                raw.subject or subject, int(raw.seq or 0), when, headers, raw.data or b""
            )
        reader = None if stream is None else _DirectReader(self._inbox, stream)
        msgs, _ = await self._direct({}, subject, reader)
        return _to_stored(msgs[0]) if msgs and msgs[0].headers else None

    async def _stream_last(self, name: str) -> int:
        backoff = _Backoff(self.retry_for)
        while True:  # retried while unanswered (a restart, an election), like reads
            try:
                info = await self._denials.guard(self.js.stream_info(name))
                return int(info.state.last_seq)
            except nats.js.errors.APIError as e:
                if e.code != 503 or not await backoff.wait():
                    raise self._translate_api(e, f"stream info of {name!r}") from e
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
                if not await backoff.wait():
                    raise StoreUnavailableError(
                        f"no answer for stream info of {name!r} within {self.retry_for:g}s"
                    ) from e

    async def last_sequence_of_stream(self, name: str) -> int:
        """The last sequence of another stream of this account (a KV bucket's)."""
        return await self._stream_last(name)

    async def last_sequence(self, subject: str | None = None) -> int:
        """The last sequence of ``subject`` (or of any subject a filter matches), or of the
        stream; 0 when there is none. ``ForgottenError`` for a forgotten subject."""
        if subject is None:
            last = await self._stream_last(self.stream)
            self._seen(last)
            return last
        validate_filter(subject, self.stream)
        # last_by_subj takes a wildcard filter too and answers the highest sequence it matches
        msgs, _ = await self._direct({"last_by_subj": subject})
        if not msgs or not msgs[0].headers:
            return 0
        if is_marker(msgs[0].headers) and not is_wildcard(subject):
            raise ForgottenError(subject)
        return int(msgs[0].headers[p.SEQUENCE])

    async def mark_forgotten(self, subject: str) -> int:
        """Leave the erasure marker on ``subject`` (unless its last message is one already);
        return its sequence. From here on no append to ``subject`` is stored."""
        validate_subject(subject, self.stream)
        last = await self.last_message(subject)
        if last is not None and is_marker(last.headers):
            return last.sequence
        ack = await self._send(
            lambda: self._request(subject, BODY, marker_headers(subject), self.publish_timeout),
            f"marking {subject!r} forgotten",
        )
        err = _ack_error(ack)
        if err is not None:
            raise JetStreamError(err[0], err[1], f"marking {subject!r} forgotten: {err[2]}")
        self._seen(int(ack["seq"]))
        return int(ack["seq"])

    async def get(self, sequence: int) -> StoredMessage | None:
        """One stored message by stream sequence; None when absent or deleted."""
        msgs, _ = await self._direct({"seq": sequence})
        if not msgs:
            return None
        m = _to_stored(msgs[0])
        return m if m.sequence == sequence else None

    async def delete(self, sequence: int) -> bool:
        """Erase one message securely (payload overwritten); False when already gone."""
        try:
            return bool(await self._denials.guard(self.js.delete_msg(self.stream, sequence)))
        except nats.js.errors.APIError as e:
            if is_gone(e):
                return False
            raise self._translate_api(e, f"deleting sequence {sequence}") from e

    # -- snapshots ------------------------------------------------------------------------
    @property
    def snapshots(self) -> KVSnapshotStore:
        """Snapshots in the KV bucket ``<stream>_snapshots`` (created on first use)."""
        if self._snapshots is None:
            self._snapshots = KVSnapshotStore(self)
        return self._snapshots

    async def close(self) -> None:
        await self._inbox.close()
        if self._own and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()


UNCHECKED_ATTEMPTS = 50
"""Tries of an append without expectation while other writers keep moving its subject."""


def with_expectation(w: Write, expected: int) -> Write:
    """A copy of ``w`` (same event ids) that expects ``expected`` as its subject's last."""
    copy = object.__new__(Write)
    copy.subject = w.subject
    copy.events = w.events
    copy.expected_sequence = expected
    copy.event_ids = w.ids
    copy.boundary = None
    copy.ids = w.ids
    return copy


def _batch_sequences(writes: Sequence[Write], last: int) -> list[int]:
    """Each write's last sequence; a committed batch is stored contiguously, ending at ``last``."""
    if len(writes) == 1:
        return [last]
    total = sum(len(w.events) for w in writes)
    pos = last - total
    out: list[int] = []
    for w in writes:
        pos += len(w.events)
        out.append(pos)
    return out


def erasable_kv_config(bucket: str, replicas: int = 1) -> StreamConfig:
    """The stream of a KV bucket (history 1) that, unlike nats-py's, allows a secure erase of a
    message by sequence (``deny_delete`` off; the server cannot lift it later). Snapshots and
    the GDPR key bucket use it."""
    return StreamConfig(
        name=f"KV_{bucket}",
        subjects=[f"$KV.{bucket}.>"],
        max_msgs_per_subject=1,
        discard=DiscardPolicy.NEW,
        allow_rollup_hdrs=True,
        deny_delete=False,
        deny_purge=False,
        allow_direct=True,
        storage=StorageType.FILE,
        num_replicas=replicas,
    )


async def ensure_erasable_bucket(js: JetStreamContext, bucket: str, replicas: int) -> None:
    """Create the KV bucket's stream with :func:`erasable_kv_config` unless it exists; a bucket
    made elsewhere (nats-py's ``create_key_value`` sets ``deny_delete``) is refused, because its
    entries could not be erased securely."""
    name = f"KV_{bucket}"
    try:
        info = await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(erasable_kv_config(bucket, replicas))
        except nats.js.errors.APIError as e:
            raise StoreUnavailableError(
                f"cannot create the KV bucket {bucket!r}: {e.description}; may this user create "
                f"streams?"
            ) from e
        return
    if info.config.deny_delete:
        raise ConfigError(
            f"the KV bucket {bucket!r} was not made by eventkit: it denies erasing an entry "
            f"securely; delete its stream {name!r} (or move its entries) and connect again"
        )


def is_gone(e: nats.js.errors.APIError) -> bool:
    """Whether a delete by sequence failed only because the message is not there (any more)."""
    code = int(e.err_code or 0)
    # 10057 "no message found": another delete of the same sequence came first (two forgets
    # of one subject at once); 10057 "stream store EOF": a sequence past the stream's end
    description = str(e.description).lower()
    return code in (p.ERR_MESSAGE_NOT_FOUND, p.ERR_SEQUENCE_NOT_FOUND) or (
        code == p.ERR_MESSAGE_DELETE_FAILED and ("eof" in description or "found" in description)
    )


class KVSnapshotStore(SnapshotStore):
    """Snapshots in the KV bucket ``<stream>_snapshots`` (one key per subject, history 1).

    Reads are a direct get of the key's subject and writes a plain publish, so any subject is a
    valid key. A snapshot of a personal-data subject is sealed with the subject's key.
    """

    def __init__(self, store: JetStreamEventStore) -> None:
        self._store = store
        self.bucket = f"{store.stream}_snapshots"
        self.kv_stream = f"KV_{self.bucket}"
        self._prefix = f"$KV.{self.bucket}."
        self._reader = _DirectReader(store._inbox, self.kv_stream)
        self._ready = False

    async def _bucket(self) -> None:
        if not self._ready:
            await ensure_erasable_bucket(self._store.js, self.bucket, self._store.replicas)
            self._ready = True

    async def get(self, subject: str) -> Snapshot | None:
        await self._bucket()
        msgs, _ = await self._store._direct({}, self._prefix + subject, self._reader)
        if not msgs:
            return None
        msg = msgs[0]
        if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
            return None
        data: bytes = msg.data
        if not data:
            return None
        cipher = self._store.codec.cipher
        try:
            if data[:1] == b"!":
                if cipher is None:
                    return None
                key_id, _, sealed = data[1:].partition(b"!")
                await cipher.prepare([subject], create=False)
                data = cipher.decrypt(subject, key_id.decode(), sealed)
            return Snapshot.from_bytes(data)
        except EventkitError:
            return None

    async def put(self, snapshot: Snapshot) -> None:
        await self._bucket()
        data = snapshot.to_bytes()
        cipher = self._store.codec.cipher
        if cipher is not None and cipher.covers(snapshot.subject, None):
            await cipher.prepare([snapshot.subject], create=True)
            key_id, sealed = cipher.encrypt(snapshot.subject, data)
            data = b"!" + key_id.encode() + b"!" + sealed
        try:
            await self._store.js.publish(self._prefix + snapshot.subject, data, timeout=5.0)
        except nats.js.errors.APIError as e:
            raise self._store._translate_api(
                e, f"storing the snapshot of {snapshot.subject!r}"
            ) from e
        except nats.errors.TimeoutError as e:
            raise StoreUnavailableError(
                f"no answer storing the snapshot of {snapshot.subject!r}"
            ) from e

    async def delete(self, subject: str) -> int:
        await self._bucket()
        removed = 0
        while True:
            msgs, _ = await self._store._direct({}, self._prefix + subject, self._reader)
            if not msgs or not msgs[0].headers:
                break
            try:
                await self._store.js.delete_msg(self.kv_stream, int(msgs[0].headers[p.SEQUENCE]))
                removed += 1
            except nats.js.errors.APIError as e:
                if not is_gone(e):
                    raise self._store._translate_api(
                        e, f"erasing the snapshot of {subject!r}"
                    ) from e
        return removed
