"""Event <-> message: the one serialisation pipeline (JSON, then optional encryption)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from eventkit.domain.events import Event, EventRegistry, registry
from eventkit.errors import EventDecodeError, EventEncodeError, UnknownEventTypeError
from eventkit.store.records import RecordedEvent, StoredMessage, recorded
from eventkit.store.subjects import entity_id_of
from eventkit.store.wire_constants import ENCRYPTION, EVENT_TYPE, MSG_ID, SCHEMA_VERSION


class PayloadCipher(Protocol):
    """Encrypts the payloads of personal-data subjects with a per-subject key.

    ``prepare`` loads (or creates) the keys of the given subjects before a batch of sync
    ``encrypt``/``decrypt`` calls; ``decrypt`` raises ``ForgottenError`` once a key is shredded.
    """

    def covers(self, subject: str, event: Event | None) -> bool: ...

    async def prepare(self, subjects: Iterable[str], *, create: bool) -> None: ...

    def encrypt(self, subject: str, plaintext: bytes) -> tuple[str, bytes]: ...

    def decrypt(self, subject: str, key_id: str, ciphertext: bytes) -> bytes: ...


class Codec:
    """Encodes events to (headers, payload) and decodes stored messages to ``RecordedEvent``."""

    def __init__(
        self, events: EventRegistry = registry, cipher: PayloadCipher | None = None
    ) -> None:
        self.events = events
        self.cipher = cipher
        self._known: dict[tuple[str | None, str | None], tuple[type[Event], int, str]] = {}

    def encode(self, subject: str, event: Event, event_id: str) -> tuple[dict[str, str], bytes]:
        try:
            payload = event.__pydantic_serializer__.to_json(event)
        except (PydanticSerializationError, UnicodeError) as e:
            raise EventEncodeError(
                event.event_type,
                f"{_first_line(e)}; str fields must be valid text (no lone surrogates) and "
                f"bytes fields UTF-8 (for binary data set ser_json_bytes='base64' and "
                f"val_json_bytes='base64' in the class's model_config)",
            ) from e
        if b"null" in payload:  # NaN and infinities serialise as null: they would not read back
            _check_finite(event.event_type, event.model_dump(), "")
        headers = {
            MSG_ID: event_id,
            EVENT_TYPE: event.event_type,
            SCHEMA_VERSION: str(event.schema_version),
        }
        if self.cipher is not None and self.cipher.covers(subject, event):
            key_id, sealed = self.cipher.encrypt(subject, payload)
            headers[ENCRYPTION] = key_id
            payload = seal_envelope(key_id, sealed)
        return headers, payload

    def decode_foreign(
        self, msg: StoredMessage, cls: type[Event], stream: str
    ) -> RecordedEvent[Any]:
        """A message another service wrote (no ``Eventkit-Type``) read as ``cls`` from its JSON
        body; fields ``cls`` does not know are set aside on the record, as for eventkit's own."""
        extra: dict[str, Any] = {}
        try:
            event, extra = _tolerant(cls, json.loads(msg.data))
        except (ValidationError, ValueError) as e:
            raise EventDecodeError(
                f"foreign message read as {cls.event_type}: {_first_line(e)}",
                subject=msg.subject,
                sequence=msg.sequence,
            ) from e
        return RecordedEvent(
            event=event,
            subject=msg.subject,
            entity_id=entity_id_of(msg.subject),
            sequence=msg.sequence,
            time=msg.time,
            event_id=msg.headers.get(MSG_ID) or f"{stream}:{msg.sequence}",
            event_type=cls.event_type,
            schema_version=cls.schema_version,
            headers=msg.headers,
            extra=extra,
        )

    def needs_keys(self, subject: str, events: Iterable[Event]) -> bool:
        cipher = self.cipher
        return cipher is not None and any(cipher.covers(subject, e) for e in events)

    def decode(self, msg: StoredMessage) -> RecordedEvent[Any]:
        """The typed event of a stored message (``EventDecodeError``, ``UnknownEventTypeError``
        for what cannot be read)."""
        return self.decode_parts(msg.subject, msg.sequence, msg.time, msg.headers, msg.data)

    def decode_parts(
        self, subject: str, sequence: int, time: datetime, headers: dict[str, str], data: bytes
    ) -> RecordedEvent[Any]:
        """:meth:`decode` of a message given by its parts (no ``StoredMessage`` built unless
        it is needed: an encrypted or older payload, an error)."""
        # a type and schema header read before (and still registered) are not checked again
        known = self._known.get((headers.get(EVENT_TYPE), headers.get(SCHEMA_VERSION)))
        if known is None or self.events.lookup(known[2]) is not known[0]:
            known = self._check_type(StoredMessage(subject, sequence, time, headers, data))
        cls, version, event_type = known
        if ENCRYPTION in headers:
            msg = StoredMessage(subject, sequence, time, headers, data)
            data = self._decrypt(msg, headers[ENCRYPTION])
        extra: dict[str, Any] = {}
        try:
            if version == cls.schema_version:
                try:
                    event = cls.__pydantic_validator__.validate_json(data)
                except ValidationError as e:
                    # a tolerant reader: fields a newer producer added are set aside, not fatal
                    if not all(err["type"] == "extra_forbidden" for err in e.errors()):
                        raise
                    event, extra = _tolerant(cls, json.loads(data))
            else:
                msg = StoredMessage(subject, sequence, time, headers, data)
                event, extra = self._upcast(msg, cls, version, event_type, data)
        except (ValidationError, ValueError) as e:
            raise EventDecodeError(
                f"{event_type} payload does not match the class: {_first_line(e)}",
                subject=subject,
                sequence=sequence,
            ) from e
        return recorded(
            event,
            subject,
            subject[subject.rfind(".") + 1 :],  # entity_id_of, inline: once per event
            sequence,
            time,
            headers.get(MSG_ID, ""),
            event_type,
            version,
            headers,
            extra,
        )

    def _check_type(self, msg: StoredMessage) -> tuple[type[Event], int, str]:
        """The class and stored schema version of a message, checked (and remembered)."""
        headers = msg.headers
        event_type = headers.get(EVENT_TYPE)
        if not event_type:
            raise EventDecodeError(
                f"no {EVENT_TYPE} header: another service wrote it. Projectors can read such "
                f"subjects typed (foreign_events); an aggregate's subject must hold eventkit "
                f"events only: have that service write to its own subjects, and set "
                f"pass_over_foreign = True on the aggregate class to load and save it past the "
                f"message meanwhile (nothing needs to be erased; see docs/wire-format.md)",
                subject=msg.subject,
                sequence=msg.sequence,
            )
        try:
            cls = self.events.get(event_type)
        except UnknownEventTypeError:
            raise UnknownEventTypeError(
                event_type, subject=msg.subject, sequence=msg.sequence
            ) from None
        schema = headers.get(SCHEMA_VERSION)
        try:
            version = int(schema if schema is not None else "1")
        except ValueError:
            raise EventDecodeError(
                f"bad {SCHEMA_VERSION} header {schema!r}",
                subject=msg.subject,
                sequence=msg.sequence,
            ) from None
        if version < 1 or version > cls.schema_version:
            raise EventDecodeError(
                f"{event_type} stored at schema version {version}, this code knows up to "
                f"{cls.schema_version}: deploy the newer event class",
                subject=msg.subject,
                sequence=msg.sequence,
            )
        known = (cls, version, event_type)
        if len(self._known) < 10_000:
            self._known[(event_type, schema)] = known
        return known

    def _decrypt(self, msg: StoredMessage, key_id: str) -> bytes:
        if self.cipher is None:
            raise EventDecodeError(
                "payload is encrypted but no master key is configured (EVENTKIT_MASTER_KEY)",
                subject=msg.subject,
                sequence=msg.sequence,
            )
        return self.cipher.decrypt(msg.subject, key_id, open_envelope(msg.data, msg))

    def _upcast(
        self, msg: StoredMessage, cls: type[Event], version: int, event_type: str, data: bytes
    ) -> tuple[Event, dict[str, Any]]:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("payload is not a JSON object")
        try:
            upcast = cls.upcast(raw, version)
        except Exception as e:  # a user's upcaster choking on a malformed old payload
            raise EventDecodeError(
                f"upcasting {event_type} from schema version {version} failed: {e!r}; "
                f"fix the upcast_vN_vN+1 method or the stored payload",
                subject=msg.subject,
                sequence=msg.sequence,
            ) from e
        return _tolerant(cls, upcast)


ENVELOPE = "eventkit.encrypted/v1"
"""The ``enc`` of the JSON body of an encrypted event (see docs/wire-format.md)."""


def seal_envelope(key_id: str, sealed: bytes) -> bytes:
    """The JSON body of an encrypted event: a JSON consumer recognises it and passes it over."""
    body = {"enc": ENVELOPE, "key": key_id, "data": base64.b64encode(sealed).decode()}
    return json.dumps(body, separators=(",", ":")).encode()


def open_envelope(data: bytes, msg: StoredMessage) -> bytes:
    """The sealed bytes of an encrypted body: the JSON envelope, or the older raw binary
    (nonce + ciphertext; its first byte is random, so a ``{`` alone does not make it JSON)."""
    if data.startswith(b"{"):
        try:
            body = json.loads(data)
        except ValueError:
            return data
        try:
            if not isinstance(body, dict) or body.get("enc") != ENVELOPE:
                raise ValueError(f"unknown envelope {body!r:.80}")
            return base64.b64decode(body["data"], validate=True)
        except (ValueError, KeyError, TypeError) as e:
            raise EventDecodeError(
                f"bad encrypted envelope: {e}", subject=msg.subject, sequence=msg.sequence
            ) from None
    return data


def _tolerant(cls: type[Event], raw: object) -> tuple[Event, dict[str, Any]]:
    """``cls`` validated from a decoded JSON object, fields it does not know set aside."""
    if not isinstance(raw, dict):
        raise ValueError("the body is not a JSON object")
    known = set(cls.model_fields)
    known.update(f.alias for f in cls.model_fields.values() if f.alias)
    extra = {k: raw.pop(k) for k in list(raw) if k not in known}
    return cls.model_validate(raw), extra


def _check_finite(event_type: str, value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise EventEncodeError(
            event_type,
            f"{path or 'a value'} is {value}, which JSON cannot carry (it would be stored as "
            f"null and never read back); store None, a sentinel or a string instead",
        )
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(event_type, v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list | tuple | set | frozenset):
        for i, v in enumerate(value):
            _check_finite(event_type, v, f"{path}[{i}]")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return " ".join(text[:3]) if text else type(e).__name__
