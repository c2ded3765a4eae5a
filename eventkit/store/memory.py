"""An in-memory event store for users' unit tests: same interface, numbering and errors."""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from eventkit.errors import ConcurrencyError, ConfigError, ForgottenError
from eventkit.observability.tracing import traced_append
from eventkit.store.base import (
    Consistency,
    EventStore,
    Write,
    check_consistency,
    check_read_position,
    encode_writes,
)
from eventkit.store.chain import GENESIS, ChainHeads, erased_link_headers, erased_subject, seal
from eventkit.store.codec import Codec
from eventkit.store.erasure import BODY, is_marker, marker_headers
from eventkit.store.records import RecordedEvent, StoredMessage
from eventkit.store.snapshots import InMemorySnapshotStore
from eventkit.store.subjects import (
    is_wildcard,
    subject_matches,
    validate_filter,
    validate_stream_name,
    validate_subject,
)
from eventkit.store.verifying import check_read
from eventkit.store.wire_constants import CHAIN, EVENT_TYPE, MSG_ID

DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""The default max payload of nats-server (1 MiB)."""


class InMemoryEventStore(EventStore):
    """Behaves like :class:`JetStreamEventStore` without a server: the same sequence numbering,
    expectations, duplicate detection by event id and errors::

        store = InMemoryEventStore(stream="bank")
        await store.append("bank.account.a-1", [AccountOpened(owner="ada")], expected_sequence=0)
        accounts = Repository(store, Account)
    """

    def __init__(
        self,
        stream: str = "eventkit",
        *,
        codec: Codec | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        verify_chains: bool = True,
    ) -> None:
        self.stream = validate_stream_name(stream)
        self.codec = codec or Codec()
        self.max_payload = max_payload
        self._messages: dict[int, StoredMessage] = {}
        self._by_subject: dict[str, list[int]] = {}
        self._ids: dict[str, tuple[str, int]] = {}
        self._last_seq = 0
        self.snapshots = InMemorySnapshotStore()
        self.verify_chains = verify_chains
        self._heads = ChainHeads()

    async def chain_heads(self, writes: Sequence[Write]) -> list[str]:
        """The link each write's first event follows: the head after the subject's last
        message (the expectation, checked below, makes that the message it follows)."""
        return [self._head(w.subject) for w in writes]

    def _head(self, subject: str) -> str:
        """The last link of ``subject`` (its last chained message's)."""
        for seq in reversed(self._by_subject.get(subject, [])):
            value = self._messages[seq].headers.get(CHAIN)
            if value is not None:
                return value
        return GENESIS

    @traced_append
    async def append_many(self, writes: Sequence[Write]) -> list[int]:
        while True:  # encoding may wait (keys): chain after what is last when storing
            before = [self._subject_last(w.subject) for w in writes]
            encoded = await encode_writes(self, writes, self.max_payload, self.chain_heads)
            if before == [self._subject_last(w.subject) for w in writes]:
                break
        # a retried append whose events are all stored already is reported as done
        found = [self._ids.get(eid, ("", 0))[0] == w.subject for w in writes for eid in w.ids]
        if all(found):
            return [self._ids[w.ids[-1]][1] for w in writes]
        if any(eid in self._ids for w in writes for eid in w.ids):
            raise ConfigError(
                f"append to {writes[0].subject!r}: some of its event ids are stored already "
                f"(but not all of them); give new events new ids"
            )
        for w in writes:
            if self._forgotten(w.subject):
                raise ForgottenError(w.subject)
            if w.expected_sequence is not None:
                actual = await self.last_sequence(w.boundary or w.subject)
                if actual != w.expected_sequence:
                    raise ConcurrencyError(w.subject, w.expected_sequence, actual)
        now = datetime.now(UTC)
        result: list[int] = []
        i = 0
        for w in writes:
            index = self._by_subject.setdefault(w.subject, [])
            for eid in w.ids:
                subject, headers, payload = encoded[i]
                i += 1
                self._last_seq += 1
                seq = self._last_seq
                self._messages[seq] = StoredMessage(subject, seq, now, headers, payload)
                index.append(seq)
                self._ids[eid] = (subject, seq)
            result.append(self._last_seq)
        return result

    async def read(
        self,
        subject: str,
        after: int = 0,
        *,
        consistency: Consistency = "eventual",
        at_least: int | None = None,
    ) -> list[RecordedEvent[Any]]:
        check_consistency(consistency, at_least)  # one copy: every read is strong
        validate_subject(subject, self.stream)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ConfigError(f"after must be an int >= 0, got {after!r}")
        index = self._by_subject.get(subject, [])
        if self._forgotten(subject):
            return []
        start = bisect.bisect_right(index, after)
        raw = [self._messages[seq] for seq in index[start:]]
        await check_read(self, subject, raw, after, verify=self.verify_chains, heads=self._heads)
        decode = self.codec.decode
        return [decode(m) for m in raw]

    async def read_all(
        self,
        from_sequence: int = 1,
        from_time: datetime | None = None,
        subjects: Sequence[str] | None = None,
    ) -> AsyncIterator[RecordedEvent[Any]]:
        check_read_position(from_sequence, from_time)
        async for m in self._scan(from_sequence, from_time, subjects):
            if not is_marker(m.headers) and EVENT_TYPE in m.headers:  # as JetStreamEventStore
                yield self.codec.decode(m)

    async def read_raw(
        self, subject: str | None = None, from_sequence: int = 1
    ) -> AsyncIterator[StoredMessage]:
        async for m in self._scan(from_sequence, None, [subject] if subject else None):
            yield m

    async def _scan(
        self, from_sequence: int, from_time: datetime | None, subjects: Sequence[str] | None
    ) -> AsyncIterator[StoredMessage]:
        filters = [validate_filter(s, self.stream) for s in subjects] if subjects else None
        end = self._last_seq
        for seq in range(max(1, from_sequence), end + 1):
            m = self._messages.get(seq)
            if m is None:
                continue
            if from_time is not None and m.time < from_time:
                continue
            if filters and not any(subject_matches(f, m.subject) for f in filters):
                continue
            yield m

    async def last_sequence(
        self, subject: str | None = None, *, consistency: Consistency = "eventual"
    ) -> int:
        check_consistency(consistency)
        if subject is None:
            return self._last_seq
        validate_filter(subject, self.stream)
        if not is_wildcard(subject):
            if self._forgotten(subject):
                raise ForgottenError(subject)
            index = self._by_subject.get(subject)
            return index[-1] if index else 0
        return max(
            (
                index[-1]
                for subj, index in self._by_subject.items()
                if index and subject_matches(subject, subj)
            ),
            default=0,
        )

    def _subject_last(self, subject: str) -> int:
        index = self._by_subject.get(subject)
        return index[-1] if index else 0

    def _forgotten(self, subject: str) -> bool:
        index = self._by_subject.get(subject)
        return bool(index) and is_marker(self._messages[index[-1]].headers)  # type: ignore[index]

    async def mark_forgotten(self, subject: str) -> int:
        validate_subject(subject, self.stream)
        index = self._by_subject.setdefault(subject, [])
        if index and is_marker(self._messages[index[-1]].headers):
            return index[-1]
        headers = marker_headers(subject)  # its Eventkit-Chain-Prev keeps the last link
        seal(self._head(subject), subject, headers, BODY)
        self._last_seq += 1
        seq = self._last_seq
        self._messages[seq] = StoredMessage(subject, seq, datetime.now(UTC), headers, BODY)
        index.append(seq)
        return seq

    async def get(self, sequence: int) -> StoredMessage | None:
        return self._messages.get(sequence)

    async def record_erasure(self, erased: StoredMessage) -> None:
        headers = erased_link_headers(erased.subject, erased)
        if headers is None or any(
            m.headers.get(MSG_ID) == headers[MSG_ID] for m in self._messages.values()
        ):
            return
        subject = erased_subject(self.stream, erased.subject)
        self._last_seq += 1
        seq = self._last_seq
        self._messages[seq] = StoredMessage(subject, seq, datetime.now(UTC), headers, BODY)
        self._by_subject.setdefault(subject, []).append(seq)

    async def delete(self, sequence: int, *, keep_links: bool = True) -> bool:
        m = self._messages.get(sequence)
        if m is None:
            return False
        if keep_links and not self._forgotten(m.subject):  # a marker closed a forgotten chain
            await self.record_erasure(m)
        del self._messages[sequence]
        index = self._by_subject[m.subject]
        index.remove(sequence)
        if not index:
            del self._by_subject[m.subject]
        return True

    async def close(self) -> None:
        return None
