"""Reads answered by the stream leader (``$JS.API.STREAM.MSG.GET``), not by any replica.

Direct gets are answered by whichever replica (or mirror) is nearest and may lag the leader
(ADR-31); the leader's answer includes every acknowledged append. These are the strong reads:
one message per request, so they serve the tail a replica has not caught up with, a subject's
last message, and a filter's last sequence::

    m = await leader_get(store.link, {"seq": 42, "next_by_subj": "bank.account.a-1"})
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import nats.errors

from eventkit.errors import StoreUnavailableError
from eventkit.store.nats.link import Link
from eventkit.store.nats.retries import Backoff
from eventkit.store.nats.wire import parse_nats_time
from eventkit.store.records import StoredMessage

NOT_FOUND = 10037
"""``no message found``."""


def _headers(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    text = base64.b64decode(raw).decode(errors="replace")
    out: dict[str, str] = {}
    for line in text.split("\r\n")[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip()
    return out


def parse_message(message: dict[str, Any]) -> StoredMessage:
    """A ``STREAM.MSG.GET`` answer's ``message`` as a :class:`StoredMessage`."""
    when = message.get("time")
    return StoredMessage(
        str(message.get("subject", "")),
        int(message.get("seq", 0)),
        parse_nats_time(str(when)) if when else datetime.now(UTC),
        _headers(message.get("hdrs")),
        base64.b64decode(message.get("data") or ""),
    )


async def leader_get(store: Link, request: dict[str, Any]) -> StoredMessage | None:
    """One message by ``request`` (``seq``, ``next_by_subj``, ``last_by_subj``) from the leader
    of ``store``'s stream; None when there is none. Retried while unanswered (an election)."""
    subject = f"$JS.API.STREAM.MSG.GET.{store.stream}"
    payload = json.dumps(request).encode()
    backoff = Backoff(store.retry_for)
    while True:
        try:
            reply = await store.denials.guard(
                store.nc.request(subject, payload, timeout=store.read_timeout)
            )
            answer = json.loads(reply.data or b"{}")
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
            if not await backoff.wait():
                raise StoreUnavailableError(
                    f"the leader of stream {store.stream!r} did not answer within "
                    f"{store.retry_for:g}s ({e!r})"
                ) from e
            continue
        error = answer.get("error")
        if error is None:
            return parse_message(answer.get("message") or {})
        if error.get("err_code") == NOT_FOUND or error.get("code") == 404:
            return None
        if error.get("code") == 503 and await backoff.wait():  # no leader yet
            continue
        raise StoreUnavailableError(
            f"the leader of stream {store.stream!r} refused a read: {error.get('description')}"
        )


async def leader_tail(
    store: Link, start: int, subject: str, end: int | None
) -> list[StoredMessage]:
    """Messages of ``subject`` (a filter) from ``start`` to ``end`` (None: to the last), in
    order, one leader read each: for the few a lagging replica has not got yet."""
    out: list[StoredMessage] = []
    seq = start
    while end is None or seq <= end:
        m = await leader_get(store, {"seq": seq, "next_by_subj": subject})
        if m is None or (end is not None and m.sequence > end):
            break
        out.append(m)
        seq = m.sequence + 1
    return out


__all__ = ["leader_get", "leader_tail", "parse_message"]
