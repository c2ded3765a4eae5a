"""Bindings of subjects other services write (messages without ``Eventkit-Type``) to the
``Event`` class their JSON bodies are read as; projectors and reactors both declare them as
``foreign_events = {"bank.orders.>": OrderPlaced}``."""

from __future__ import annotations

from collections.abc import Mapping

from eventkit.domain.events import Event
from eventkit.errors import ConfigError
from eventkit.store.subjects import subject_matches, validate_filter


def check_bindings(owner: str, bindings: Mapping[str, type[Event]], handled: object) -> None:
    """``ConfigError`` unless every binding is a valid filter bound to a handled Event class."""
    for pattern, bound in bindings.items():
        validate_filter(pattern)
        if not (isinstance(bound, type) and issubclass(bound, Event)):
            raise ConfigError(
                f"{owner}.foreign_events[{pattern!r}] must be an Event class, got {bound!r}"
            )
        if bound not in handled:  # type: ignore[operator]
            raise ConfigError(
                f"{owner}.foreign_events binds {pattern!r} to {bound.__name__}, which has no @on "
                f"handler here: add one"
            )


def bound_class(bindings: Mapping[str, type[Event]], subject: str) -> type[Event] | None:
    """The class a foreign message on ``subject`` is read as, if a binding matches."""
    for pattern, bound in bindings.items():
        if subject_matches(pattern, subject):
            return bound
    return None


def with_bindings(filters: list[str], bindings: Mapping[str, type[Event]]) -> list[str]:
    """``filters`` plus the bound subjects not in them yet."""
    return filters + [f for f in bindings if f not in filters]


__all__ = ["bound_class", "check_bindings", "with_bindings"]
