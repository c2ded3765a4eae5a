"""Time, version and stored-message formats of the NATS wire."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from eventkit.store.nats.delivery import Delivered
from eventkit.store.records import StoredMessage
from eventkit.store.wire_constants import SEQUENCE, SUBJECT, TIME_STAMP


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


def to_stored(msg: Delivered) -> StoredMessage:
    h = msg.headers or {}
    return StoredMessage(h[SUBJECT], int(h[SEQUENCE]), parse_nats_time(h[TIME_STAMP]), h, msg.data)
