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


def collect_handlers(cls: type, base: type | None = None) -> dict[type[Event], str]:
    """Map each handled event class to the name of its handler method, bases first.

    ``base`` is eventkit's class that ``cls`` extends (``Aggregate``, ``Projector``,
    ``Reactor``): a handler named like one of its attributes (``apply``, ``handle``, ...)
    would replace eventkit's own method, so it is refused with a ``ConfigError`` naming it."""
    found: dict[type[Event], str] = {}
    own = _eventkits_own(cls, base)
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            marked = getattr(value, HANDLES_ATTR, ())
            if marked and name in own:
                raise ConfigError(
                    f"{cls.__qualname__}.{name} is an @on handler, but {own[name]}.{name} is "
                    f"eventkit's own method, which it would replace: rename the handler "
                    f"(e.g. '_{name}_{marked[0].__name__.lower()}'); any other name works"
                )
            for t in marked:
                found[t] = name
    return found


def _eventkits_own(cls: type, base: type | None) -> dict[str, str]:
    """The attribute names eventkit's classes among ``cls``'s bases define (``base`` and its
    subclasses inside eventkit, e.g. ``RowProjector``), each with the class that defines it."""
    if base is None:
        return {}
    own: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if issubclass(klass, base) and klass.__module__.split(".")[0] == "eventkit":
            own.update(
                (name, klass.__name__)
                for name, value in vars(klass).items()
                if not getattr(value, HANDLES_ATTR, ())
            )
    return own
