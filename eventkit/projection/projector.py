"""The ``Projector`` base class users subclass to build a read model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Protocol

from sqlalchemy import MetaData
from sqlalchemy.orm import Session

from eventkit.config.options import bool_option, number_option, subjects_option
from eventkit.domain.events import Event
from eventkit.domain.handlers import collect_handlers
from eventkit.errors import ConfigError, ProjectionError
from eventkit.runtime.partitions import check_partitions, default_key
from eventkit.store.foreign import bound_class, check_bindings, with_bindings
from eventkit.store.records import RecordedEvent, StoredMessage
from eventkit.store.subjects import validate_filter

ErrorPolicy = Literal["halt", "park"]


class Projector:
    """Builds a SQL read model from events::

        class Balances(Projector):
            name = "balances"
            subjects = ["bank.account.>"]

            @on(MoneyDeposited)
            def deposited(self, e: MoneyDeposited, rec: RecordedEvent, db: Session) -> None:
                db.execute(update(balances).where(...).values(...))

            def forget(self, subject: str, db: Session) -> None: ...
            def reset(self, db: Session) -> None: ...

    Handlers run in the runner's transaction, which also writes the checkpoint: a read model is
    never ahead of or behind its checkpoint. ``idempotent = True`` declares that applying an event
    twice is harmless (upserts), which allows a replay from a sequence or a time; otherwise such a
    replay needs :meth:`rewind`. ``on_error``: ``"halt"`` (default) stops at a bad event,
    ``"park"`` records it as a dead letter and goes on.
    """

    name: ClassVar[str] = ""
    subjects: ClassVar[list[str]] = []
    idempotent: ClassVar[bool] = False
    on_error: ClassVar[ErrorPolicy] = "halt"
    max_retries: ClassVar[int] = 3
    retry_backoff: ClassVar[float] = 0.2
    batch_size: ClassVar[int] = 256
    verify_chains: ClassVar[bool] = False
    """Check each event's hash chain as it is applied (a broken one fails it like a bad event:
    ``IntegrityError``, then ``on_error``)."""
    metadata: ClassVar[MetaData | None] = None
    """The SQLAlchemy ``MetaData`` of the read-model tables (``eventkit db revision
    --autogenerate`` compares it with the database)."""
    foreign_events: ClassVar[dict[str, type[Event]]] = {}
    """Subjects other services write (without ``Eventkit-Type``), each bound to the ``Event``
    class its JSON body is read as: ``{"bank.orders.>": OrderPlaced}``. The id is the message's
    ``Nats-Msg-Id`` (else ``<stream>:<sequence>``), the time and sequence the server's."""
    version: ClassVar[int] = 1
    """Raise it to rebuild blue/green beside the live version (RowProjector; see bluegreen)."""
    partitions: ClassVar[int] = 1
    """Split the projector into this many partitions, shared by every ``eventkit run`` process
    running it; the events of one key (by default: one subject) always land in one partition
    and are applied in stream order. Changing it is a rebuild (raise ``version``)."""

    _handlers: ClassVar[dict[type[Event], str]] = {}
    _by_type_name: ClassVar[dict[str, type[Event]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = cls.__name__.lower()
        if not cls.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(
                f"projector name {cls.name!r} must be letters, digits, '-' or '_' "
                f"(it names a durable consumer)"
            )
        if cls.on_error not in ("halt", "park"):
            raise ConfigError(
                f"{cls.__qualname__}.on_error must be 'halt' or 'park', got {cls.on_error!r}"
            )
        subjects_option(cls, "subjects", cls.subjects, "bank.account.>")
        check_partitions(cls.__qualname__, cls.partitions)
        if not callable(cls.partition_key):
            raise ConfigError(
                f"{cls.__qualname__}.partition_key must be a method "
                f"'def partition_key(self, rec) -> str'"
            )
        for s in cls.subjects:
            validate_filter(s)
        number_option(cls, "batch_size", cls.batch_size, minimum=1, integer=True)
        number_option(cls, "max_retries", cls.max_retries, minimum=0, integer=True)
        number_option(
            cls, "retry_backoff", cls.retry_backoff, minimum=0, integer=False, maximum=3600
        )
        bool_option(cls, "idempotent", cls.idempotent)
        cls._handlers = collect_handlers(cls, Projector)
        cls._by_type_name = {t.event_type: t for t in cls._handlers}
        check_bindings(cls.__qualname__, cls.foreign_events, cls._handlers)

    def handles(self, event_type: str) -> bool:
        """Whether this projector has a handler for the stored type name."""
        return event_type in self._by_type_name

    def apply(self, record: RecordedEvent[Any], db: Session) -> None:
        """Run the handler of ``record.event`` (types without a handler are passed over)."""
        name = self._handlers.get(type(record.event))
        if name is not None:
            getattr(self, name)(record.event, record, db)

    def apply_many(self, records: Sequence[RecordedEvent[Any]], db: Session) -> None:
        """Apply a run of handled events, in stream order, within the batch's transaction.

        The default calls each ``@on`` handler in turn. Override it to write rows in bulk (one
        ``executemany`` for the run) when replay speed matters::

            def apply_many(self, records, db):
                db.connection().execute(insert(ledger), [row(r) for r in records])

        If it raises, the runner applies the batch's events one at a time (a call with one
        record each) to find the bad one: events before it are committed, then ``on_error``.
        """
        for record in records:
            self.apply(record, db)

    @classmethod
    def applies_in_bulk(cls) -> bool:
        return cls.apply_many is not Projector.apply_many

    def filters(self, stream: str) -> list[str]:
        """The subject filters of this projector's consumer (the whole stream by default),
        with the foreign subjects it binds."""
        if not self.subjects:
            return [f"{stream}.>"]
        return with_bindings(list(self.subjects), self.foreign_events)

    def foreign_class(self, subject: str) -> type[Event] | None:
        """The ``Event`` class a foreign message on ``subject`` is read as, if bound."""
        return bound_class(self.foreign_events, subject)

    def partition_key(self, rec: RecordedEvent[Any]) -> str:
        """The key whose hash picks the partition of an event (with ``partitions > 1``).

        The default is the subject (without the stream name): one entity's events stay in
        order. Override it to keep something else together, e.g. one customer's accounts::

            def partition_key(self, rec):
                return rec.event.customer_id

        Only events of types this projector handles are keyed by it; the others (forget
        markers, system events) by their subject."""
        return default_key(rec.subject)

    @classmethod
    def keys_partitions(cls) -> bool:
        """Whether the projector overrides :meth:`partition_key`."""
        return cls.partition_key is not Projector.partition_key

    # -- hooks ----------------------------------------------------------------------------
    def forget(self, subject: str, db: Session) -> None:
        """Delete every row derived from ``subject`` (GDPR); override when rows hold personal."""

    def reset(self, db: Session) -> None:
        """Empty the read model before a replay from the start."""
        raise ProjectionError(
            f"projector {self.name!r} has no reset(db): implement it (delete its rows) so it can "
            f"be replayed from the start"
        )

    def rewind(self, to_sequence: int, db: Session) -> None:
        """Undo the effect of events after ``to_sequence`` (for a replay from a point)."""
        raise ProjectionError(
            f"projector {self.name!r} is not idempotent and has no rewind(to_sequence, db): "
            f"set idempotent = True if applying an event twice is harmless, implement rewind, "
            f"or replay --from-start"
        )

    @classmethod
    def declares_forget(cls) -> bool:
        return cls.forget is not Projector.forget

    @classmethod
    def declares_rewind(cls) -> bool:
        return cls.rewind is not Projector.rewind


class SystemEvents(Protocol):
    """eventkit's own events a runner also follows (e.g. another service's GDPR forget).

    ``subjects`` are added to each projector's consumer filters; ``apply`` runs in the batch
    transaction, so a system event is applied exactly once, like any event.
    """

    def subjects(self, stream: str) -> list[str]: ...

    def handles(self, subject: str) -> bool: ...

    def apply(self, projector: Projector, message: StoredMessage, db: Session) -> None: ...
