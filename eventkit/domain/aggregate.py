"""Aggregates: consistency boundaries that decide and record events."""

from __future__ import annotations

from typing import Any, ClassVar

from eventkit.domain.events import Event, new_event_id
from eventkit.domain.handlers import collect_handlers
from eventkit.errors import ConfigError

_INTERNAL = frozenset({"id", "version", "pending", "pending_ids"})


class Aggregate:
    """Base class of aggregates.

    Subclasses keep their state in plain attributes, change it only in ``@on`` handlers, and
    record events from command methods::

        class Account(Aggregate):
            def __init__(self, id: str) -> None:
                super().__init__(id)
                self.balance = 0

            def deposit(self, amount: int) -> None:
                self.record(MoneyDeposited(amount=amount))

            @on(MoneyDeposited)
            def _deposited(self, e: MoneyDeposited) -> None:
                self.balance += e.amount

    Stored on the subject ``<stream>.<aggregate_type>.<id>``; ``aggregate_type`` defaults to the
    lowercased class name. ``snapshot_every = N`` asks the repository for a snapshot every N events;
    ``snapshot_version`` is bumped to invalidate old snapshots when the state's meaning changes.
    """

    aggregate_type: ClassVar[str] = ""
    snapshot_every: ClassVar[int | None] = None
    snapshot_version: ClassVar[int] = 1
    personal_data: ClassVar[bool] = False
    """Every event of this aggregate is stored encrypted with the subject's key when True."""
    pass_over_foreign: ClassVar[bool] = False
    """When True, a message another service wrote on this aggregate's subject (no
    ``Eventkit-Type``) is passed over when loading (logged), and the next save expects the
    subject's real last sequence; by default loading it fails (``EventDecodeError``)."""

    _handlers: ClassVar[dict[type[Event], str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("aggregate_type"):
            cls.aggregate_type = cls.__name__.lower()
        if cls.snapshot_every is not None and (
            not isinstance(cls.snapshot_every, int) or cls.snapshot_every < 1
        ):
            raise ConfigError(f"{cls.__qualname__}.snapshot_every must be None or an int >= 1")
        if not isinstance(cls.pass_over_foreign, bool):
            raise ConfigError(
                f"{cls.__qualname__}.pass_over_foreign must be True or False, got "
                f"{cls.pass_over_foreign!r}"
            )
        cls._handlers = collect_handlers(cls, Aggregate)

    def __init__(self, id: str) -> None:
        self.id = id
        self.version = 0
        """Stream sequence of the last stored event (0: nothing stored yet)."""
        self.pending: list[Event] = []
        """Events recorded since the last save, in order."""
        self.pending_ids: list[str] = []
        """The ids of ``pending``; kept across a failed save so a retry cannot store twice."""
        self._since_snapshot = 0

    def record(self, event: Event) -> None:
        """Apply ``event`` to this aggregate and queue it for the next save."""
        self.apply(event)
        self.pending.append(event)
        self.pending_ids.append(new_event_id())

    def apply(self, event: Event) -> None:
        """Run the ``@on`` handler of ``event`` (used on record and on load)."""
        name = self._handlers.get(type(event))
        if name is None:
            raise ConfigError(
                f"{type(self).__qualname__} has no @on({type(event).__name__}) handler; "
                f"add one, so the event can be applied when the aggregate is loaded"
            )
        getattr(self, name)(event)

    def mark_saved(self, version: int) -> None:
        """Called by the repository once the pending events are stored."""
        self.version = version
        self.pending.clear()
        self.pending_ids.clear()

    # -- snapshots -------------------------------------------------------------------------
    def snapshot_state(self) -> dict[str, Any]:
        """The state a snapshot keeps: every public attribute but the bookkeeping ones.

        Override (with :meth:`restore_state`) when the state is not plain JSON data.
        """
        return {k: v for k, v in vars(self).items() if k not in _INTERNAL and not k.startswith("_")}

    def restore_state(self, state: dict[str, Any]) -> None:
        """Set the state from a snapshot made by :meth:`snapshot_state`."""
        for k, v in state.items():
            setattr(self, k, v)

    @classmethod
    def snapshot_shape(cls) -> list[str]:
        """The attribute names a fresh instance has: a snapshot taken with other names is stale."""
        return sorted(cls("shape-probe").snapshot_state())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, version={self.version})"
