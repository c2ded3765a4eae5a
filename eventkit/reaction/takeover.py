"""A partition taken over from a worker that died or froze: its events come back in order.

The events the previous owner held unacknowledged come back as redeliveries once their ack
wait ran out, and the server hands all of them out before any later event, but not in stream
order (they expire in separate checks; measured: a frozen worker's last two deliveries came
back before the thirty it held longer). :class:`TakeoverConsumer` holds what arrives up to the
last sequence delivered before the takeover (``high``) until the first later event arrives, or
nothing more comes, and hands it over sorted::

    consumer = TakeoverConsumer(puller)
    consumer.gate(high=info.delivered.stream_seq)    # before the first pull
"""

from __future__ import annotations

import logging

from eventkit.runtime.port import Delivery, JetStreamConsumer

log = logging.getLogger("eventkit.reaction")


class TakeoverConsumer(JetStreamConsumer):
    """A partition's consumer that can hold its first redeliveries to put them in order."""

    high = 0
    """While positive: the last stream sequence delivered before the takeover."""

    def gate(self, high: int) -> None:
        """Hold what arrives up to ``high`` until it is all back (see the module)."""
        self.high = high
        self._held: list[Delivery] = []

    async def take(self, limit: int, timeout: float) -> list[Delivery]:
        got = await super().take(limit, timeout)
        if not self.high:
            return got
        self._held.extend(got)
        if got and all(d.sequence <= self.high for d in got):
            return []  # redeliveries still coming
        out = sorted(self._held, key=lambda d: d.sequence)  # (stable: later events keep order)
        log.info(
            "%s: %d events of the previous owner back, handed over in stream order",
            self.name,
            sum(1 for d in out if d.sequence <= self.high),
        )
        self.high = 0
        self._held = []
        return out

    def buffered(self) -> list[Delivery]:
        held = self._held if self.high else []
        return [*held, *super().buffered()]

    def take_buffered(self) -> list[Delivery]:
        held = self._held if self.high else []
        self.high = 0
        self._held = []
        return [*held, *super().take_buffered()]


__all__ = ["TakeoverConsumer"]
