"""The ``@on`` decorator shared by aggregates and projectors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from eventkit.domain.events import Event
from eventkit.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

HANDLES_ATTR = "__eventkit_handles__"


def on(*event_types: type[Event]) -> Callable[[F], F]:
    """Mark a method as the handler of one or more event types.

    On an :class:`Aggregate` the method takes ``(self, event)``; on a :class:`Projector` it takes
    ``(self, event, record, session)``::

        @on(MoneyDeposited)
        def _deposited(self, e: MoneyDeposited) -> None:
            self.balance += e.amount
    """
    if not event_types:
        raise ConfigError("@on needs at least one Event class, e.g. @on(MoneyDeposited)")
    for t in event_types:
        if not (isinstance(t, type) and issubclass(t, Event)):
            raise ConfigError(f"@on expects Event subclasses, got {t!r}")

    def mark(fn: F) -> F:
        existing: tuple[type[Event], ...] = getattr(fn, HANDLES_ATTR, ())
        setattr(fn, HANDLES_ATTR, existing + tuple(event_types))
        return fn

    return mark


def collect_handlers(cls: type) -> dict[type[Event], str]:
    """Map each handled event class to the name of its handler method, bases first."""
    found: dict[type[Event], str] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            for t in getattr(value, HANDLES_ATTR, ()):
                found[t] = name
    return found
