"""The ``forgotten`` system event: tells every service's projectors to forget a subject.

``forget`` publishes it on ``<stream>._eventkit.forgotten`` after the subject's messages are
gone, so it sits in the stream after every event of that subject. It carries the header
``Eventkit-System: forgotten`` and no ``Eventkit-Type``: it is not a domain event, and
``read_all`` passes over ``<stream>._eventkit.>``. Its payload holds the subject sealed with a
key derived from the master key (AES-256-GCM) and its audit HMAC, never the subject in clear;
without a master key it carries only a salted SHA-256 of the subject and the sequence of the
erasure marker that ``forget`` left on the subject itself. A reader that cannot open the notice
acts on that marker instead (the projection runner forgets on every marker it reads).

A projection runner that wants other services' forgets adds :func:`notice_subject` to its
consumer's filters and, for each message on it, inside the batch transaction::

    if is_notice(stream, msg.subject):
        forgotten = decode_notice(msg, cipher)          # None: not for us / unreadable
        if forgotten is not None:
            apply_notice(forgotten, projectors, stream, db)
        continue
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.orm import Session

from eventkit.gdpr.sealing import seal, unseal
from eventkit.projection.projector import Projector
from eventkit.store import wire_constants
from eventkit.store.records import StoredMessage
from eventkit.store.subjects import subject_matches
from eventkit.store.wire_constants import system_prefix

SYSTEM_HEADER = wire_constants.SYSTEM
FORGOTTEN = "forgotten"


def notice_subject(stream: str) -> str:
    """The subject of ``forgotten`` notices: ``<stream>._eventkit.forgotten``."""
    return f"{system_prefix(stream)}{FORGOTTEN}"


def is_system_subject(stream: str, subject: str) -> bool:
    return subject.startswith(system_prefix(stream))


def is_notice(stream: str, subject: str) -> bool:
    return subject == notice_subject(stream)


def subject_digest(subject: str, stream: str, cipher: Any) -> tuple[str, str]:
    """(digest, scheme): the HMAC of ``subject`` under the audit key, else a salted SHA-256."""
    if cipher is not None and hasattr(cipher, "subject_hmac"):
        return str(cipher.subject_hmac(subject)), "hmac-sha256"
    salted = hashlib.sha256(f"eventkit audit {stream}\x00{subject}".encode()).hexdigest()
    return salted, "sha256"


@dataclass(frozen=True, slots=True)
class ForgottenNotice:
    subject: str
    subject_hmac: str
    at: datetime
    sequence: int = 0


def encode_notice(
    subject: str, stream: str, cipher: Any, marker_sequence: int | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and payload of the notice for ``subject``: the subject sealed when a master key
    is set, else only its digest and the erasure marker's sequence (never the subject)."""
    digest, _ = subject_digest(subject, stream, cipher)
    body: dict[str, Any] = {"v": 1, "hmac": digest, "at": datetime.now(UTC).isoformat()}
    if marker_sequence is not None:
        body["marker"] = marker_sequence
    key = getattr(cipher, "notice_key", None)
    if key is not None:
        sealed = seal(AESGCM(key), subject.encode(), stream.encode())
        body["sealed"] = base64.b64encode(sealed).decode()
    headers = {SYSTEM_HEADER: FORGOTTEN, wire_constants.MSG_ID: f"eventkit-forgotten-{digest[:48]}"}
    return headers, json.dumps(body, separators=(",", ":")).encode()


def decode_notice(
    msg: StoredMessage, cipher: Any, stream: str | None = None
) -> ForgottenNotice | None:
    """The subject a notice names, or None when it is not a notice or cannot be opened here."""
    if msg.headers.get(SYSTEM_HEADER) != FORGOTTEN:
        return None
    stream = stream or msg.subject.split(".", 1)[0]
    try:
        body = json.loads(msg.data)
        if "sealed" in body:
            key = getattr(cipher, "notice_key", None)
            if key is None:
                return None
            blob = base64.b64decode(body["sealed"])
            subject = unseal(AESGCM(key), blob, stream.encode()).decode()
        elif "subject" in body:  # written before notices stopped carrying it in clear
            subject = str(body["subject"])
        else:
            return None  # the erasure marker on the subject is what to act on
        at = datetime.fromisoformat(str(body["at"]))
        return ForgottenNotice(subject, str(body["hmac"]), at, msg.sequence)
    except (ValueError, KeyError, TypeError, InvalidTag):
        return None


def projectors_for(subject: str, projectors: Iterable[Projector], stream: str) -> list[Projector]:
    """The projectors whose subject filters take in ``subject``."""
    return [p for p in projectors if any(subject_matches(f, subject) for f in p.filters(stream))]


def apply_notice(
    notice: ForgottenNotice | str, projectors: Iterable[Projector], stream: str, db: Session
) -> list[str]:
    """Call ``forget(subject, db)`` on every projector that reads the subject; return their names.

    Runs inside the caller's transaction (the runner's batch, with its checkpoint).
    """
    subject = notice if isinstance(notice, str) else notice.subject
    names = []
    for p in projectors_for(subject, projectors, stream):
        p.forget(subject, db)
        names.append(p.name)
    return names


class ForgetNotices:
    """The runner side of ``forgotten`` notices: forget the subject in the projector's rows.

    ``App.system_events(store)`` builds it; ``run_projectors`` and ``eventkit run`` use it.
    """

    def __init__(self, stream: str, cipher: Any) -> None:
        self.stream = stream
        self.cipher = cipher

    def subjects(self, stream: str) -> list[str]:
        return [notice_subject(stream)]

    def handles(self, subject: str) -> bool:
        return is_notice(self.stream, subject)

    def apply(self, projector: Projector, message: StoredMessage, db: Session) -> None:
        notice = decode_notice(message, self.cipher, self.stream)
        if notice is not None:
            apply_notice(notice, [projector], self.stream, db)


__all__ = [
    "FORGOTTEN",
    "SYSTEM_HEADER",
    "ForgetNotices",
    "ForgottenNotice",
    "apply_notice",
    "decode_notice",
    "encode_notice",
    "is_notice",
    "is_system_subject",
    "notice_subject",
    "projectors_for",
    "subject_digest",
]
