"""eventkit: event sourcing for Python on NATS JetStream."""

from eventkit.app import App
from eventkit.config import Settings
from eventkit.domain.aggregate import Aggregate
from eventkit.domain.events import Event
from eventkit.domain.handlers import on
from eventkit.errors import (
    AggregateNotFound,
    ConcurrencyError,
    ConfigError,
    EventDecodeError,
    EventkitError,
    ForgottenError,
    InvalidSubjectError,
    ServerVersionError,
    UnknownEventTypeError,
)
from eventkit.projection.projector import Projector
from eventkit.projection.rows import RowProjector
from eventkit.reaction.context import ReactorContext
from eventkit.reaction.reactor import Reactor
from eventkit.store.base import Write
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.memory import InMemoryEventStore
from eventkit.store.records import RecordedEvent
from eventkit.store.repository import Repository

__version__ = "0.1.0"

__all__ = [
    "Aggregate",
    "AggregateNotFound",
    "App",
    "ConcurrencyError",
    "ConfigError",
    "Event",
    "EventDecodeError",
    "EventkitError",
    "ForgottenError",
    "InMemoryEventStore",
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
