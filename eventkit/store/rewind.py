"""Noticing a stream that went back under a position someone reached.

A server that acknowledged appends before it fsynced them comes back from a power loss with a
shorter stream, and hands the lost sequence numbers to new events. A projector whose checkpoint
is past the new end would pass over the events that take those numbers, and its read model
still holds effects of events that no longer exist. So before a projector or reactor goes on
from a position, the stream must still hold it::

    await check_position(store, 42, "01J...", who="projector 'balances'", recover="...")

raises :class:`~eventkit.errors.StreamRewoundError` when the stream's last sequence is below 42,
or when the event at 42 has another id than the one applied there. An event erased since (GDPR)
is not a rewind: its sequence is simply empty.
"""

from __future__ import annotations

from typing import Any

from eventkit.errors import StreamRewoundError
from eventkit.store.wire_constants import MSG_ID

WHAT_HAPPENED = (
    "the stream went back: it lost its end (a power loss on a server that acknowledged appends "
    "before it fsynced them, or a restore from an older backup) and may have handed those "
    "sequence numbers to new events"
)


async def check_position(
    store: Any,
    position: int,
    event_id: str | None,
    *,
    who: str,
    recover: str,
) -> None:
    """``StreamRewoundError`` unless ``store``'s stream still holds ``position`` (and, when
    ``event_id`` is given, the same event there). ``who`` names what reached it, ``recover``
    says how to go on safely."""
    if position <= 0:
        return
    last = int(await store.last_sequence())
    if last < position:
        raise StreamRewoundError(
            f"{who} is at stream sequence {position}, beyond the stream's last sequence {last}: "
            f"{WHAT_HAPPENED}. It stops here rather than pass over events or keep effects of "
            f"events that no longer exist. {recover}"
        )
    if event_id is None:
        return
    found = await store.get(position)
    if found is None:  # erased since (forget) or deleted: nothing to compare
        return
    stored_id = found.headers.get(MSG_ID)
    if stored_id is not None and stored_id != event_id:
        raise StreamRewoundError(
            f"{who} applied event {event_id} at stream sequence {position}, but the stream now "
            f"holds event {stored_id} there: {WHAT_HAPPENED}. It stops here rather than skip "
            f"the new events or keep effects of lost ones. {recover}"
        )


__all__ = ["WHAT_HAPPENED", "check_position"]
