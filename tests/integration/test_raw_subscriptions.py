"""eventkit's own subscriptions read off the wire: the same messages and headers nats-py gives,
other subscriptions untouched, and a failing handler never stops the connection's reading."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.msg import Msg

from eventkit.store.nats.delivery import Delivered, subscribe

pytestmark = pytest.mark.nats


async def test_raw_and_plain_subscribers_get_the_same_message(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        raw: list[Delivered] = []
        plain: list[Msg] = []

        async def on_raw(msg: Delivered) -> None:
            raw.append(msg)

        async def on_plain(msg: Msg) -> None:
            plain.append(msg)

        sub = await subscribe(nc, "dlv.a", on_raw)
        await nc.subscribe("dlv.a", cb=on_plain)
        headers = {"Eventkit-Type": "Paid", "X-Odd": " spaced  value ", "Utf": "é"}
        await nc.publish("dlv.a", b'{"x":1}', reply="dlv.reply", headers=headers)
        await nc.publish("dlv.a", b"no headers")
        await nc.flush()
        for _ in range(100):
            if len(raw) == 2 and len(plain) == 2:
                break
            await asyncio.sleep(0.01)
        assert [(m.subject, m.reply, m.data, m.headers) for m in raw] == [
            (m.subject, m.reply, m.data, m.headers) for m in plain
        ]
        assert raw[0].headers == {"Eventkit-Type": "Paid", "X-Odd": "spaced  value", "Utf": "é"}
        assert raw[1].headers is None

        await sub.unsubscribe()
        await nc.publish("dlv.a", b"after")
        await nc.flush()
        for _ in range(100):
            if len(plain) == 3:
                break
            await asyncio.sleep(0.01)
        assert len(plain) == 3 and len(raw) == 2  # the plain one goes on, the raw one stopped
    finally:
        await nc.close()


async def test_a_failing_handler_does_not_stop_the_connection(nats_url: str) -> None:
    errors: list[Exception] = []

    async def on_error(e: Exception) -> None:
        errors.append(e)

    nc = await nats.connect(nats_url, error_cb=on_error)
    try:
        got: list[bytes] = []

        async def handler(msg: Delivered) -> None:
            if msg.data == b"boom":
                raise ValueError("boom")
            got.append(msg.data)

        await subscribe(nc, "dlv.b", handler)
        for body in (b"boom", b"after"):
            await nc.publish("dlv.b", body)
        await nc.flush()
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        assert got == [b"after"]
        assert any(isinstance(e, ValueError) for e in errors)
        assert nc.is_connected
    finally:
        await nc.close()
