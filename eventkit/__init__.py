"""eventkit: event sourcing for Python on NATS JetStream.

The names below are what a service writes (``from eventkit import Event, Aggregate, on``).
Importing ``eventkit`` loads only the errors and the version: each other name is imported the
first time it is used (PEP 562), so a command or a unit test loads SQLAlchemy, nats-py and the
runners only when it needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from eventkit._version import __version__ as __version__
from eventkit.errors import (
    AggregateNotFound,
    ConcurrencyError,
    ConfigError,
    EventDecodeError,
    EventkitError,
    ForgottenError,
    IntegrityError,
    InvalidSubjectError,
    ServerVersionError,
    UnknownEventTypeError,
)

if TYPE_CHECKING:
    from eventkit.app import App
    from eventkit.config import Settings
    from eventkit.domain.aggregate import Aggregate
    from eventkit.domain.events import Event
    from eventkit.domain.handlers import on
    from eventkit.projection.projector import Projector
    from eventkit.projection.rows import RowProjector
    from eventkit.reaction.context import ReactorContext
    from eventkit.reaction.reactor import Reactor
    from eventkit.store.base import EventStore, Write
    from eventkit.store.jetstream import JetStreamEventStore
    from eventkit.store.memory import InMemoryEventStore
    from eventkit.store.records import RecordedEvent
    from eventkit.store.repository import Repository

_LAZY: dict[str, str] = {
    "Aggregate": "eventkit.domain.aggregate",
    "App": "eventkit.app",
    "Event": "eventkit.domain.events",
    "EventStore": "eventkit.store.base",
    "InMemoryEventStore": "eventkit.store.memory",
    "JetStreamEventStore": "eventkit.store.jetstream",
    "Projector": "eventkit.projection.projector",
    "Reactor": "eventkit.reaction.reactor",
    "ReactorContext": "eventkit.reaction.context",
    "RecordedEvent": "eventkit.store.records",
    "Repository": "eventkit.store.repository",
    "RowProjector": "eventkit.projection.rows",
    "Settings": "eventkit.config",
    "Write": "eventkit.store.base",
    "on": "eventkit.domain.handlers",
}
"""Public name -> the module that defines it, imported on first use."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eventkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Aggregate",
    "AggregateNotFound",
    "App",
    "ConcurrencyError",
    "ConfigError",
    "Event",
    "EventDecodeError",
    "EventStore",
    "EventkitError",
    "ForgottenError",
    "InMemoryEventStore",
    "IntegrityError",
    "InvalidSubjectError",
    "JetStreamEventStore",
    "Projector",
    "Reactor",
    "ReactorContext",
    "RecordedEvent",
    "Repository",
    "RowProjector",
    "ServerVersionError",
    "Settings",
    "UnknownEventTypeError",
    "Write",
    "on",
]
