"""Fuzzing the decoder: whatever bytes and headers a stored message holds, ``Codec.decode`` returns
a ``RecordedEvent`` or raises an ``EventkitError`` subclass, never anything else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventkit.domain.events import Event
from eventkit.errors import EventkitError
from eventkit.store.codec import Codec
from eventkit.store.records import RecordedEvent, StoredMessage
from eventkit.store.wire_constants import ENCRYPTION, EVENT_TYPE, MSG_ID, SCHEMA_VERSION


class FuzzItemAdded(Event):
    event_type = "FuzzItemAdded"
    sku: str
    quantity: int


class FuzzPriced(Event):
    """At schema version 2: stored v1 payloads are upcast on read."""

    event_type = "FuzzPriced"
    schema_version = 2
    cents: int
    currency: str

    @staticmethod
    def upcast_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {"cents": int(data["price"] * 100), "currency": "EUR"}


FUZZ = settings(
    derandomize=True,  # the same examples on every run, so CI does not flake
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
NOW = datetime(2026, 1, 1, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: __import__("json").dumps(v).encode()),
    st.fixed_dictionaries(
        {}, optional={"sku": json_values, "quantity": json_values, "price": json_values}
    ).map(lambda v: __import__("json").dumps(v).encode()),
)
type_names = st.one_of(
    st.sampled_from(["FuzzItemAdded", "FuzzPriced", "", "NoSuchType"]), st.text(max_size=30)
)
versions = st.one_of(
    st.sampled_from(["1", "2", "3", "0", "-1", "", " 2 ", "1e3", "two"]), st.text(max_size=8)
)
header_maps = st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=5)


def _message(subject: str, headers: dict[str, str], data: bytes) -> StoredMessage:
    return StoredMessage(subject=subject, sequence=7, time=NOW, headers=headers, data=data)


def _decode(codec: Codec, msg: StoredMessage) -> RecordedEvent[Any] | EventkitError:
    try:
        return codec.decode(msg)
    except EventkitError as e:
        assert str(e), "an eventkit error must say what is wrong"
        return e


@FUZZ
@given(
    subject=st.text(max_size=40),
    event_type=type_names,
    version=st.none() | versions,
    encrypted=st.none() | st.text(max_size=10),
    extra=header_maps,
    data=payloads,
)
def test_decode_random_messages_raises_only_eventkit_errors(
    subject: str,
    event_type: str,
    version: str | None,
    encrypted: str | None,
    extra: dict[str, str],
    data: bytes,
) -> None:
    headers = dict(extra)
    headers[EVENT_TYPE] = event_type
    if version is not None:
        headers[SCHEMA_VERSION] = version
    if encrypted is not None:
        headers[ENCRYPTION] = encrypted
    out = _decode(Codec(), _message(subject, headers, data))
    if isinstance(out, RecordedEvent):
        assert type(out.event).event_type == event_type
        assert out.sequence == 7


@FUZZ
@given(headers=header_maps, data=st.binary(max_size=300))
def test_decode_random_headers_and_bytes_raises_only_eventkit_errors(
    headers: dict[str, str], data: bytes
) -> None:
    _decode(Codec(), _message("fuzz.item.x", headers, data))


@FUZZ
@given(price=json_values)
def test_upcasting_a_bad_old_payload_is_a_decode_error(price: Any) -> None:
    """A user's upcaster that chokes on a malformed old payload still surfaces as EventkitError."""
    import json

    msg = _message(
        "fuzz.price.x",
        {EVENT_TYPE: "FuzzPriced", SCHEMA_VERSION: "1"},
        json.dumps({"price": price}).encode(),
    )
    _decode(Codec(), msg)


def test_a_valid_message_decodes() -> None:
    """The fuzz above must not pass only because everything fails."""
    msg = _message(
        "fuzz.item.x",
        {EVENT_TYPE: "FuzzItemAdded", SCHEMA_VERSION: "1", MSG_ID: "e-1"},
        b'{"sku":"a","quantity":2}',
    )
    rec = Codec().decode(msg)
    assert rec.event == FuzzItemAdded(sku="a", quantity=2)
    assert rec.entity_id == "x" and rec.event_id == "e-1"
