"""A single writer never sees a conflict it did not cause: when a retried append is refused
because its first try was stored (a lost ack), eventkit finds that try by asking the stream
leader, not a replica that may lag behind it (as on an R3 stream around a leader change)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from faults import LostAcks  # type: ignore[import-not-found]

from eventkit.testing.contract import ContractDeposited

pytestmark = pytest.mark.nats


class LaggingLostAcks(LostAcks):
    """Lost acks, and direct gets answered as a follower one message behind would answer."""

    lag = 0

    async def _direct(self, request: Any, subject: Any = None, reader: Any = None) -> Any:
        msgs, more = await super()._direct(request, subject, reader)
        if reader is None and self.lag > 0 and msgs:
            self.lag -= 1
            return msgs[:-1], 0
        return msgs, more


@pytest.fixture
async def store(nats_url: str, stream_name: str) -> AsyncIterator[LaggingLostAcks]:
    s = await LaggingLostAcks.connect(nats_url, stream=stream_name)
    try:
        yield s
    finally:
        with contextlib.suppress(Exception):
            await s.js.delete_stream(stream_name)
        await s.close()


async def test_a_retried_append_that_landed_is_no_conflict_behind_a_lagging_replica(
    store: LaggingLostAcks,
) -> None:
    subject = f"{store.stream}.acct.a"
    assert await store.append(subject, [ContractDeposited(amount=1)], expected_sequence=0) == 1
    store.lose = 1  # the first try is stored, its ack lost: the retry is refused (10071)
    store.lag = 100  # and the replica that answers reads has not got it yet
    seq = await store.append(subject, [ContractDeposited(amount=2)], expected_sequence=1)
    assert seq == 2
    store.lag = 0
    assert [r.event.amount for r in await store.read(subject)] == [1, 2]  # stored once
