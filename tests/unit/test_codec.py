"""The codec: events to messages and back, with upcasting and typed errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from eventkit.domain.events import Event, EventRegistry
from eventkit.errors import EventDecodeError, UnknownEventTypeError
from eventkit.store.codec import Codec
from eventkit.store.records import StoredMessage
from eventkit.store.wire_constants import ENCRYPTION, EVENT_TYPE, MSG_ID, SCHEMA_VERSION


class Moved(Event):
    event_type: ClassVar[str] = "tests.codec.Moved"
    schema_version: ClassVar[int] = 2
    x: int
    y: int

    @staticmethod
    def upcast_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {"x": data["pos"], "y": 0}


NOW = datetime(2026, 1, 2, tzinfo=UTC)


def stored(headers: dict[str, str], data: bytes) -> StoredMessage:
    return StoredMessage("s.thing.t-1", 3, NOW, headers, data)


def test_round_trip() -> None:
    codec = Codec()
    headers, payload = codec.encode("s.thing.t-1", Moved(x=1, y=2), "id-1")
    assert headers == {MSG_ID: "id-1", EVENT_TYPE: "tests.codec.Moved", SCHEMA_VERSION: "2"}
    r = codec.decode(stored(headers, payload))
    assert r.event == Moved(x=1, y=2)
    assert (r.subject, r.entity_id, r.sequence, r.time, r.event_id) == (
        "s.thing.t-1",
        "t-1",
        3,
        NOW,
        "id-1",
    )


def test_old_payload_is_upcast() -> None:
    h = {EVENT_TYPE: "tests.codec.Moved", SCHEMA_VERSION: "1"}
    r = Codec().decode(stored(h, b'{"pos": 7}'))
    assert r.event == Moved(x=7, y=0) and r.schema_version == 1


def test_unknown_type() -> None:
    codec = Codec(events=EventRegistry())
    with pytest.raises(UnknownEventTypeError) as info:
        codec.decode(stored({EVENT_TYPE: "tests.codec.Moved"}, b"{}"))
    assert (info.value.subject, info.value.sequence) == ("s.thing.t-1", 3)


@pytest.mark.parametrize(
    ("headers", "data", "needle"),
    [
        ({}, b"{}", "another service wrote it"),
        ({EVENT_TYPE: "tests.codec.Moved", SCHEMA_VERSION: "x"}, b"{}", "bad Eventkit-Schema"),
        ({EVENT_TYPE: "tests.codec.Moved", SCHEMA_VERSION: "3"}, b"{}", "schema version 3"),
        ({EVENT_TYPE: "tests.codec.Moved"}, b"\xff\xfe", "does not match"),
        ({EVENT_TYPE: "tests.codec.Moved", SCHEMA_VERSION: "1"}, b"[1]", "does not match"),
        ({EVENT_TYPE: "tests.codec.Moved", SCHEMA_VERSION: "1"}, b"{}", "upcasting"),
        ({EVENT_TYPE: "tests.codec.Moved", ENCRYPTION: "k1"}, b"{}", "encrypted"),
    ],
)
def test_undecodable_messages(headers: dict[str, str], data: bytes, needle: str) -> None:
    with pytest.raises(EventDecodeError, match=needle):
        Codec().decode(stored(headers, data))
