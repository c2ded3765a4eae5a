"""Fault injection for the store tests."""

from __future__ import annotations

import nats.errors

from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.nats.delivery import Delivered


class LostAcks(JetStreamEventStore):
    """Does the real request, then drops the answer ``lose`` times (a lost ack)."""

    lose = 0
    sent = 0

    async def _request(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str],
        timeout: float,
    ) -> Delivered:
        self.sent += 1
        msg = await super()._request(subject, payload, headers, timeout)
        if self.lose > 0:
            self.lose -= 1
            raise nats.errors.TimeoutError
        return msg
