"""Whether a projector's consumer should take the whole stream or its subjects only: the
server delivers a filtered consumer's messages at a much higher cost per message on a stream of
many subjects (several filters more so), and the runner passes over the rest by subject.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

log = logging.getLogger("eventkit.runtime")

DENSE_SHARE = 0.5
"""A projector's consumer with one filter takes the whole stream when at least this share of
the messages ahead are on its subjects. Measured on nats-server 2.15, a stream of 10,000
subjects: a filtered consumer costs the server about 45 µs per message delivered, the whole
stream 3 µs, and a message passed over costs the runner about 12 µs; the two break even near
half."""
DENSE_SHARE_SEVERAL = 1 / 16
"""The same with several filters (the projector's subjects and the forget notices, say): the
server's cost per message delivered is then about 170 µs, so the whole stream is faster down
to a small share (measured: twice as fast at a tenth)."""
DENSE_MIN = 2048
"""Messages ahead below which the consumer keeps the mode it has (a live restart)."""


async def takes_whole_stream(
    js: Any, stream: str, name: str, filters: list[str], from_sequence: int, current: bool
) -> bool:
    """Whether the consumer should take the whole stream from ``from_sequence``: its
    subjects hold at least :data:`DENSE_SHARE` (:data:`DENSE_SHARE_SEVERAL` with several
    filters) of the messages ahead, counted by a short-lived probe consumer."""
    if any(f in (">", f"{stream}.>") for f in filters):
        return False  # the filter is the whole stream already
    try:
        info = await js.stream_info(stream)
        start = max(from_sequence, int(info.state.first_seq or 1))  # before: purged
        ahead = int(info.state.last_seq) - start + 1
        if ahead < DENSE_MIN:
            return current
        probe = await js.add_consumer(
            stream,
            ConsumerConfig(
                filter_subjects=filters,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=max(1, start),
                ack_policy=AckPolicy.NONE,
                inactive_threshold=30.0,
                mem_storage=True,
            ),
        )
        try:
            matching = int(probe.num_pending or 0)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await js.delete_consumer(stream, probe.name)
    except (nats.errors.Error, nats.js.errors.Error) as e:
        log.info("consumer %s keeps its filters (counting ahead failed: %s)", name, e)
        return False
    share = DENSE_SHARE if len(filters) == 1 else DENSE_SHARE_SEVERAL
    whole = matching >= ahead * share
    if whole != current:
        log.info(
            "consumer %s takes %s: %d of the %d messages ahead are on its subjects",
            name,
            "the whole stream" if whole else "its subjects only",
            matching,
            ahead,
        )
    return whole


__all__ = ["DENSE_MIN", "DENSE_SHARE", "DENSE_SHARE_SEVERAL", "takes_whole_stream"]
