"""Typed events, their registry and schema upcasting.

An event is a frozen pydantic v2 model. Its stored type name is the class name unless the class
sets ``event_type``; renaming a class keeps old events readable by setting ``event_type`` to the
old name. ``schema_version`` grows when the payload changes shape, and a static method
``upcast_v1_v2(data: dict) -> dict`` (one per step) turns an old stored payload into the current
one on read::

    class MoneyDeposited(Event):
        schema_version = 2
        amount: int
        currency: str

        @staticmethod
        def upcast_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
            return {**data, "currency": "EUR"}
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from eventkit.errors import ConfigError, UnknownEventTypeError

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def new_event_id() -> str:
    """A fresh event id: 128 random bits as 32 hex digits (the ``Nats-Msg-Id`` of the event)."""
    return os.urandom(16).hex()


MAX_EVENT_ID = 256
_PRINTABLE = frozenset(chr(c) for c in range(0x21, 0x7F))


def validate_event_id(event_id: object) -> str:
    """An event id as given (``Nats-Msg-Id``): 1-256 printable ASCII characters, no spaces.

    Header values with spaces, newlines or non-ASCII are rewritten on the way to the server, so
    the stored id would differ from the one a retry compares; such ids are refused up front.
    """
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID:
        raise ConfigError(
            f"event id {event_id!r} must be a str of 1-{MAX_EVENT_ID} characters "
            f"(e.g. a UUID or '<command id>-<n>')"
        )
    if not _PRINTABLE.issuperset(event_id):
        bad = next(c for c in event_id if c not in _PRINTABLE)
        raise ConfigError(
            f"event id {event_id!r} contains {bad!r}: use printable ASCII without spaces "
            f"(letters, digits and punctuation such as '-', '_', ':', '.')"
        )
    return event_id


class Event(BaseModel):
    """Base class of every domain event (a frozen pydantic model)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    event_type: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1
    personal_data: ClassVar[bool] = False
    """Stored encrypted with the subject's own key (crypto-shredding) when True."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "event_type" not in cls.__dict__ or not cls.__dict__["event_type"]:
            cls.event_type = cls.__name__
        if not isinstance(cls.schema_version, int) or cls.schema_version < 1:
            raise ConfigError(f"{cls.__qualname__}.schema_version must be an int >= 1")
        for v in range(1, cls.schema_version):
            if not callable(getattr(cls, f"upcast_v{v}_v{v + 1}", None)):
                raise ConfigError(
                    f"{cls.__qualname__} is at schema_version {cls.schema_version} but has no "
                    f"upcast_v{v}_v{v + 1}(data) static method; add one so that stored "
                    f"v{v} payloads can still be read"
                )
        registry.register(cls)

    @classmethod
    def upcast(cls, data: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Bring a payload stored at ``from_version`` up to ``schema_version``."""
        for v in range(from_version, cls.schema_version):
            step: Upcaster = getattr(cls, f"upcast_v{v}_v{v + 1}")
            data = step(data)
        return data


class EventRegistry:
    """Maps stored type names to ``Event`` classes. Classes register themselves when defined."""

    def __init__(self) -> None:
        self._types: dict[str, type[Event]] = {}
        self._lock = threading.Lock()

    def register(self, cls: type[Event]) -> None:
        with self._lock:
            known = self._types.get(cls.event_type)
            if (
                known is not None
                and known is not cls
                and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__)
            ):
                first = f"{known.__module__}.{known.__qualname__}"
                second = f"{cls.__module__}.{cls.__qualname__}"
                raise ConfigError(
                    f"event type name {cls.event_type!r} is used by both {first} and {second}; "
                    f"set a distinct event_type on one of them"
                )
            self._types[cls.event_type] = cls

    def get(self, event_type: str) -> type[Event]:
        try:
            return self._types[event_type]
        except KeyError:
            raise UnknownEventTypeError(event_type) from None

    def lookup(self, event_type: str) -> type[Event] | None:
        """The class registered for ``event_type``, None when there is none."""
        return self._types.get(event_type)

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._types


registry = EventRegistry()
"""The process-wide registry every ``Event`` subclass joins."""
