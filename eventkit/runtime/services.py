"""What a worker on an in-memory store keeps in place of the server's: its dead letters."""

from __future__ import annotations

import weakref
from typing import Any

from eventkit.runtime.deadletters import MemoryParked

_PARKED: weakref.WeakKeyDictionary[Any, MemoryParked] = weakref.WeakKeyDictionary()


def memory_parked(store: Any) -> MemoryParked:
    """The reactor letters of an in-memory ``store`` (one box per store)."""
    box = _PARKED.get(store)
    if box is None:
        box = _PARKED[store] = MemoryParked()
    return box


__all__ = ["memory_parked"]
