"""The in-memory cache of per-subject data keys, least recently used evicted first.

An entry is a subject's key (id and 32 raw bytes, about 0.4 KB with its names) or the mark that
the subject was forgotten (its key bucket entry is a tombstone). A subject that is not in the
cache is *unknown*, never forgotten: only a tombstone read from the key bucket makes it so.
``touch`` (what ``prepare`` uses) moves an entry to the young end, so loading the keys of one
batch never evicts a key of the same batch while the batch has fewer subjects than the limit.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final, NamedTuple


class DataKey(NamedTuple):
    key_id: str
    key: bytes
    name: str
    """The KV key the data key is stored under (for the bucket's change notices)."""


class Forgotten(NamedTuple):
    name: str


Entry = DataKey | Forgotten

DEFAULT_LIMIT: Final = 50_000


class KeyCache:
    """``subject -> DataKey | Forgotten``, bounded to ``limit`` entries (LRU)."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._subjects: dict[str, str] = {}  # KV key name -> subject (cached subjects only)

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, subject: str) -> Entry | None:
        """The entry without refreshing it (encrypt/decrypt: the batch was touched before)."""
        return self._entries.get(subject)

    def touch(self, subject: str) -> Entry | None:
        """The entry, made the most recently used."""
        entry = self._entries.get(subject)
        if entry is not None:
            self._entries.move_to_end(subject)
        return entry

    def put(self, subject: str, entry: Entry) -> None:
        entries = self._entries
        old = entries.pop(subject, None)
        if old is not None and old.name != entry.name:
            self._subjects.pop(old.name, None)
        while len(entries) >= self.limit:
            _, evicted = entries.popitem(last=False)
            self._subjects.pop(evicted.name, None)
        entries[subject] = entry
        self._subjects[entry.name] = subject

    def mark_forgotten(self, name: str) -> None:
        """A tombstone was seen for KV key ``name``: its subject (if cached) is forgotten."""
        subject = self._subjects.get(name)
        if subject is not None:
            self._entries[subject] = Forgotten(name)

    def mark_subject_forgotten(self, subject: str, name: str) -> None:
        self.put(subject, Forgotten(name))

    def clear(self) -> None:
        self._entries.clear()
        self._subjects.clear()


__all__ = ["DEFAULT_LIMIT", "DataKey", "Entry", "Forgotten", "KeyCache"]
