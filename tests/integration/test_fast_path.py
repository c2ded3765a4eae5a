"""The fast message path (eventkit.store.nats.delivery) is a guarded exception to nats-py's
public API: a switch turns it off, a connect-time self-test falls back, with a warning, when
the client does not dispatch through the hook as expected, and a message the hook misses is
still delivered (nats-py's own callback), so nothing stalls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from eventkit.domain.events import Event
from eventkit.errors import ConfigError
from eventkit.server import start_server_process
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.nats import delivery
from eventkit.store.nats.delivery import Delivered, subscribe
from eventkit.testing.waiting import wait_until

pytestmark = pytest.mark.nats


@pytest.fixture
def fast_path_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the hook: on, whatever the run's switch says."""
    monkeypatch.delenv(delivery.FAST_PATH_ENV, raising=False)


class FastPathDeposited(Event):
    event_type = "FastPathDeposited"
    amount: int


def _hooked(nc: NATS) -> bool:
    return "_process_msg" in vars(nc)


async def _round_trip(nc: NATS, subject: str) -> list[Delivered]:
    got: list[Delivered] = []

    async def handler(msg: Delivered) -> None:
        got.append(msg)

    sub = await subscribe(nc, subject, handler)
    await nc.publish(subject, b"body", reply="r.1", headers={"A": "1"})
    await nc.flush()
    assert await wait_until(lambda: len(got) == 1, 10, interval=0.01), subject
    await sub.unsubscribe()
    return got


class _Parser:
    """Stands between nats-py's parser and its client, as a nats-py release that dispatches
    another way would: ``mode`` says what becomes of the client's ``_process_msg``."""

    def __init__(self, nc: NATS, mode: str) -> None:
        self._nc = nc
        self._mode = mode

    def __getattr__(self, name: str) -> Any:
        if name != "_process_msg":
            return getattr(self._nc, name)
        original = NATS._process_msg.__get__(self._nc)
        if self._mode == "bypassed" or not _hooked(self._nc):
            return original  # the class's dispatch, never the connection's hook
        hooked = self._nc._process_msg

        async def garbled(sid: int, subject: bytes, reply: bytes, data: bytes, hdr: Any) -> None:
            await hooked(sid, subject, reply, data, None)  # the hook gets no header block

        return garbled


async def _connect_with(url: str, mode: str) -> NATS:
    nc = await nats.connect(url)
    nc._ps.nc = _Parser(nc, mode)
    return nc


async def test_the_fast_path_is_taken_and_self_tested_by_default(
    nats_url: str, fast_path_on: None
) -> None:
    nc = await nats.connect(nats_url)
    try:
        (msg,) = await _round_trip(nc, "fp.on")
        assert _hooked(nc)
        assert (msg.subject, msg.reply, msg.data, msg.headers) == (
            "fp.on",
            "r.1",
            b"body",
            {"A": "1"},
        )
    finally:
        await nc.close()


async def test_the_switch_leaves_nats_py_dispatch_alone(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(delivery.FAST_PATH_ENV, "0")
    nc = await nats.connect(nats_url)
    try:
        (msg,) = await _round_trip(nc, "fp.off")
        assert not _hooked(nc)  # nothing private replaced
        assert (msg.subject, msg.reply, msg.data, msg.headers) == (
            "fp.off",
            "r.1",
            b"body",
            {"A": "1"},
        )
    finally:
        await nc.close()


@pytest.mark.parametrize("mode", ["bypassed", "garbled"])
async def test_a_client_that_dispatches_another_way_falls_back_with_a_warning(
    nats_url: str, mode: str, caplog: pytest.LogCaptureFixture, fast_path_on: None
) -> None:
    nc = await _connect_with(nats_url, mode)
    try:
        with caplog.at_level(logging.WARNING, logger="eventkit.store"):
            (msg,) = await _round_trip(nc, f"fp.{mode}")
        assert not _hooked(nc)  # the hook was taken off again
        assert (msg.data, msg.headers) == (b"body", {"A": "1"})
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("fast message path is off" in w for w in warned), warned
    finally:
        await nc.close()


async def test_a_store_on_a_client_that_dispatches_another_way_does_not_stall(
    nats_url: str, stream_name: str, monkeypatch: pytest.MonkeyPatch, fast_path_on: None
) -> None:
    made: list[NATS] = []
    connect: Callable[..., Any] = nats.connect

    async def bypassing(*args: Any, **kwargs: Any) -> NATS:
        nc = await connect(*args, **kwargs)
        nc._ps.nc = _Parser(nc, "bypassed")
        made.append(nc)
        return nc

    monkeypatch.setattr(nats, "connect", bypassing)
    store = await JetStreamEventStore.connect(nats_url, stream=stream_name)
    subject = f"{stream_name}.acct.a"
    try:
        async with asyncio.timeout(30):  # a stalled request would hang here
            seq = await store.append(subject, [FastPathDeposited(amount=1)], expected_sequence=0)
            events = await store.read(subject)
        assert [r.sequence for r in events] == [seq]
        assert made and not _hooked(made[0])
    finally:
        await store.nc.jetstream().delete_stream(stream_name)
        await store.close()


async def test_a_message_the_hook_misses_after_the_self_test_is_still_delivered(
    nats_url: str, fast_path_on: None
) -> None:
    nc = await nats.connect(nats_url)
    try:
        await _round_trip(nc, "fp.first")  # the hook passed its self-test and is on
        assert _hooked(nc)
        nc._ps.nc = _Parser(nc, "bypassed")  # from now on the client dispatches another way
        (msg,) = await _round_trip(nc, "fp.later")
        assert (msg.data, msg.headers) == (b"body", {"A": "1"})
    finally:
        await nc.close()


PERMISSIONS = """
accounts {
  A: {
    jetstream: enabled
    users: [
      {user: strict, password: ps, permissions: {
        publish: {allow: ["fp.>", "$JS.API.>"]}
        subscribe: {allow: ["_INBOX.>", "fp.>"]}
      }}
    ]
  }
}
"""


async def test_a_user_who_may_not_publish_to_its_inbox_keeps_the_fast_path_untested(
    tmp_path: Path, fast_path_on: None, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server_process(tmp_path / "store", extra_config=PERMISSIONS)
    try:
        loop = asyncio.get_running_loop()
        nc = await nats.connect(server.url, user="strict", password="ps")
        try:
            with caplog.at_level(logging.INFO, logger="eventkit.store"):
                started = loop.time()
                (msg,) = await _round_trip(nc, "fp.strict")  # the self-test runs first
                took = loop.time() - started
            assert _hooked(nc)
            assert (msg.data, msg.headers) == (b"body", {"A": "1"})
        finally:
            await nc.close()
        assert took < delivery.SELF_TEST_TIMEOUT  # refused at once, not waited out
        assert any("untested" in r.getMessage() for r in caplog.records), caplog.text
        assert not any(r.levelno >= logging.WARNING for r in caplog.records), caplog.text
        # and the store works for this user
        store = await JetStreamEventStore.connect(
            server.url, stream="fp", user="strict", password="ps"
        )
        try:
            seq = await store.append("fp.acct.a", [FastPathDeposited(amount=1)])
            assert [r.sequence for r in await store.read("fp.acct.a")] == [seq]
        finally:
            await store.close()
    finally:
        server.stop()


def test_a_bad_switch_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(delivery.FAST_PATH_ENV, "maybe")
    with pytest.raises(ConfigError, match="EVENTKIT_NATS_FAST_PATH='maybe'"):
        delivery.fast_path_wanted()
    for off in ("0", "off", "False", " no "):
        monkeypatch.setenv(delivery.FAST_PATH_ENV, off)
        assert not delivery.fast_path_wanted()
    monkeypatch.delenv(delivery.FAST_PATH_ENV)
    assert delivery.fast_path_wanted()
