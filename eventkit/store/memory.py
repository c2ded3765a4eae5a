"""An in-memory event store for users' unit tests: same interface, numbering and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from eventkit.errors import ConcurrencyError, ConfigError, EventTooLargeError
from eventkit.store.base import EventStore, Write
from eventkit.store.codec import Codec
from eventkit.store.protocol import MAX_BATCH
from eventkit.store.records import RecordedEvent, StoredMessage
from eventkit.store.snapshots import InMemorySnapshotStore
from eventkit.store.subjects import (
    subject_matches,
    validate_filter,
    validate_stream_name,
    validate_subject,
)

DEFAULT_MAX_PAYLOAD = 1024 * 1024


class InMemoryEventStore(EventStore):
    """Behaves like :class:`JetStreamEventStore` without a server::

    store = InMemoryEventStore(stream="bank")
    await store.append("bank.account.a-1", [AccountOpened(owner="ada")], expected_sequence=0)
    """

    def __init__(
        self,
        stream: str = "eventkit",
        *,
        codec: Codec | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.stream = validate_stream_name(stream)
        self.codec = codec or Codec()
        self.max_payload = max_payload
        self._messages: dict[int, StoredMessage] = {}
        self._last_by_subject: dict[str, int] = {}
        self._seen_ids: dict[str, int] = {}
        self._last_seq = 0
        self.snapshots = InMemorySnapshotStore()

    async def append_many(self, writes: Sequence[Write]) -> list[int]:
        if not writes:
            raise ConfigError("append needs at least one write")
        total = sum(len(w.events) for w in writes)
        if total == 0:
            raise ConfigError("append needs at least one event")
        if total > MAX_BATCH:
            raise ConfigError(f"an atomic append holds at most {MAX_BATCH} events, got {total}")
        for w in writes:
            validate_subject(w.subject, self.stream)
        if self.codec.cipher is not None:
            await self.codec.cipher.prepare([w.subject for w in writes], create=True)
        encoded: list[tuple[str, str, dict[str, str], bytes]] = []
        for w in writes:
            for event, eid in zip(w.events, w.ids, strict=True):
                headers, payload = self.codec.encode(w.subject, event, eid)
                size = len(payload) + sum(len(k) + len(v) + 4 for k, v in headers.items())
                if size > self.max_payload:
                    raise EventTooLargeError(w.subject, size, self.max_payload)
                encoded.append((w.subject, eid, headers, payload))
        # a retried append whose ids are all stored already: report it as done
        if all(eid in self._seen_ids for _, eid, _, _ in encoded):
            return [self._seen_ids[w.ids[-1]] for w in writes]
        seen_subjects: set[str] = set()
        for w in writes:
            if w.expected_sequence is not None and w.subject not in seen_subjects:
                actual = await self.last_sequence(w.boundary or w.subject)
                if actual != w.expected_sequence:
                    raise ConcurrencyError(w.subject, w.expected_sequence, actual)
            seen_subjects.add(w.subject)
        now = datetime.now(UTC)
        result: list[int] = []
        i = 0
        for w in writes:
            for _ in w.events:
                subject, eid, headers, payload = encoded[i]
                i += 1
                self._last_seq += 1
                seq = self._last_seq
                self._messages[seq] = StoredMessage(subject, seq, now, headers, payload)
                self._last_by_subject[subject] = seq
                self._seen_ids[eid] = seq
            result.append(self._last_seq)
        return result

    async def read(self, subject: str, after: int = 0) -> list[RecordedEvent[Any]]:
        validate_subject(subject, self.stream)
        return [
            self.codec.decode(m)
            for seq, m in sorted(self._messages.items())
            if seq > after and m.subject == subject
        ]

    async def read_all(
        self,
        from_sequence: int = 1,
        from_time: datetime | None = None,
        subjects: Sequence[str] | None = None,
    ) -> AsyncIterator[RecordedEvent[Any]]:
        async for m in self._scan(from_sequence, from_time, subjects):
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
        for seq in sorted(self._messages):
            if seq < from_sequence or seq > end:
                continue
            m = self._messages.get(seq)
            if m is None:
                continue
            if from_time is not None and m.time < from_time:
                continue
            if filters and not any(subject_matches(f, m.subject) for f in filters):
                continue
            yield m

    async def last_sequence(self, subject: str | None = None) -> int:
        if subject is None:
            return self._last_seq
        validate_filter(subject)
        if subject in self._last_by_subject:
            return self._last_by_subject[subject]
        return max(
            (s for subj, s in self._last_by_subject.items() if subject_matches(subject, subj)),
            default=0,
        )

    async def get(self, sequence: int) -> StoredMessage | None:
        return self._messages.get(sequence)

    async def delete(self, sequence: int) -> bool:
        m = self._messages.pop(sequence, None)
        if m is None:
            return False
        if self._last_by_subject.get(m.subject) == sequence:
            remaining = [s for s, x in self._messages.items() if x.subject == m.subject]
            if remaining:
                self._last_by_subject[m.subject] = max(remaining)
            else:
                del self._last_by_subject[m.subject]
        return True

    async def close(self) -> None:
        return None
