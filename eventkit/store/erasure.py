"""The erasure marker: what ``forget`` leaves on a subject so that nothing is stored there again.

After a subject is forgotten its last message is a marker (header ``Eventkit-System: erased``,
body ``{}``, no ``Eventkit-Type``). The server then refuses every append that carries an
expectation made before the forget (the subject's last sequence moved), whichever process sends
it, connected or not during the forget; the stores send one with every append (an append without
``expected_sequence`` reads the subject's last message first), and report the marker as
``ForgottenError``. Reading a forgotten subject gives no events. The marker holds no data; the
subject token stays in the stream, which is why subject tokens must be opaque ids, never names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final

from eventkit.store.wire_constants import MSG_ID, SYSTEM

ERASED: Final = "erased"
BODY: Final = b"{}"


def marker_headers(subject: str) -> dict[str, str]:
    """Headers of the marker for ``subject``; the message id makes a resumed forget's second
    marker a duplicate within the duplicate window."""
    digest = hashlib.sha256(f"eventkit erased\x00{subject}".encode()).hexdigest()[:48]
    return {SYSTEM: ERASED, MSG_ID: f"eventkit-erased-{digest}"}


def is_marker(headers: Mapping[str, str] | None) -> bool:
    return bool(headers) and headers.get(SYSTEM) == ERASED  # type: ignore[union-attr]


__all__ = ["BODY", "ERASED", "is_marker", "marker_headers"]
