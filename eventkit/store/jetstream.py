"""The event store on NATS JetStream.

One event per append is a plain publish with ``Nats-Expected-Last-Subject-Sequence`` and
``Nats-Msg-Id``; several events are one ADR-50 atomic batch. Reads use the batched direct get.
Transport errors are translated here, and only here, into eventkit errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from eventkit.errors import (
    ConcurrencyError,
    ConfigError,
    EventkitError,
    EventTooLargeError,
    PermissionDeniedError,
    ServerVersionError,
    StoreUnavailableError,
)
from eventkit.store import protocol as p
from eventkit.store.base import EventStore, Write
from eventkit.store.codec import Codec, PayloadCipher
from eventkit.store.records import RecordedEvent, StoredMessage
from eventkit.store.snapshots import Snapshot, SnapshotStore
from eventkit.store.subjects import (
    is_wildcard,
    subject_matches,
    validate_filter,
    validate_stream_name,
    validate_subject,
)

READ_BATCH = 1000
_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    asyncio.TimeoutError,
)


class JetStreamError(EventkitError):
    """A JetStream API error eventkit has no more specific translation for."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        self.code = code
        self.err_code = err_code
        self.description = description
        super().__init__(f"JetStream error {err_code} ({code}): {description}")


def parse_version(text: str) -> tuple[int, int, int]:
    core = text.lstrip("v").split("-", 1)[0].split("+", 1)[0]
    parts = (core.split(".") + ["0", "0", "0"])[:3]
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return (0, 0, 0)


def parse_nats_time(text: str) -> datetime:
    """RFC 3339 with up to nanoseconds (``2026-11-27T09:33:34.123456789Z``) to an aware UTC time."""
    if text.endswith("Z"):
        text = text[:-1]
    zone = ""
    for sign in ("+", "-"):
        idx = text.rfind(sign, 19)
        if idx != -1:
            text, zone = text[:idx], text[idx:]
            break
    if "." in text:
        base, frac = text.split(".", 1)
        text = f"{base}.{frac[:6]:0<6}"
    dt = datetime.fromisoformat(text + (zone or "+00:00"))
    return dt.astimezone(UTC)


def _ack_error(ack: dict[str, Any]) -> tuple[int, int, str] | None:
    err = ack.get("error")
    if not err:
        return None
    return int(err.get("code", 0)), int(err.get("err_code", 0)), str(err.get("description", ""))


def _actual_from(description: str) -> int | None:
    # "wrong last sequence: 5"
    tail = description.rsplit(":", 1)[-1].strip()
    return int(tail) if tail.isdigit() else None


class _DirectReader:
    """Batched direct gets over one multiplexed inbox subscription."""

    def __init__(self, nc: NATS, stream: str) -> None:
        self._nc = nc
        self._api = f"$JS.API.DIRECT.GET.{stream}"
        self._prefix = nc.new_inbox()
        self._queues: dict[str, asyncio.Queue[Msg]] = {}
        self._ids = itertools.count(1)
        self._sub: Any = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> None:
        if self._sub is None:
            async with self._lock:
                if self._sub is None:
                    self._sub = await self._nc.subscribe(self._prefix + ".*", cb=self._dispatch)

    async def _dispatch(self, msg: Msg) -> None:
        q = self._queues.get(msg.subject.rsplit(".", 1)[-1])
        if q is not None:
            q.put_nowait(msg)

    async def batch(self, request: dict[str, Any], timeout: float) -> list[Msg]:
        """Send one batched direct get; return its data messages (empty when nothing matches)."""
        await self._ensure()
        token = str(next(self._ids))
        q: asyncio.Queue[Msg] = asyncio.Queue()
        self._queues[token] = q
        out: list[Msg] = []
        try:
            await self._nc.publish(
                self._api, json.dumps(request).encode(), reply=f"{self._prefix}.{token}"
            )
            while True:
                try:
                    msg = await asyncio.wait_for(q.get(), timeout)
                except TimeoutError as e:
                    raise StoreUnavailableError(
                        f"direct get on {self._api} got no answer in {timeout}s "
                        f"(is allow_direct on, and may this user read the stream?)"
                    ) from e
                status = msg.headers.get(p.STATUS) if msg.headers else None
                if status is None or (not status and msg.data):
                    out.append(msg)
                    if request.get("batch") is None:
                        return out
                    continue
                if status in ("204", "404"):
                    return out
                if status == "408":
                    raise ConfigError(f"bad direct get request {request!r}")
                if status == "503" and not out:
                    raise StoreUnavailableError("no responders for direct get (stream offline?)")
                desc = msg.headers.get(p.DESCRIPTION, "") if msg.headers else ""
                raise StoreUnavailableError(f"direct get failed: {status} {desc}")
        finally:
            del self._queues[token]

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


def _to_stored(msg: Msg) -> StoredMessage:
    h = msg.headers or {}
    return StoredMessage(
        subject=h[p.SUBJECT],
        sequence=int(h[p.SEQUENCE]),
        time=parse_nats_time(h[p.TIME_STAMP]),
        headers=h,
        data=msg.data,
    )


class JetStreamEventStore(EventStore):
    """The event store on a JetStream stream (subjects ``<stream>.>``).

    ::

        async with await JetStreamEventStore.connect("nats://127.0.0.1:4222", stream="bank") as store:
            seq = await store.append("bank.account.a-1", [AccountOpened(owner="ada")],
                                     expected_sequence=0)
            events = await store.read("bank.account.a-1")
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
        self.retry_for = retry_for
        self._own = own_connection
        self._reader = _DirectReader(nc, stream)
        self._snapshots: KVSnapshotStore | None = None
        self.server_version = "0.0.0"

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
    ) -> JetStreamEventStore:
        """Connect, then create or update the stream with what eventkit needs.

        ``url`` None: the servers of ``settings`` (``EVENTKIT_NATS_URL``), else the embedded server
        (started on demand under ``./.eventkit``).
        """
        validate_stream_name(stream)
        if replicas < 1 or replicas > 5:
            raise ConfigError(f"replicas must be 1..5, got {replicas}")
        options: dict[str, Any] = {}
        if settings is not None:
            options.update(settings.nats_connect_options())
        if url is not None:
            options["servers"] = [url] if isinstance(url, str) else list(url)
        if not options.get("servers"):
            from eventkit.server import ensure_running

            home = settings.home if settings is not None else None
            info = ensure_running(home) if home is not None else ensure_running()
            options["servers"] = [info.url]
        options.setdefault("name", "eventkit")
        options.setdefault("max_reconnect_attempts", -1)
        options.setdefault("reconnect_time_wait", 0.25)
        options.update(connect_options)
        errors: list[Exception] = []

        async def on_error(e: Exception) -> None:
            errors.append(e)

        options.setdefault("error_cb", on_error)
        try:
            nc = await nats.connect(**options)
        except (OSError, nats.errors.Error, TimeoutError) as e:
            raise StoreUnavailableError(
                f"cannot connect to NATS at {options['servers']}: {e}; is the server running "
                f"(eventkit server status) and the URL right (EVENTKIT_NATS_URL)?"
            ) from e
        store = cls(
            nc,
            stream,
            codec=codec or Codec(cipher=cipher),
            publish_timeout=publish_timeout,
            retry_for=retry_for,
        )
        store._errors = errors
        try:
            await store._ensure_stream(replicas, duplicate_window)
        except BaseException:
            await nc.close()
            raise
        return store

    _errors: list[Exception]

    async def _ensure_stream(self, replicas: int, duplicate_window: float) -> None:
        self.server_version = self.nc.connected_server_version._server_version or "0.0.0"
        if parse_version(self.server_version) < parse_version(p.ATOMIC_BATCH_SERVER):
            raise ServerVersionError(
                "atomic multi-event appends (ADR-50)", p.ATOMIC_BATCH_SERVER, self.server_version
            )
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
            info = await self.js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            try:
                await self.js.add_stream(want)
                return
            except nats.js.errors.APIError as e:
                raise self._translate_api(e, f"creating stream {self.stream!r}") from e
        except nats.js.errors.APIError as e:
            raise self._translate_api(e, f"looking up stream {self.stream!r}") from e
        except nats.errors.TimeoutError as e:
            raise StoreUnavailableError(
                f"JetStream did not answer for stream {self.stream!r}: is JetStream enabled on the "
                f"server (nats-server -js) and may this user use it?"
            ) from e
        cfg = info.config
        subjects = list(cfg.subjects or [])
        if (
            not cfg.allow_direct
            or not cfg.allow_atomic
            or f"{self.stream}.>" not in subjects
        ):
            cfg.allow_direct = True
            cfg.allow_atomic = True
            if f"{self.stream}.>" not in subjects:
                cfg.subjects = [*subjects, f"{self.stream}.>"]
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
        return int(self.nc.max_payload)

    # -- appending ------------------------------------------------------------------------
    async def append_many(self, writes: Sequence[Write]) -> list[int]:
        if not writes:
            raise ConfigError("append needs at least one write")
        total = sum(len(w.events) for w in writes)
        if total == 0:
            raise ConfigError("append needs at least one event")
        if total > p.MAX_BATCH:
            raise ConfigError(
                f"an atomic append holds at most {p.MAX_BATCH} events, got {total}; split it"
            )
        for w in writes:
            validate_subject(w.subject, self.stream)
        if self.codec.cipher is not None:
            await self.codec.cipher.prepare([w.subject for w in writes], create=True)
        limit = self.max_payload
        msgs: list[tuple[str, dict[str, str], bytes]] = []
        seen: set[str] = set()
        for w in writes:
            first = True
            for event, eid in zip(w.events, w.ids, strict=True):
                headers, payload = self.codec.encode(w.subject, event, eid)
                if first and w.expected_sequence is not None and w.subject not in seen:
                    headers[p.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(w.expected_sequence)
                    if w.boundary is not None:
                        headers[p.EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT] = w.boundary
                first = False
                size = len(payload) + sum(len(k) + len(v) + 4 for k, v in headers.items()) + 80
                if size > limit:
                    raise EventTooLargeError(w.subject, size, limit)
                msgs.append((w.subject, headers, payload))
            seen.add(w.subject)
        if len(msgs) == 1:
            last = await self._publish_one(writes[0], *msgs[0])
            return [last]
        return await self._publish_batch(writes, msgs)

    async def _request(
        self, subject: str, payload: bytes, headers: dict[str, str], timeout: float
    ) -> Msg:
        """One request to the server (the seam where tests inject a lost ack)."""
        return await self.nc.request(subject, payload, timeout=timeout, headers=headers)

    async def _with_retries(
        self, send: Callable[[], Any], describe: str
    ) -> tuple[dict[str, Any], bool]:
        """Send until the server answers; return (ack json, whether an earlier try was lost)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        ambiguous = False
        delay = 0.05
        while True:
            try:
                msg: Msg = await send()
            except _TRANSIENT as e:
                ambiguous = True
                if loop.time() + delay > deadline:
                    raise StoreUnavailableError(
                        f"{describe}: no answer from JetStream within {self.retry_for}s ({e!r}); "
                        f"the append may or may not be stored: retry it with the same event ids"
                    ) from e
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            except nats.errors.MaxPayloadError as e:
                raise EventTooLargeError(describe, -1, self.max_payload) from e
            except nats.errors.ConnectionClosedError as e:
                raise StoreUnavailableError(f"{describe}: the NATS connection is closed") from e
            if msg.headers and msg.headers.get(p.STATUS) == "503":
                ambiguous = True
                if loop.time() + delay > deadline:
                    raise StoreUnavailableError(f"{describe}: JetStream has no responders")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            try:
                ack = json.loads(msg.data)
            except ValueError as e:
                raise StoreUnavailableError(f"{describe}: unreadable ack {msg.data!r}") from e
            return ack, ambiguous

    async def _publish_one(
        self, w: Write, subject: str, headers: dict[str, str], payload: bytes
    ) -> int:
        ack, ambiguous = await self._with_retries(
            lambda: self._request(subject, payload, headers, self.publish_timeout),
            f"append to {subject!r}",
        )
        err = _ack_error(ack)
        if err is None:
            return int(ack["seq"])
        return await self._resolve_error(err, [w], ambiguous)

    async def _publish_batch(
        self, writes: Sequence[Write], msgs: list[tuple[str, dict[str, str], bytes]]
    ) -> list[int]:
        batch_id = uuid.uuid4().hex
        n = len(msgs)

        async def send() -> Msg:
            for i, (subject, headers, payload) in enumerate(msgs[:-1], start=1):
                h = {**headers, p.BATCH_ID: batch_id, p.BATCH_SEQUENCE: str(i)}
                await self.nc.publish(subject, payload, headers=h)
            subject, headers, payload = msgs[-1]
            h = {
                **headers,
                p.BATCH_ID: batch_id,
                p.BATCH_SEQUENCE: str(n),
                p.BATCH_COMMIT: "1",
            }
            return await self._request(subject, payload, h, self.publish_timeout)

        describe = f"atomic append of {n} events to {sorted({m[0] for m in msgs})}"
        while True:
            ack, ambiguous = await self._with_retries(send, describe)
            err = _ack_error(ack)
            if err is None:
                last = int(ack["seq"])
                break
            if err[1] == p.ERR_BATCH_GAP and ambiguous:
                # a reconnect dropped part of the staged batch: send it again, under a new id
                batch_id = uuid.uuid4().hex
                continue
            if err[1] == p.ERR_BATCH_DISABLED:
                raise ServerVersionError(
                    "atomic multi-event appends (allow_atomic on the stream)",
                    p.ATOMIC_BATCH_SERVER,
                    self.server_version,
                )
            resolved = await self._resolve_error(err, writes, ambiguous or err[1] == p.ERR_BATCH_DUPLICATE_MSG_ID)
            return [resolved] if len(writes) == 1 else await self._sequences_of(writes)
        # a committed batch is stored contiguously: the last message has `last`
        result: list[int] = []
        pos = last - n
        for w in writes:
            pos += len(w.events)
            result.append(pos)
        return result

    async def _resolve_error(
        self, err: tuple[int, int, str], writes: Sequence[Write], ambiguous: bool
    ) -> int:
        code, err_code, desc = err
        if ambiguous or err_code == p.ERR_BATCH_DUPLICATE_MSG_ID:
            # an earlier try may have been stored: look for our last event id on the subject
            found = await self._find_stored(writes[-1])
            if found is not None:
                return found
        if err_code == p.ERR_WRONG_LAST_SEQUENCE:
            for w in writes:
                if w.expected_sequence is None:
                    continue
                actual = await self.last_sequence(w.boundary or w.subject)
                if actual != w.expected_sequence:
                    raise ConcurrencyError(w.subject, w.expected_sequence, actual)
            w0 = next((w for w in writes if w.expected_sequence is not None), writes[0])
            raise ConcurrencyError(w0.subject, w0.expected_sequence or 0, _actual_from(desc))
        if "permission" in desc.lower():
            raise PermissionDeniedError(f"append to {writes[0].subject!r}: {desc}")
        raise JetStreamError(code, err_code, f"append to {writes[0].subject!r}: {desc}")

    async def _find_stored(self, w: Write) -> int | None:
        target = w.ids[-1]
        start = (w.expected_sequence or 0) + 1
        async for m in self.read_raw(w.subject, from_sequence=start):
            if m.headers.get(p.MSG_ID) == target:
                return m.sequence
        return None

    async def _sequences_of(self, writes: Sequence[Write]) -> list[int]:
        out = []
        for w in writes:
            found = await self._find_stored(w)
            if found is None:
                raise StoreUnavailableError(f"batch reported stored but {w.subject!r} lacks it")
            out.append(found)
        return out

    # -- reading --------------------------------------------------------------------------
    async def _direct(self, request: dict[str, Any]) -> list[Msg]:
        return await self._reader.batch(request, max(self.publish_timeout, 5.0))

    async def read(self, subject: str, after: int = 0) -> list[RecordedEvent[Any]]:
        validate_subject(subject, self.stream)
        if not isinstance(after, int) or after < 0:
            raise ConfigError(f"after must be an int >= 0, got {after!r}")
        raw = [m async for m in self._scan(after + 1, subject, None, None)]
        if raw and self.codec.cipher is not None and any(p.ENCRYPTION in m.headers for m in raw):
            await self.codec.cipher.prepare([subject], create=False)
        decode = self.codec.decode
        return [decode(m) for m in raw]

    async def _scan(
        self,
        start: int,
        subject: str | None,
        from_time: datetime | None,
        end: int | None,
    ) -> AsyncIterator[StoredMessage]:
        req: dict[str, Any] = {"batch": READ_BATCH}
        if subject is not None:
            req["next_by_subj"] = subject
        if from_time is not None:
            req["start_time"] = from_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
        else:
            req["seq"] = max(1, start)
        while True:
            msgs = await self._direct(req)
            last = 0
            for msg in msgs:
                m = _to_stored(msg)
                if end is not None and m.sequence > end:
                    return
                last = m.sequence
                yield m
            if len(msgs) < READ_BATCH or not msgs:
                return
            pending = msgs[-1].headers.get(p.NUM_PENDING) if msgs[-1].headers else None
            if pending is not None and pending.isdigit() and int(pending) == 0:
                return
            req.pop("start_time", None)
            req["seq"] = last + 1

    async def read_all(
        self,
        from_sequence: int = 1,
        from_time: datetime | None = None,
        subjects: Sequence[str] | None = None,
    ) -> AsyncIterator[RecordedEvent[Any]]:
        if not isinstance(from_sequence, int) or from_sequence < 1:
            raise ConfigError(f"from_sequence must be an int >= 1, got {from_sequence!r}")
        if from_time is not None and from_time.tzinfo is None:
            raise ConfigError("from_time must be timezone-aware (e.g. datetime.now(UTC))")
        filters = [validate_filter(s, self.stream) for s in subjects] if subjects else None
        single = filters[0] if filters and len(filters) == 1 else None
        end = await self.last_sequence()
        cipher = self.codec.cipher
        async for m in self._scan(from_sequence, single, from_time, end):
            if filters and single is None and not any(subject_matches(f, m.subject) for f in filters):
                continue
            if cipher is not None and p.ENCRYPTION in m.headers:
                await cipher.prepare([m.subject], create=False)
            yield self.codec.decode(m)

    async def read_raw(
        self, subject: str | None = None, from_sequence: int = 1
    ) -> AsyncIterator[StoredMessage]:
        if subject is not None:
            validate_filter(subject, self.stream)
        async for m in self._scan(from_sequence, subject, None, None):
            yield m

    async def last_sequence(self, subject: str | None = None) -> int:
        if subject is None:
            try:
                info = await self.js.stream_info(self.stream)
            except nats.js.errors.APIError as e:
                raise self._translate_api(e, f"stream info of {self.stream!r}") from e
            except nats.errors.TimeoutError as e:
                raise StoreUnavailableError(f"no answer for stream info of {self.stream!r}") from e
            return int(info.state.last_seq)
        validate_filter(subject, self.stream)
        if is_wildcard(subject):
            msgs = await self._direct({"multi_last": [subject], "batch": READ_BATCH})
            return max((int(m.headers[p.SEQUENCE]) for m in msgs if m.headers), default=0)
        msgs = await self._direct({"last_by_subj": subject})
        return int(msgs[0].headers[p.SEQUENCE]) if msgs and msgs[0].headers else 0

    async def get(self, sequence: int) -> StoredMessage | None:
        msgs = await self._direct({"seq": sequence})
        if not msgs:
            return None
        m = _to_stored(msgs[0])
        return m if m.sequence == sequence else None

    async def delete(self, sequence: int) -> bool:
        try:
            return bool(await self.js.delete_msg(self.stream, sequence))
        except nats.js.errors.APIError as e:
            if int(e.err_code or 0) == p.ERR_MESSAGE_NOT_FOUND:
                return False
            raise self._translate_api(e, f"deleting sequence {sequence}") from e

    # -- snapshots ------------------------------------------------------------------------
    @property
    def snapshots(self) -> KVSnapshotStore:
        if self._snapshots is None:
            self._snapshots = KVSnapshotStore(self)
        return self._snapshots

    async def close(self) -> None:
        await self._reader.close()
        if self._own and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()


class KVSnapshotStore(SnapshotStore):
    """Snapshots in the KV bucket ``<stream>_snapshots`` (one key per subject, history 1)."""

    def __init__(self, store: JetStreamEventStore) -> None:
        self._store = store
        self.bucket = f"{store.stream}_snapshots"
        self._kv: Any = None

    async def _bucket(self) -> Any:
        if self._kv is None:
            js = self._store.js
            try:
                self._kv = await js.key_value(self.bucket)
            except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
                self._kv = await js.create_key_value(
                    bucket=self.bucket, history=1, storage=StorageType.FILE, direct=True
                )
        return self._kv

    async def get(self, subject: str) -> Snapshot | None:
        kv = await self._bucket()
        try:
            entry = await kv.get(subject)
        except nats.js.errors.KeyNotFoundError:
            return None
        if not entry.value:
            return None
        data: bytes = entry.value
        cipher = self._store.codec.cipher
        try:
            if data[:1] == b"!" and cipher is not None:
                key_id, _, sealed = data[1:].partition(b"!")
                await cipher.prepare([subject], create=False)
                data = cipher.decrypt(subject, key_id.decode(), sealed)
            return Snapshot.from_bytes(data)
        except EventkitError:
            return None

    async def put(self, snapshot: Snapshot) -> None:
        kv = await self._bucket()
        data = snapshot.to_bytes()
        cipher = self._store.codec.cipher
        if cipher is not None and cipher.covers(snapshot.subject, None):
            await cipher.prepare([snapshot.subject], create=True)
            key_id, sealed = cipher.encrypt(snapshot.subject, data)
            data = b"!" + key_id.encode() + b"!" + sealed
        await kv.put(snapshot.subject, data)

    async def delete(self, subject: str) -> int:
        kv = await self._bucket()
        removed = 0
        while True:
            try:
                entry = await kv.get(subject)
            except nats.js.errors.KeyNotFoundError:
                break
            try:
                await self._store.js.delete_msg(f"KV_{self.bucket}", entry.revision)
                removed += 1
            except nats.js.errors.APIError:
                break
        return removed
