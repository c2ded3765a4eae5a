"""What reading the store gives back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from eventkit.domain.events import Event

E = TypeVar("E", bound=Event)


@dataclass(frozen=True, slots=True)
class RecordedEvent(Generic[E]):
    """A stored event with its position and metadata.

    ``sequence`` is the stream sequence; ``time`` the server's timestamp (UTC).
    """

    event: E
    subject: str
    entity_id: str
    sequence: int
    time: datetime
    event_id: str
    event_type: str
    schema_version: int
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields of the stored payload that the event class does not know (a newer producer added
    them); reading ignores them, and they are kept here for those who want them."""


def _recorder() -> Callable[..., RecordedEvent[Any]]:
    """``RecordedEvent(...)`` with every field given, through the slots' setters: a frozen
    dataclass sets each field with ``object.__setattr__``, twice as slow, once per event read."""
    (e, s, i, q, t, d, y, v, h, x) = (
        getattr(RecordedEvent, f.name).__set__ for f in fields(RecordedEvent)
    )
    new = object.__new__

    def recorded(
        event: Any,
        subject: str,
        entity_id: str,
        sequence: int,
        time: datetime,
        event_id: str,
        event_type: str,
        schema_version: int,
        headers: dict[str, str],
        extra: dict[str, Any],
    ) -> RecordedEvent[Any]:
        r: RecordedEvent[Any] = new(RecordedEvent)
        e(r, event)
        s(r, subject)
        i(r, entity_id)
        q(r, sequence)
        t(r, time)
        d(r, event_id)
        y(r, event_type)
        v(r, schema_version)
        h(r, headers)
        x(r, extra)
        return r

    return recorded


recorded = _recorder()
"""Makes a :class:`RecordedEvent` from all its fields, in their order (the codec's fast path)."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A raw stored message, before decoding (what the transports hand the codec)."""

    subject: str
    sequence: int
    time: datetime
    headers: dict[str, str]
    data: bytes


def time_from_ns(ns: int) -> datetime:
    """A server timestamp in nanoseconds as an aware UTC datetime, truncated to microseconds
    (never rounded up, so an event's time is never after the server's)."""
    # exact: a float holds every microsecond count up to far past 2100 within 0.5 µs, and
    # fromtimestamp rounds to the nearest microsecond (a third faster than epoch + timedelta)
    return datetime.fromtimestamp(ns // 1000 / 1e6, UTC)
