"""What a projection runner is fed: its consumer positioned after the checkpoint, each fetch
checked to follow the one before (a gap in the consumer's sequence means someone else took
deliveries: start over from SQL) and cut at the end of a catch-up, and the keys of the
encrypted subjects in a fetch loaded before the batch's transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from eventkit.errors import ForgottenError
from eventkit.projection.applying import Item
from eventkit.projection.committing import Restart
from eventkit.projection.projector import Projector, SystemEvents
from eventkit.runtime.pulling import Puller, parse_reply
from eventkit.store.nats.delivery import Delivered
from eventkit.store.subjects import subject_filter, subject_matches
from eventkit.store.wire_constants import ENCRYPTION, EVENT_TYPE

FILL_WAIT = 0.02
"""While catching up, how long a batch waits to fill up (see :meth:`Puller.take`)."""


def feed_filters(projector: Projector, stream: str, system: SystemEvents | None) -> list[str]:
    """The subjects a runner of ``projector`` consumes: its own, and eventkit's ``system`` ones
    (the forget notices, say) that they do not cover."""
    filters = projector.filters(stream)
    if system is not None:
        filters += [
            s for s in system.subjects(stream) if not any(subject_matches(f, s) for f in filters)
        ]
    return filters


class Feed:
    """The deliveries of one runner's consumer (``puller``), in order, as batch items."""

    def __init__(self, puller: Puller, filters: list[str]) -> None:
        self.puller = puller
        self.own_subjects = subject_filter(filters)
        self.next_cseq = 1

    async def start(self, checkpoint: int, *, fresh: bool) -> Callable[[str], bool] | None:
        """Position the consumer after ``checkpoint``; the test of the runner's own subjects
        when it takes the whole stream (None: it takes only them)."""
        await self.puller.start(checkpoint + 1, fresh=fresh)
        self.next_cseq = 1
        return self.own_subjects if self.puller.whole else None

    @property
    def pending_at_start(self) -> int:
        return self.puller.pending_at_start

    async def take(self, limit: int, timeout: float) -> list[Delivered]:
        return await self.puller.take(limit, timeout, FILL_WAIT)

    def split(self, msgs: list[Delivered], end: int | None) -> tuple[list[Item], bool]:
        """``msgs`` as items, up to ``end``; True when ``end`` was passed. ``Restart`` when they
        do not follow the last fetch (a stale runner, a lost pull took deliveries)."""
        items: list[Item] = []
        expected = self.next_cseq
        for m in msgs:
            sseq, cseq, ts, pending = parse_reply(m.reply)
            if cseq != expected:
                raise Restart
            expected += 1
            if end is not None and sseq > end:
                self.next_cseq = expected
                return items, True
            items.append(Item(sseq, ts, pending, m))
        self.next_cseq = expected
        return items, False


async def prepare_keys(
    cipher: Any,
    msgs: list[Delivered],
    handles: Callable[[str], bool],
    only: Callable[[str], bool] | None,
) -> None:
    """Load the keys of the encrypted subjects in ``msgs`` of types ``handles`` says yes to (and
    subjects ``only`` says yes to), so the batch's transaction decrypts without a round trip."""
    subjects = {
        m.subject
        for m in msgs
        if m.headers
        and ENCRYPTION in m.headers
        and handles(m.headers.get(EVENT_TYPE, ""))
        and (only is None or only(m.subject))
    }
    if subjects:
        with contextlib.suppress(ForgottenError):
            await cipher.prepare(sorted(subjects), create=False)


__all__ = ["FILL_WAIT", "Feed", "feed_filters", "prepare_keys"]
