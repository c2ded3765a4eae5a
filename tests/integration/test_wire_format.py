"""The wire format seen from another client (plain nats-py, as a NestJS or Go service would):
every body is JSON, encrypted ones included (an envelope a JSON consumer passes over); a field a
newer producer added is tolerated; an event encrypted before bodies were JSON still reads."""

from __future__ import annotations

import base64
import json
import uuid

import nats
import pytest
import test_gdpr_domain as d
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from eventkit.errors import EventDecodeError
from eventkit.gdpr.keys import KeyStore
from eventkit.server import ServerProcess
from eventkit.store.codec import ENVELOPE
from eventkit.store.wire_constants import ENCRYPTION, EVENT_TYPE, MSG_ID, SCHEMA_VERSION

pytestmark = [pytest.mark.nats]


async def test_a_json_consumer_reads_every_event_and_recognises_encrypted_ones(
    server: ServerProcess,
) -> None:
    store = await d.connect(server.url)
    customer = f"{d.STREAM}.customer.{uuid.uuid4().hex}"
    account = f"{d.STREAM}.account.{uuid.uuid4().hex}"
    await store.append(customer, [d.GdprCustomerRegistered(name="Ada")])
    await store.append(account, [d.GdprAccountNoted(note="hello")])
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        f"{d.STREAM}.>",
        durable="json_consumer",
        stream=d.STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT),
    )
    msgs = await sub.fetch(2, timeout=5)
    bodies = {m.subject: json.loads(m.data) for m in msgs}  # every body parses as JSON
    for m in msgs:
        await m.ack()
    assert bodies[account] == {"note": "hello"}
    envelope = bodies[customer]
    assert envelope["enc"] == ENVELOPE and b"Ada" not in base64.b64decode(envelope["data"])
    headers = {m.subject: m.headers or {} for m in msgs}
    assert headers[customer][EVENT_TYPE] == "GdprCustomerRegistered"
    assert headers[customer][ENCRYPTION] == envelope["key"]
    assert [r.event.name for r in await store.read(customer)] == ["Ada"]
    await nc.close()
    await store.close()


async def test_a_field_a_newer_producer_added_is_tolerated(server: ServerProcess) -> None:
    store = await d.connect(server.url)
    nc = await nats.connect(server.url)
    subject = f"{d.STREAM}.account.{uuid.uuid4().hex}"
    headers = {EVENT_TYPE: "GdprAccountNoted", SCHEMA_VERSION: "1", MSG_ID: "ext-1"}
    body = json.dumps({"note": "hi", "channel": "mobile", "tags": ["a"]}).encode()
    await nc.jetstream().publish(subject, body, headers=headers)
    (rec,) = await store.read(subject)
    assert rec.event == d.GdprAccountNoted(note="hi")
    assert rec.extra == {"channel": "mobile", "tags": ["a"]}
    # a change that cannot be read still fails clearly
    bad = json.dumps({"note": 5, "channel": "mobile"}).encode()
    await nc.jetstream().publish(subject, bad, headers={**headers, MSG_ID: "ext-2"})
    with pytest.raises(EventDecodeError, match="does not match the class"):
        await store.read(subject)
    await nc.close()
    await store.close()


async def test_an_event_encrypted_before_bodies_were_json_still_reads(
    server: ServerProcess,
) -> None:
    store = await d.connect(server.url)
    subject = f"{d.STREAM}.customer.{uuid.uuid4().hex}"
    await store.append(subject, [d.GdprCustomerRegistered(name="first")])  # makes the key
    keys = store.codec.cipher
    assert isinstance(keys, KeyStore)
    key_id, sealed = keys.encrypt(subject, b'{"name":"Grace"}')  # the old body: raw binary
    old = {EVENT_TYPE: "GdprCustomerRegistered", SCHEMA_VERSION: "1", ENCRYPTION: key_id}
    nc = await nats.connect(server.url)
    await nc.jetstream().publish(subject, sealed, headers={**old, MSG_ID: "old-1"})
    other = await d.connect(server.url)  # a fresh process, keys loaded from the bucket
    assert [r.event.name for r in await other.read(subject)] == ["first", "Grace"]
    await nc.close()
    await other.close()
    await store.close()
