"""Aggregate snapshots: a KV bucket on JetStream, a dict in memory."""

from __future__ import annotations

import abc
import json
from dataclasses import asdict, dataclass
from typing import Any

from eventkit.errors import EventDecodeError

SNAPSHOT_EVENT_TYPE = "eventkit.snapshot"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An aggregate's state at ``version`` (the stream sequence of its last applied event)."""

    subject: str
    version: int
    aggregate: str
    snapshot_version: int
    shape: list[str]
    state: dict[str, Any]

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        try:
            raw = json.loads(data)
            return cls(
                subject=str(raw["subject"]),
                version=int(raw["version"]),
                aggregate=str(raw["aggregate"]),
                snapshot_version=int(raw["snapshot_version"]),
                shape=[str(s) for s in raw["shape"]],
                state=dict(raw["state"]),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise EventDecodeError(f"bad snapshot: {e}") from e


class SnapshotStore(abc.ABC):
    """Keeps the latest snapshot of each subject."""

    @abc.abstractmethod
    async def get(self, subject: str) -> Snapshot | None:
        """The latest snapshot, or None (also when it cannot be decoded or decrypted)."""

    @abc.abstractmethod
    async def put(self, snapshot: Snapshot) -> None: ...

    @abc.abstractmethod
    async def delete(self, subject: str) -> int:
        """Erase every stored revision of the subject's snapshot; return how many went."""


class InMemorySnapshotStore(SnapshotStore):
    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    async def get(self, subject: str) -> Snapshot | None:
        raw = self._data.get(subject)
        if raw is None:
            return None
        try:
            return Snapshot.from_bytes(raw)
        except EventDecodeError:
            return None

    async def put(self, snapshot: Snapshot) -> None:
        self._data[snapshot.subject] = snapshot.to_bytes()

    async def delete(self, subject: str) -> int:
        return 1 if self._data.pop(subject, None) is not None else 0
