"""Parked reactor events (dead letters), kept in a JetStream key-value bucket, no SQL.

Bucket ``eventkit_<stream>_parked``, key ``<reactor>.<stream sequence>``, value the letter as
JSON. A letter is written before the event is terminated on the consumer, so a crash in between
leaves the event to be delivered (and parked) again, never lost; writing it twice is harmless.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from eventkit.store.nats.buckets import open_bucket


@dataclass(frozen=True, slots=True)
class ParkedLetter:
    """One parked event of reactor ``name``: stream ``sequence``, why and how often it failed."""

    name: str
    sequence: int
    subject: str
    event_type: str
    error: str
    attempts: int
    parked_at: datetime

    @property
    def id(self) -> str:
        """How ``eventkit dlq retry`` names it: ``<reactor>:<sequence>``."""
        return f"{self.name}:{self.sequence}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parked_at"] = self.parked_at.isoformat()
        d["id"] = self.id
        d["kind"] = "reactor"
        return d


def bucket_name(stream: str) -> str:
    return f"eventkit_{stream}_parked"


class ParkedLetters:
    """The parked events of every reactor on one stream."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.bucket = bucket_name(store.stream)
        self._kv: KeyValue | None = None

    async def _open(self, create: bool) -> KeyValue | None:
        if self._kv is None:
            config = KeyValueConfig(
                bucket=self.bucket,
                history=1,
                storage=StorageType.FILE,
                replicas=getattr(self.store, "replicas", 1),
            )
            self._kv = await open_bucket(self.store.js, config, create=create)
        return self._kv

    async def park(self, letter: ParkedLetter) -> None:
        kv = await self._open(create=True)
        assert kv is not None
        d = asdict(letter)
        d["parked_at"] = letter.parked_at.isoformat()
        await kv.put(f"{letter.name}.{letter.sequence}", json.dumps(d).encode())

    async def get(self, name: str, sequence: int) -> ParkedLetter | None:
        kv = await self._open(create=False)
        if kv is None:
            return None
        try:
            entry = await kv.get(f"{name}.{sequence}")
        except nats.js.errors.KeyNotFoundError:
            return None
        return _letter(entry.value)

    async def list(self, name: str | None = None) -> list[ParkedLetter]:
        """Letters of reactor ``name`` (or all), by reactor then sequence."""
        kv = await self._open(create=False)
        if kv is None:
            return []
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            return []
        if name is not None:
            keys = [k for k in keys if k.rsplit(".", 1)[0] == name]
        out: list[ParkedLetter] = []
        for key in keys:
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                continue
            letter = _letter(entry.value)
            if letter is not None:
                out.append(letter)
        return sorted(out, key=lambda x: (x.name, x.sequence))

    async def count(self, name: str) -> int:
        return len(await self.list(name))

    async def remove(self, name: str, sequence: int) -> None:
        kv = await self._open(create=False)
        if kv is not None:
            await kv.purge(f"{name}.{sequence}")


def _letter(value: bytes | None) -> ParkedLetter | None:
    if not value:
        return None
    d = json.loads(value)
    d["parked_at"] = datetime.fromisoformat(d["parked_at"])
    return ParkedLetter(**d)


def now() -> datetime:
    return datetime.now(UTC)
