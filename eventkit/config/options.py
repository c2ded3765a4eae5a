"""Checks of the class options users declare on projectors and reactors, shared so that both
refuse a bad value the same way: a ``ConfigError`` naming the class, the option and the fix."""

from __future__ import annotations

import math

from eventkit.errors import ConfigError


def number_option(
    owner: type,
    option: str,
    value: object,
    *,
    minimum: float,
    integer: bool,
    maximum: float | None = None,
    unit: str = "seconds",
) -> None:
    """``ConfigError`` unless ``value`` is a finite number (an int when ``integer``) within
    ``minimum`` .. ``maximum``."""
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    number = float(value) if ok else math.nan  # type: ignore[arg-type]
    within = maximum is None or number <= maximum
    if ok and math.isfinite(number) and number >= minimum and within:
        return
    kind = "an int" if integer else f"a number of {unit}"
    bound = f">= {minimum:g}" + ("" if maximum is None else f" and at most {maximum:g}")
    raise ConfigError(f"{owner.__qualname__}.{option} must be {kind} {bound}, got {value!r}")


def bool_option(owner: type, option: str, value: object) -> None:
    """``ConfigError`` unless ``value`` is True or False (not a truthy string such as "yes")."""
    if not isinstance(value, bool):
        raise ConfigError(f"{owner.__qualname__}.{option} must be True or False, got {value!r}")


def subjects_option(owner: type, option: str, value: object, example: str) -> None:
    """``ConfigError`` unless ``value`` is a list of strings (a bare string is the usual slip)."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(
            f"{owner.__qualname__}.{option} must be a list of subject filters, e.g. "
            f"[{example!r}]; got {value!r}"
        )
    for s in value:
        if not isinstance(s, str):
            raise ConfigError(
                f"{owner.__qualname__}.{option} must hold subject filters (strings), got {s!r}"
            )


__all__ = ["bool_option", "number_option", "subjects_option"]
