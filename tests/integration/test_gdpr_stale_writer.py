"""A process that missed the forget (its connection was down) can neither write to the forgotten
subject nor decrypt its events: the erasure marker is enforced by the server, the key cache
catches up the tombstones it missed before its next use."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import test_gdpr_domain as d
from tcp_proxy import Proxy

from eventkit.errors import ForgottenError
from eventkit.gdpr import forget_subject
from eventkit.server import ServerProcess
from eventkit.store.erasure import is_marker
from eventkit.store.jetstream import JetStreamEventStore

pytestmark = pytest.mark.nats


async def _reconnected(store: JetStreamEventStore, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not store.nc.is_connected:
        assert loop.time() < deadline, "the stale writer did not reconnect"
        await asyncio.sleep(0.05)


async def test_a_writer_that_missed_the_forget_cannot_write_or_decrypt(
    server: ServerProcess, tmp_path: Path
) -> None:
    engine = d.prepare_db(f"sqlite:///{tmp_path / 'read.db'}")
    host, port = server.url.removeprefix("nats://").split(":")
    proxy = await Proxy(host, int(port)).start()
    stale = await d.connect(proxy.url)  # the process that will miss the forget
    operator = await d.connect(server.url)
    customer = f"{d.STREAM}.customer.{uuid.uuid4().hex}"  # encrypted
    account = f"{d.STREAM}.account.{uuid.uuid4().hex}"  # plain
    await stale.append(customer, [d.GdprCustomerRegistered(name="Ada")], expected_sequence=0)
    c_version = await stale.append(customer, [d.GdprCustomerRenamed(name="Ada L")])
    a_version = await stale.append(account, [d.GdprAccountNoted(note="hello")])
    held = [m async for m in stale.read_raw(customer)]  # a copy kept from before the forget
    assert [r.event.name for r in await stale.read(customer)] == ["Ada", "Ada L"]  # key cached

    proxy.cut()  # the stale writer is cut off for the whole forget (3 s)
    started = asyncio.get_running_loop().time()
    for subject in (customer, account):
        await forget_subject(d.app, operator, engine, subject)
    await asyncio.sleep(max(0.0, 3.0 - (asyncio.get_running_loop().time() - started)))
    proxy.restore()
    await _reconnected(stale)

    attempts = [
        (customer, {"expected_sequence": c_version}),
        (customer, {}),
        (customer, {"expected_sequence": 0}),
        (account, {"expected_sequence": a_version}),
        (account, {}),
    ]
    for subject, expectation in attempts:
        event = (
            d.GdprCustomerRenamed(name="again")
            if subject == customer
            else d.GdprAccountNoted(note="again")
        )
        with pytest.raises(ForgottenError):
            await stale.append(subject, [event], **expectation)  # type: ignore[arg-type]
    assert await stale.read(customer) == [] and await stale.read(account) == []
    assert stale.codec.cipher is not None
    await stale.codec.cipher.prepare([customer], create=False)
    with pytest.raises(ForgottenError):  # the cached key is gone: the old copy stays sealed
        stale.codec.decode(held[0])
    # nothing was stored: each subject holds its erasure marker only
    for subject in (customer, account):
        left = [m async for m in operator.read_raw(subject)]
        assert len(left) == 1 and is_marker(left[0].headers)
    await stale.close()
    await operator.close()
    await proxy.close()
    engine.dispose()


async def test_a_connected_writer_is_refused_at_once_after_the_forget(
    server: ServerProcess, tmp_path: Path
) -> None:
    engine = d.prepare_db(f"sqlite:///{tmp_path / 'read.db'}")
    writer = await d.connect(server.url)
    operator = await d.connect(server.url)
    account = f"{d.STREAM}.account.{uuid.uuid4().hex}"
    version = await writer.append(account, [d.GdprAccountNoted(note="hello")])
    await forget_subject(d.app, operator, engine, account)
    with pytest.raises(ForgottenError):
        await writer.append(account, [d.GdprAccountNoted(note="x")], expected_sequence=version)
    with pytest.raises(ForgottenError):
        await writer.last_sequence(account)
    await writer.close()
    await operator.close()
    engine.dispose()
