"""Appending: one event is a plain publish with the expected sequence, several are one ADR-50
atomic batch; an unanswered append is sent again with the same event ids, and a refusal is told
apart from our own earlier try that landed (a lost ack)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import nats.errors

from eventkit.errors import (
    ConcurrencyError,
    ConfigError,
    EventTooLargeError,
    ForgottenError,
    OvertakenError,
    PermissionDeniedError,
    ServerVersionError,
    StoreUnavailableError,
)
from eventkit.observability.metrics import PROCESS
from eventkit.store.base import EncodedMessage, Write, encode_writes
from eventkit.store.chain import seal
from eventkit.store.erasure import BODY, is_marker, marker_headers
from eventkit.store.nats.chaining import Chainer
from eventkit.store.nats.contention import Overtaken, SubjectQueues
from eventkit.store.nats.delivery import Delivered
from eventkit.store.nats.jetstream_errors import (
    TRANSIENT,
    JetStreamError,
    ack_error,
    actual_from,
)
from eventkit.store.nats.leader import leader_get, leader_tail
from eventkit.store.nats.link import Link
from eventkit.store.nats.reading import Reader
from eventkit.store.nats.retries import Backoff
from eventkit.store.records import StoredMessage
from eventkit.store.subjects import validate_subject
from eventkit.store.wire_constants import (
    ATOMIC_BATCH_SERVER,
    BATCH_COMMIT,
    BATCH_ID,
    BATCH_SEQUENCE,
    ERR_BATCH_DISABLED,
    ERR_BATCH_DUPLICATE_MSG_ID,
    ERR_BATCH_GAP,
    ERR_WRONG_LAST_SEQUENCE,
    ERR_WRONG_LAST_SEQUENCE_CONSTANT,
    MSG_ID,
    STATUS,
)

Request = Callable[[str, bytes, dict[str, str], float], Awaitable[Delivered]]
"""One request to the server: subject, payload, headers, timeout; its answer."""
Tails = Callable[[Sequence[str]], Awaitable[dict[str, StoredMessage]]]
"""The last message of each of some subjects (see :meth:`Appender.read_tails`)."""


class Appender:
    """Appends to the store's stream over its ``link``: the subjects' last messages read with
    ``reader``, the chain heads found by ``chainer``, each request sent by ``request`` and the
    tails an append without expectation follows read by ``tails`` (the store's seams where
    tests inject a lost ack, or another writer between the read and the append; default
    :meth:`read_tails`)."""

    def __init__(
        self,
        link: Link,
        reader: Reader,
        chainer: Chainer,
        request: Request,
        tails: Tails | None = None,
    ) -> None:
        self.link = link
        self.reader = reader
        self.chainer = chainer
        self.request = request
        self.tails: Tails = tails or self.read_tails
        self.chain: Callable[[Sequence[Write]], Awaitable[list[str]]] | None = chainer.chain_heads
        """What chains the events of an append (None: unchained, as before chains)."""
        self.queues = SubjectQueues()

    @property
    def max_payload(self) -> int:
        """The server's max message size (headers + payload), in bytes."""
        return int(self.link.nc.max_payload)

    async def append_many(self, writes: Sequence[Write]) -> list[int]:
        """Append to several subjects in one atomic batch; return each write's last sequence.

        A write without ``expected_sequence`` is sent with the expectation of its subject's
        last message, read just before (see :mod:`eventkit.store.nats.contention`): the server
        refuses it on a forgotten subject (``ForgottenError``), and when another writer came
        between, it is read and sent again (for up to ``retry_for`` seconds of such conflicts:
        then ``OvertakenError``, a ``ConcurrencyError``)."""
        if all(isinstance(w, Write) and w.expected_sequence is not None for w in writes):
            return await self._append_checked(writes)
        if not all(isinstance(w, Write) for w in writes):
            return await self._append_checked(writes)  # refused there, nothing sent
        derived = {w.subject for w in writes if w.expected_sequence is None}
        async with self.queues.hold(derived):
            return await self._append_overtaken(writes, derived)

    async def _append_overtaken(self, writes: Sequence[Write], derived: set[str]) -> list[int]:
        """:meth:`append_many` of writes some of which (``derived``) carry no expectation: each
        try reads their subjects' last messages and expects those."""
        overtaken: Overtaken | None = None
        queues = self.queues
        link = self.link
        while True:
            # what this process appended last, while its appends queued, needs no read
            tails = {s: t for s in derived if (t := queues.tail(s)) is not None}
            missing = [s for s in derived if s not in tails]
            if missing:
                tails.update(await self.tails(sorted(missing)))
            checked = [
                following(w, tails.get(w.subject)) if w.subject in derived else w for w in writes
            ]
            try:
                last = await self._append_checked(checked)
            except ConcurrencyError as e:
                if e.subject not in derived:
                    raise  # a write with the caller's own expectation: theirs to handle
                # another writer appended in between (a forgotten subject's marker is found
                # by the next read)
                for subject in derived:
                    queues.stale(subject)
                overtaken = overtaken or Overtaken(link.retry_for)
                PROCESS.retried(link.stream)
                if not await overtaken.wait():
                    raise OvertakenError(
                        e.subject, e.expected, e.actual, overtaken.tries, link.retry_for
                    ) from e
                continue
            for w, seq in zip(writes, last, strict=True):
                if w.subject in derived:
                    queues.appended(w.subject, seq)
            return last

    async def read_tails(self, subjects: Sequence[str]) -> dict[str, StoredMessage]:
        """The last message of each of ``subjects`` (absent: no message yet), which an append
        without expectation follows; ``ForgottenError`` when one is an erasure marker."""
        lasts = await self.reader.last_messages(subjects)
        for subject, last in lasts.items():
            if is_marker(last.headers):
                raise ForgottenError(subject)
            self.link.heads.note_last(subject, last)  # the chain follows what was just read
        return lasts

    async def _append_checked(self, writes: Sequence[Write]) -> list[int]:
        msgs = await encode_writes(self.link, writes, self.max_payload, self.chain)
        if len(msgs) == 1:
            last = [await self._publish_one(writes[0], msgs[0])]
        else:
            last = await self._publish_batch(writes, msgs)
        for w, seq in zip(writes, last, strict=True):
            self.link.fresh.note(w.subject, seq)
        self.link.heads.note_appended(
            msgs, {w.subject: s for w, s in zip(writes, last, strict=True)}
        )
        return last

    async def send(self, send: Callable[[], Awaitable[Delivered]], describe: str) -> dict[str, Any]:
        """Send until the server answers; return its ack (JSON)."""
        backoff: Backoff | None = None  # the deadline counts from the first unanswered try
        while True:
            try:
                msg = await send()
                if not (msg.headers and msg.headers.get(STATUS) == "503"):
                    break
                error: Exception | None = None
            except TRANSIENT as e:
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
            backoff = backoff or Backoff(self.link.retry_for, first_delay=0.02)
            PROCESS.retried(self.link.stream)
            if not await backoff.wait():
                raise StoreUnavailableError(
                    f"{describe}: no answer from JetStream within {self.link.retry_for}s "
                    f"({error!r}); the append may or may not be stored: retry it with the same "
                    f"event ids"
                ) from error
        try:
            ack: dict[str, Any] = json.loads(msg.data)
        except ValueError as e:
            raise StoreUnavailableError(f"{describe}: unreadable ack {msg.data!r}") from e
        return ack

    async def _publish_one(self, w: Write, m: EncodedMessage) -> int:
        subject, headers, payload = m
        timeout = self.link.publish_timeout
        ack = await self.send(
            lambda: self.request(subject, payload, headers, timeout), f"append to {subject!r}"
        )
        err = ack_error(ack)
        if err is None:
            return int(ack["seq"])
        (last,) = await self._resolve_error(err, [w], 1)
        return last

    async def _publish_batch(
        self, writes: Sequence[Write], msgs: list[EncodedMessage]
    ) -> list[int]:
        n = len(msgs)
        nc = self.link.nc

        async def send() -> Delivered:
            # a fresh batch id per try: a half-sent earlier try can never merge into this one
            batch_id = uuid.uuid4().hex
            for i in range(n - 1):
                subject, headers, payload = msgs[i]
                h = dict(headers)
                h[BATCH_ID] = batch_id
                h[BATCH_SEQUENCE] = str(i + 1)
                await nc.publish(subject, payload, headers=h)
            subject, headers, payload = msgs[-1]
            h = dict(headers)
            h[BATCH_ID] = batch_id
            h[BATCH_SEQUENCE] = str(n)
            h[BATCH_COMMIT] = "1"
            return await self.request(subject, payload, h, self.link.publish_timeout)

        describe = f"atomic append of {n} events to {sorted({m[0] for m in msgs})}"
        gaps = 0
        while True:
            ack = await self.send(send, describe)
            err = ack_error(ack)
            if err is None:
                break
            if err[1] == ERR_BATCH_GAP and gaps < 5:
                # part of the batch was lost on the way (e.g. a reconnect): send it again
                gaps += 1
                continue
            if err[1] == ERR_BATCH_DISABLED:
                raise ServerVersionError(
                    "atomic multi-event appends (allow_atomic on the stream)",
                    ATOMIC_BATCH_SERVER,
                    self.link.server_version,
                )
            return await self._resolve_error(err, writes, n)
        return batch_sequences(writes, int(ack["seq"]))

    async def _resolve_error(
        self, err: tuple[int, int, str], writes: Sequence[Write], count: int
    ) -> list[int]:
        """An append was refused: it may be our own earlier try (lost ack), else a conflict."""
        code, err_code, desc = err
        conflict = err_code in (ERR_WRONG_LAST_SEQUENCE, ERR_WRONG_LAST_SEQUENCE_CONSTANT)
        if conflict or err_code == ERR_BATCH_DUPLICATE_MSG_ID:
            # A retry whose first try was stored is refused (10071 on R1, 10201 for a batch):
            # look for our own last event id on the subject; an append is all-or-nothing.
            last = await self._find_stored(writes[-1])
            if last is not None:
                return batch_sequences(writes, last) if count > 1 else [last]
        if conflict:
            # nothing was stored. 10164 (a replicated stream, another expectation in flight)
            # names no sequence: look it up. A forgotten subject raises ForgottenError here.
            checked = [w for w in writes if w.expected_sequence is not None]
            reported = actual_from(desc)
            for w in checked:
                actual = await self.reader.last_sequence(
                    w.boundary or w.subject, consistency="strong"
                )
                if actual != w.expected_sequence:
                    if len(checked) == 1 and reported is not None:
                        actual = reported
                    raise ConcurrencyError(w.subject, w.expected_sequence or 0, actual)
            w0 = checked[0] if checked else writes[0]
            raise ConcurrencyError(w0.subject, w0.expected_sequence or 0, reported)
        if err_code == ERR_BATCH_DUPLICATE_MSG_ID:
            raise ConfigError(
                f"append to {writes[0].subject!r}: some of its event ids are stored already "
                f"(but not all of them); give new events new ids"
            )
        if "permission" in desc.lower():
            raise PermissionDeniedError(f"append to {writes[0].subject!r}: {desc}")
        raise JetStreamError(code, err_code, f"append to {writes[0].subject!r}: {desc}")

    async def _find_stored(self, w: Write) -> int | None:
        """The sequence of ``w``'s last event id on its subject, if it is stored. Asked of the
        stream leader: a follower that lags would hide our own earlier try, and a single writer
        would see a conflict it did not cause."""
        target = w.ids[-1]
        last = await leader_get(self.link, {"last_by_subj": w.subject})
        if last is None:
            return None
        if last.headers.get(MSG_ID) == target:
            return last.sequence
        # others appended after us: our events come after the sequence we expected
        start = (w.expected_sequence or 0) + 1
        for m in await leader_tail(self.link, start, w.subject, last.sequence):
            if m.headers.get(MSG_ID) == target:
                return m.sequence
        return None

    async def mark_forgotten(self, subject: str) -> int:
        """Leave the erasure marker on ``subject`` (unless its last message is one already);
        return its sequence. From here on no append to ``subject`` is stored."""
        validate_subject(subject, self.link.stream)
        last = await self.reader.last_message(subject)
        if last is not None and is_marker(last.headers):
            return last.sequence
        headers = marker_headers(subject)  # its Eventkit-Chain-Prev keeps the chain's last link
        seal(await self.chainer.marker_head(subject, last), subject, headers, BODY)
        ack = await self.send(
            lambda: self.request(subject, BODY, headers, self.link.publish_timeout),
            f"marking {subject!r} forgotten",
        )
        err = ack_error(ack)
        if err is not None:
            raise JetStreamError(err[0], err[1], f"marking {subject!r} forgotten: {err[2]}")
        self.link.fresh.note(subject, int(ack["seq"]))
        return int(ack["seq"])


def following(w: Write, last: StoredMessage | None) -> Write:
    """A copy of ``w`` (same event ids) that expects ``last`` (None: no message) to be its
    subject's last message."""
    return with_expectation(w, last.sequence if last is not None else 0)


def with_expectation(w: Write, expected: int) -> Write:
    """A copy of ``w`` (same event ids) that expects ``expected`` as its subject's last."""
    copy = object.__new__(Write)
    copy.subject = w.subject
    copy.events = w.events
    copy.expected_sequence = expected
    copy.event_ids = w.ids
    copy.boundary = None
    copy.headers = w.headers
    copy.ids = w.ids
    return copy


def batch_sequences(writes: Sequence[Write], last: int) -> list[int]:
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
