"""Reading: batched direct gets of a subject, of the whole stream, of last sequences; on a
replicated stream every read asks for a server that has what this process has seen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors

from eventkit.errors import ConfigError, ForgottenError, StoreUnavailableError
from eventkit.store.base import Consistency, check_consistency, check_read_position
from eventkit.store.erasure import is_marker
from eventkit.store.nats.delivery import Delivered
from eventkit.store.nats.direct import DirectReader
from eventkit.store.nats.freshness import FAST_TRIES, FIRST_DELAY, MAX_TRIES
from eventkit.store.nats.jetstream_errors import Unanswered, is_gone, translate_api
from eventkit.store.nats.leader import leader_get, leader_tail
from eventkit.store.nats.link import Link
from eventkit.store.nats.retries import Backoff
from eventkit.store.nats.wire import format_nats_time, parse_nats_time, to_stored
from eventkit.store.records import RecordedEvent, StoredMessage
from eventkit.store.subjects import (
    is_wildcard,
    subject_matches,
    validate_filter,
    validate_subject,
)
from eventkit.store.verifying import check_read
from eventkit.store.wire_constants import ENCRYPTION, EVENT_TYPE, SEQUENCE, system_prefix

READ_BATCH = 1000
"""Messages per batched direct get request."""
READ_MAX_BYTES = 8 * 1024 * 1024
"""Bytes per batched direct get request (the server ends the batch early past it)."""


DirectGet = Callable[
    [dict[str, Any], str | None, DirectReader | None], Awaitable[tuple[list[Delivered], int]]
]
"""One direct get: request, subject, the stream's reader (None: the event stream's)."""


class Reader:
    """Reads of the store's stream (see :class:`~eventkit.store.jetstream.JetStreamEventStore`),
    over the store's ``link``; every direct get goes through ``direct`` (the store's seam where
    tests answer as a lagging replica would; default :meth:`direct_get`)."""

    def __init__(self, link: Link, direct: DirectGet | None = None) -> None:
        self.link = link
        self.stream = link.stream
        self._get: DirectGet = direct or self.direct_get

    async def direct(
        self,
        request: dict[str, Any],
        subject: str | None = None,
        reader: DirectReader | None = None,
    ) -> tuple[list[Delivered], int]:
        """One direct get, through the seam the reader was given."""
        return await self._get(request, subject, reader)

    def _lagging(self, subject: str, last: int) -> bool:
        """Whether a read of ``subject`` ending at ``last`` missed what this process knows."""
        return self.link.replicas > 1 and last < self.link.fresh.known(subject)

    async def _catch_up(self, subject: str, tries: int) -> bool:
        """After a read below what is known: wait a little and say True to read again. From
        :data:`FAST_TRIES` on the leader is asked too: when its last message of the subject is
        below what is known (a message was deleted), settle on it and say False."""
        if tries >= MAX_TRIES:
            raise StoreUnavailableError(
                f"the replicas answering reads of {subject!r} stay behind this process's own "
                f"writes (sequence {self.link.fresh.known(subject)}): is a server of the cluster "
                f"stuck? (nats server report jetstream)"
            )
        if tries >= FAST_TRIES:
            last = await self.last_message(subject, leader=True)
            if last is None or last.sequence < self.link.fresh.known(subject):
                self.link.fresh.settle(subject, last.sequence if last is not None else 0)
                return False
        self.link.fresh.stale_reads += 1
        await asyncio.sleep(min(FIRST_DELAY * 2**tries, 0.1))
        return True

    async def direct_get(
        self,
        request: dict[str, Any],
        subject: str | None = None,
        reader: DirectReader | None = None,
    ) -> tuple[list[Delivered], int]:
        """One direct get (on the event stream, or ``reader``'s stream), tried again while
        unanswered (a restart, a leader election) for up to ``retry_for`` seconds, like appends;
        reads are idempotent.

        """
        reader = reader or self.link.reader
        backoff = Backoff(self.link.retry_for)
        while True:
            try:
                return await reader.request(request, self.link.read_timeout, subject)
            except Unanswered as e:
                if not await backoff.wait():
                    raise StoreUnavailableError(
                        f"{e}; still unanswered after {self.link.retry_for:g}s of retries"
                    ) from e

    async def read(
        self,
        subject: str,
        after: int = 0,
        *,
        consistency: Consistency = "eventual",
        at_least: int | None = None,
    ) -> list[RecordedEvent[Any]]:
        """Every event of ``subject`` after sequence ``after``, in order (batched direct gets).

        ``consistency="strong"``: the stream leader says which is the subject's last message,
        and what a lagging replica has not got yet is read from the leader, so every append
        acknowledged before the call is in (whoever made it). ``at_least=N`` (a position
        ``save`` returned): the same, but only when the replica's answer ends below ``N``.
        A forgotten subject (see :mod:`eventkit.store.erasure`) has no events."""
        validate_subject(subject, self.stream)
        check_consistency(consistency, at_least)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ConfigError(f"after must be an int >= 0, got {after!r}")
        raw = [m async for m in self._scan(after + 1, subject, None, None)]
        tries = 0
        while self._lagging(subject, raw[-1].sequence if raw else after):
            if not await self._catch_up(subject, tries):
                break
            tries += 1
            start = raw[-1].sequence + 1 if raw else after + 1
            raw += [m async for m in self._scan(start, subject, None, None)]
        top = raw[-1].sequence if raw else after
        if consistency == "strong" or (at_least is not None and top < at_least):
            last = await leader_get(self.link, {"last_by_subj": subject})
            if last is not None and last.sequence > top:
                raw += await leader_tail(self.link, top + 1, subject, last.sequence)
        if raw:
            self.link.fresh.note(subject, raw[-1].sequence)
        await check_read(
            self, subject, raw, after, verify=self.link.verify_chains, heads=self.link.heads
        )
        cipher = self.link.codec.cipher
        if any(is_marker(m.headers) for m in raw):
            forgotten = getattr(cipher, "forgotten", None)
            if forgotten is not None:
                forgotten(subject)
            return []
        if raw and cipher is not None and any(ENCRYPTION in m.headers for m in raw):
            await cipher.prepare([subject], create=False)
        decode = self.link.codec.decode
        return [decode(m) for m in raw]

    async def _scan(
        self,
        start: int,
        subject: str | None,
        from_time: datetime | None,
        end: int | None,
        reader: DirectReader | None = None,
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
            msgs, more = await self.direct(req, reader=reader)
            if not msgs:
                return
            for msg in msgs:
                m = to_stored(msg)
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
        in stream order, up to the stream's last sequence at the call. Messages other services
        wrote (no ``Eventkit-Type``: docs/wire-format.md) and erasure markers are passed over,
        never a failed scan; ``read_raw`` gives them::

            async for rec in store.read_all(from_time=datetime(2026, 1, 1, tzinfo=UTC)):
                print(rec.sequence, rec.event)
        """
        check_read_position(from_sequence, from_time)
        filters = [validate_filter(s, self.stream) for s in subjects] if subjects else None
        single = filters[0] if filters and len(filters) == 1 else None
        end = await self.last_sequence()
        if end == 0:
            return
        seen = 0
        # on a replicated stream, a hole in an unfiltered scan is checked with the leader: a
        # replica answering across a leader change must not make a tailing reader skip events
        check_holes = self.link.replicas > 1 and single is None
        expect = from_sequence if from_time is None else 0
        async for m in self._scan(from_sequence, single, from_time, end):
            if check_holes and 0 < expect < m.sequence:
                whole = f"{self.stream}.>"
                for h in await leader_tail(self.link, expect, whole, m.sequence - 1):
                    rec = await self._kept(h, from_sequence, filters, single)
                    if rec is not None:
                        yield rec
            expect = m.sequence + 1
            seen = m.sequence
            rec = await self._kept(m, from_sequence, filters, single)
            if rec is not None:
                yield rec
        if seen < end and (seen > 0 or from_time is None):
            # the replica that answered lags the leader, whose ``end`` this read promised:
            # the rest comes from the leader (read_all never ends short of it)
            start = max(seen + 1, from_sequence)
            for m in await leader_tail(self.link, start, single or f"{self.stream}.>", end):
                rec = await self._kept(m, from_sequence, filters, single)
                if rec is not None:
                    yield rec

    async def _kept(
        self,
        m: StoredMessage,
        from_sequence: int,
        filters: list[str] | None,
        single: str | None,
    ) -> RecordedEvent[Any] | None:
        """``m`` decoded when ``read_all`` gives it, else None."""
        if m.sequence < from_sequence or m.subject.startswith(system_prefix(self.stream)):
            return None  # eventkit's own events (GDPR notices)
        if filters and single is None and not any(subject_matches(f, m.subject) for f in filters):
            return None
        if is_marker(m.headers) or EVENT_TYPE not in m.headers:
            return None  # an erasure marker, or another service's message (see the docstring)
        cipher = self.link.codec.cipher
        if cipher is not None and ENCRYPTION in m.headers:
            await cipher.prepare([m.subject], create=False)
        rec: RecordedEvent[Any] = self.link.codec.decode(m)
        return rec

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
        reader = DirectReader(self.link.inbox, stream)
        async for m in self._scan(from_sequence, subject, None, None, reader):
            yield m

    async def last_messages(
        self, subjects: Sequence[str], stream: str | None = None
    ) -> dict[str, StoredMessage]:
        """The last message of each of ``subjects`` on the event stream (or ``stream``, another
        of this account, e.g. a KV bucket's): one direct get for them all (``multi_last``);
        absent ones are left out. One subject of the event stream is read with the
        read-your-writes check of :meth:`last_message`."""
        if not subjects:
            return {}
        if stream is None:
            if len(subjects) == 1:
                last = await self.last_message(subjects[0])
                return {} if last is None else {subjects[0]: last}
            for s in subjects:
                validate_subject(s, self.stream)
        reader = None if stream is None else DirectReader(self.link.inbox, stream)
        request = {"multi_last": list(subjects), "batch": len(subjects)}
        msgs, _ = await self.direct(request, reader=reader)
        found = {}
        for msg in msgs:
            m = to_stored(msg)
            found[m.subject] = m
        return found

    async def last_message(
        self, subject: str, *, stream: str | None = None, leader: bool = False
    ) -> StoredMessage | None:
        """The last message of ``subject`` on the event stream (or ``stream``), None if none.

        ``leader``: asked of the stream leader (not a possibly lagging replica)."""
        name = stream or self.stream
        if leader:
            try:
                raw = await self.link.denials.guard(self.link.js.get_msg(name, subject=subject))
            except nats.js.errors.NotFoundError:
                return None
            except nats.js.errors.APIError as e:
                raise translate_api(e, f"reading the last message of {subject!r}") from e
            headers = dict(raw.headers or {})
            when = parse_nats_time(str(raw.time)) if raw.time else datetime.now(UTC)
            return StoredMessage(
                raw.subject or subject, int(raw.seq or 0), when, headers, raw.data or b""
            )
        if stream is not None:
            msgs, _ = await self.direct({}, subject, DirectReader(self.link.inbox, stream))
            return to_stored(msgs[0]) if msgs and msgs[0].headers else None
        tries = 0
        while True:
            msgs, _ = await self.direct({}, subject)
            last = to_stored(msgs[0]) if msgs and msgs[0].headers else None
            seq = last.sequence if last is not None else 0
            if not self._lagging(subject, seq) or not await self._catch_up(subject, tries):
                break
            tries += 1
        if last is not None:
            self.link.fresh.note(subject, last.sequence)
        return last

    async def last_sequence_of_stream(self, name: str) -> int:
        """The last sequence of a stream of this account (the event stream, a KV bucket's)."""
        backoff = Backoff(self.link.retry_for)
        while True:  # retried while unanswered (a restart, an election), like reads
            try:
                info = await self.link.denials.guard(self.link.js.stream_info(name))
                return int(info.state.last_seq)
            except nats.js.errors.APIError as e:
                if e.code != 503 or not await backoff.wait():
                    raise translate_api(e, f"stream info of {name!r}") from e
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
                if not await backoff.wait():
                    raise StoreUnavailableError(
                        f"no answer for stream info of {name!r} within {self.link.retry_for:g}s"
                    ) from e

    async def last_sequence(
        self, subject: str | None = None, *, consistency: Consistency = "eventual"
    ) -> int:
        """The last sequence of ``subject`` (or of any subject a filter matches), or of the
        stream; 0 when there is none. ``ForgottenError`` for a forgotten subject.

        The stream's is always the leader's; ``consistency="strong"`` asks the leader for a
        subject's too (any replica answers otherwise; this process still sees its own writes)."""
        check_consistency(consistency)
        if subject is None:
            return await self.last_sequence_of_stream(self.stream)
        validate_filter(subject, self.stream)
        if consistency == "strong":
            found = await leader_get(self.link, {"last_by_subj": subject})
            if found is not None and not is_wildcard(subject) and is_marker(found.headers):
                raise ForgottenError(subject)
            return found.sequence if found is not None else 0
        if not is_wildcard(subject):
            last = await self.last_message(subject)
            if last is not None and is_marker(last.headers):
                raise ForgottenError(subject)
            return last.sequence if last is not None else 0
        # last_by_subj takes a wildcard filter too and answers the highest sequence it matches
        msgs, _ = await self.direct({"last_by_subj": subject})
        if not msgs or not msgs[0].headers:
            return 0
        return int(msgs[0].headers[SEQUENCE])

    async def get(self, sequence: int) -> StoredMessage | None:
        """One stored message by stream sequence; None when absent or deleted."""
        msgs, _ = await self.direct({"seq": sequence})
        if not msgs:
            return None
        m = to_stored(msgs[0])
        return m if m.sequence == sequence else None

    async def delete(self, sequence: int) -> bool:
        """Erase one message securely (payload overwritten); False when already gone."""
        try:
            return bool(
                await self.link.denials.guard(self.link.js.delete_msg(self.stream, sequence))
            )
        except nats.js.errors.APIError as e:
            if is_gone(e):
                return False
            raise translate_api(e, f"deleting sequence {sequence}") from e
