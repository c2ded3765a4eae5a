"""JetStream errors: the ones eventkit translates, and the one it passes on."""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import nats.js.errors

from eventkit.errors import EventkitError, PermissionDeniedError, StoreUnavailableError
from eventkit.store.wire_constants import (
    ERR_MESSAGE_DELETE_FAILED,
    ERR_MESSAGE_NOT_FOUND,
    ERR_SEQUENCE_NOT_FOUND,
)

TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    asyncio.TimeoutError,
)
"""What a request may meet while the server restarts or elects a leader: worth trying again."""


class JetStreamError(EventkitError):
    """A JetStream API error eventkit has no more specific translation for."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        self.code = code
        self.err_code = err_code
        self.description = description
        super().__init__(f"JetStream error {err_code} ({code}): {description}")


def ack_error(ack: dict[str, Any]) -> tuple[int, int, str] | None:
    err = ack.get("error")
    if not err:
        return None
    return int(err.get("code", 0)), int(err.get("err_code", 0)), str(err.get("description", ""))


def actual_from(description: str) -> int | None:
    # "wrong last sequence: 5"
    tail = description.rsplit(":", 1)[-1].strip()
    return int(tail) if tail.isdigit() else None


class Unanswered(StoreUnavailableError):
    """A read that got no answer (timeout, no responders): worth trying again."""


def translate_api(e: nats.js.errors.APIError, doing: str) -> EventkitError:
    code = int(e.code or 0)
    err_code = int(e.err_code or 0)
    desc = str(e.description or "")
    if "permission" in desc.lower() or code == 403:
        return PermissionDeniedError(f"{doing}: permission denied ({desc})")
    return JetStreamError(code, err_code, f"{doing}: {desc}")


def is_gone(e: nats.js.errors.APIError) -> bool:
    """Whether a delete by sequence failed only because the message is not there (any more)."""
    code = int(e.err_code or 0)
    # 10057 "no message found": another delete of the same sequence came first (two forgets
    # of one subject at once); 10057 "stream store EOF": a sequence past the stream's end
    description = str(e.description).lower()
    return code in (ERR_MESSAGE_NOT_FOUND, ERR_SEQUENCE_NOT_FOUND) or (
        code == ERR_MESSAGE_DELETE_FAILED and ("eof" in description or "found" in description)
    )
