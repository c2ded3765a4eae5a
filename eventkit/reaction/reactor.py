"""The ``Reactor`` base class: event handlers with side effects, on a shared durable consumer.

Every option is a class attribute, checked when the class is defined (a bad one raises
``ConfigError`` naming the option and the fix), so a worker never starts half-configured.
"""

from __future__ import annotations

import inspect
import warnings
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from eventkit.config.options import number_option, subjects_option
from eventkit.domain.events import Event
from eventkit.domain.handlers import collect_handlers
from eventkit.errors import ConfigError, ConfigWarning
from eventkit.runtime.partitions import check_partitions, default_key
from eventkit.store.foreign import bound_class, check_bindings, with_bindings
from eventkit.store.protocol import SYSTEM_TOKEN
from eventkit.store.subjects import subject_matches, validate_filter

if TYPE_CHECKING:
    from eventkit.reaction.context import ReactorContext
    from eventkit.store.records import RecordedEvent

DeliverPolicy = Literal[
    "all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject"
]
AckPolicy = Literal["explicit", "all", "none"]
ReplayPolicy = Literal["instant", "original"]
Ordering = Literal["none", "subject"]

DELIVER_POLICIES = ("all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject")
ACK_POLICIES = ("explicit", "all", "none")
REPLAY_POLICIES = ("instant", "original")
ORDERINGS = ("none", "subject")

UPDATABLE = ("ack_wait", "max_ack_pending", "max_deliver", "backoff")
"""Options JetStream changes on an existing consumer; the others need ``eventkit reactor reset``."""


class Reactor:
    """Reacts to events with side effects (a mail, a call, a command, a timer)::

        class LargeWithdrawals(Reactor):
            name = "large-withdrawals"
            subjects = ["bank.account.*"]
            max_deliver = 5
            backoff = [1.0, 5.0, 30.0]

            @on(MoneyWithdrawn)
            async def withdrawn(self, e: MoneyWithdrawn, rec: RecordedEvent,
                                ctx: ReactorContext) -> None:
                if e.amount >= 10_000:
                    await ctx.append(f"bank.alert.{rec.entity_id}", [AlertRaised(amount=e.amount)])

    Delivery is at least once: a handler may run again for the same event (a crash before the
    ack, a timeout). Outputs made through ``ctx`` get ids derived from the reactor, the event
    and their position, so a second run stores nothing twice within the duplicate window.

    ``ordered = "subject"`` keeps each subject's events in stream order, over all workers: one
    worker at a time receives (the others stand by and take over when it stops pulling), its
    handlers for one subject run one after another and a failure is retried in place. With the
    default ``"none"``, handlers run concurrently (``concurrency`` per worker) on every worker and
    a redelivery comes after later events.

    ``partitions = N`` (with ``ordered = "subject"``) spreads that order over workers: events go
    to N partitions by a stable hash of their subject (or of :meth:`partition_key`), every
    worker running the reactor takes a share of the partitions, and each partition is handled
    in stream order by one worker at a time (:mod:`eventkit.reaction.partitioned`);
    ``concurrency`` then applies per partition a worker holds.
    """

    name: ClassVar[str] = ""
    subjects: ClassVar[list[str]] = []
    foreign_events: ClassVar[dict[str, type[Event]]] = {}
    verify_chains: ClassVar[bool] = False
    """Check each event's own link (its content) before its handler runs: a changed event is
    parked with ``IntegrityError``, like an undecodable one. Links between events are checked by
    projectors and ``eventkit verify`` (competing workers each see part of a subject)."""
    """Subjects other services write, bound to the ``Event`` class their JSON bodies are read
    as (see :class:`eventkit.Projector`)."""
    deliver_policy: ClassVar[DeliverPolicy] = "all"
    start_sequence: ClassVar[int | None] = None
    start_time: ClassVar[datetime | None] = None
    start_at_time_delta: ClassVar[timedelta | None] = None
    ack_policy: ClassVar[AckPolicy] = "explicit"
    ack_wait: ClassVar[float] = 30.0
    max_ack_pending: ClassVar[int] = 1024
    max_deliver: ClassVar[int] = 5
    backoff: ClassVar[list[float]] = [1.0, 5.0, 30.0]
    replay_policy: ClassVar[ReplayPolicy] = "instant"
    ordered: ClassVar[Ordering] = "none"
    concurrency: ClassVar[int] = 16
    partitions: ClassVar[int] = 1
    """Partitions shared by the workers (1: one worker at a time receives, with ``ordered =
    "subject"``). Fixed once the reactor ran: a change is refused until ``eventkit reactor
    reset``."""

    _handlers: ClassVar[dict[type[Event], str]] = {}
    _by_type_name: ClassVar[dict[str, type[Event]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = cls.__name__.lower()
        validate_options(cls)
        cls._handlers = collect_handlers(cls, Reactor)
        for t, method in cls._handlers.items():
            if not inspect.iscoroutinefunction(getattr(cls, method)):
                raise ConfigError(
                    f"{cls.__qualname__}.{method} handles {t.__name__} but is not async: write "
                    f"'async def {method}(self, e, rec, ctx)'"
                )
        cls._by_type_name = {t.event_type: t for t in cls._handlers}
        check_bindings(cls.__qualname__, cls.foreign_events, cls._handlers)

    def foreign_class(self, subject: str) -> type[Event] | None:
        """The ``Event`` class a foreign message on ``subject`` is read as, if bound."""
        return bound_class(self.foreign_events, subject)

    def handles(self, event_type: str) -> bool:
        """Whether this reactor has a handler for the stored type name."""
        return event_type in self._by_type_name

    async def handle(self, record: RecordedEvent[Any], ctx: ReactorContext) -> None:
        """Run the handler of ``record.event`` (types without a handler are passed over)."""
        method = self._handlers.get(type(record.event))
        if method is not None:
            await getattr(self, method)(record.event, record, ctx)

    def partition_key(self, rec: RecordedEvent[Any]) -> str:
        """The key whose hash picks the partition of an event (with ``partitions > 1``).

        The default is the subject (without the stream name): one entity's events stay in
        order. Override it to keep something else together, e.g. one customer's accounts::

            def partition_key(self, rec):
                return rec.event.customer_id

        Events of types without a handler are keyed by their subject, deadlines by the subject
        they concern, retries of parked events by their own subject. A worker then also runs
        one key's events one after another (instead of one subject's)."""
        return default_key(rec.subject)

    @classmethod
    def keys_partitions(cls) -> bool:
        """Whether the reactor overrides :meth:`partition_key`."""
        return cls.partition_key is not Reactor.partition_key

    def filters(self, stream: str) -> list[str]:
        """The subject filters of the consumer: ``subjects`` (default: the stream's events) and
        this reactor's own deadline and retry subjects."""
        own = reactor_subjects(stream, self.name)
        filters = with_bindings(list(self.subjects), self.foreign_events) or [f"{stream}.>"]
        if not any(subject_matches(f, own) for f in filters):
            filters.append(own)
        return filters

    def options(self) -> dict[str, Any]:
        """The declared consumer options, as recorded on the consumer (to detect changes)."""
        return {
            "subjects": sorted(self.subjects),
            "deliver_policy": self.deliver_policy,
            "start_sequence": self.start_sequence,
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "start_at_time_delta": (
                self.start_at_time_delta.total_seconds() if self.start_at_time_delta else None
            ),
            "ack_policy": self.ack_policy,
            "ack_wait": float(self.ack_wait),
            "max_ack_pending": self.max_ack_pending,
            "max_deliver": self.max_deliver,
            "backoff": [float(b) for b in self.backoff],
            "replay_policy": self.replay_policy,
            "ordered": self.ordered,
            # (only when partitioned: consumers made before partitions existed stay unchanged)
            **({"partitions": self.partitions} if self.partitions > 1 else {}),
        }


def reactor_subjects(stream: str, name: str) -> str:
    """``<stream>._eventkit.reactor.<name>.*``: deadlines and retries meant for one reactor."""
    return f"{stream}.{SYSTEM_TOKEN}.reactor.{name}.*"


def consumer_name(reactor: str) -> str:
    return f"eventkit_reactor_{reactor}"


MAX_SECONDS = 86_400.0
"""The longest ``ack_wait`` and ``backoff`` delay: one day. A handler that runs longer sends
in-progress acks (the runner does); a later retry is a deadline (``ctx.schedule``)."""


def _number(cls: type, option: str, value: object, *, minimum: float, integer: bool) -> None:
    number_option(
        cls,
        option,
        value,
        minimum=minimum,
        integer=integer,
        maximum=None if integer else MAX_SECONDS,
    )


def _declared(cls: type, option: str) -> bool:
    """Whether ``option`` was set by the user's classes (not left at Reactor's default)."""
    return any(option in vars(k) for k in cls.__mro__ if k is not Reactor and k is not object)


def check_combinations(cls: type[Reactor]) -> None:
    """Warn (``ConfigWarning``) about options that do not apply with the chosen ones."""
    q = cls.__qualname__
    unused: list[str] = []
    if cls.ack_policy == "all" and cls.concurrency > 1 and _declared(cls, "concurrency"):
        unused.append(
            f"{q}.concurrency = {cls.concurrency} does not apply with ack_policy = 'all' (one "
            f"handler at a time: an ack acknowledges every event before it)"
        )
    if cls.ack_policy == "none":
        for option in ("max_deliver", "backoff"):
            if _declared(cls, option):
                unused.append(
                    f"{q}.{option} does not apply with ack_policy = 'none' (the server never "
                    f"delivers again: a failure parks the event at once)"
                )
        if cls.ordered == "subject":
            unused.append(
                f"{q}.ordered = 'subject' does not apply with ack_policy = 'none' (a failure "
                f"is parked, not retried in place, so later events of the subject go first)"
            )
    for text in unused:
        warnings.warn(f"{text}; remove it or change the policy", ConfigWarning, stacklevel=4)


def check_partitioned(cls: type[Reactor]) -> None:
    """A partitioned reactor keeps order (``ordered = "subject"``) with explicit acks."""
    q = cls.__qualname__
    if cls.ordered != "subject":
        raise ConfigError(
            f"{q}.partitions = {cls.partitions} needs ordered = 'subject': partitions spread "
            f"ordered handling over workers (with ordered = 'none' every worker already shares "
            f"the events: remove partitions)"
        )
    if cls.ack_policy != "explicit":
        raise ConfigError(
            f"{q}.partitions = {cls.partitions} needs ack_policy = 'explicit' (a partition's "
            f"next owner gets what was not acknowledged); got {cls.ack_policy!r}"
        )
    if not callable(cls.partition_key):
        raise ConfigError(
            f"{q}.partition_key must be a method 'def partition_key(self, rec) -> str'"
        )


def validate_options(cls: type[Reactor]) -> None:
    """Check every consumer option of ``cls``; ``ConfigError`` naming the first bad one."""
    q = cls.__qualname__
    name = cls.name
    if not name or not name.replace("_", "").replace("-", "").isalnum() or len(name) > 64:
        raise ConfigError(
            f"reactor name {name!r} must be 1-64 letters, digits, '-' or '_' "
            f"(it names the durable consumer every worker shares)"
        )
    if check_partitions(q, cls.partitions) > 1:
        check_partitioned(cls)
    subjects_option(cls, "subjects", cls.subjects, "bank.account.*")
    for s in cls.subjects:
        validate_filter(s)
    if cls.deliver_policy not in DELIVER_POLICIES:
        raise ConfigError(
            f"{q}.deliver_policy must be one of {', '.join(DELIVER_POLICIES)}; "
            f"got {cls.deliver_policy!r}"
        )
    policy = cls.deliver_policy
    if policy == "by_start_sequence":
        _number(cls, "start_sequence", cls.start_sequence, minimum=1, integer=True)
    elif cls.start_sequence is not None:
        raise ConfigError(
            f"{q}.start_sequence is only used with deliver_policy = 'by_start_sequence' "
            f"(it is {policy!r}): remove it or change the policy"
        )
    if policy == "by_start_time":
        if (cls.start_time is None) == (cls.start_at_time_delta is None):
            raise ConfigError(
                f"{q}: deliver_policy 'by_start_time' needs exactly one of start_time "
                f"(a timezone-aware datetime) or start_at_time_delta (a timedelta back from the "
                f"first start)"
            )
        if cls.start_time is not None and (
            not isinstance(cls.start_time, datetime) or cls.start_time.tzinfo is None
        ):
            raise ConfigError(
                f"{q}.start_time must be a timezone-aware datetime, e.g. "
                f"datetime(2025, 1, 1, tzinfo=UTC); got {cls.start_time!r}"
            )
        delta = cls.start_at_time_delta
        if delta is not None and (not isinstance(delta, timedelta) or delta <= timedelta(0)):
            raise ConfigError(
                f"{q}.start_at_time_delta must be a positive timedelta, e.g. timedelta(hours=1); "
                f"got {delta!r}"
            )
    elif cls.start_time is not None or cls.start_at_time_delta is not None:
        raise ConfigError(
            f"{q}.start_time / start_at_time_delta are only used with deliver_policy = "
            f"'by_start_time' (it is {policy!r}): remove them or change the policy"
        )
    if cls.ack_policy not in ACK_POLICIES:
        raise ConfigError(
            f"{q}.ack_policy must be one of {', '.join(ACK_POLICIES)}; got {cls.ack_policy!r}"
        )
    _number(cls, "ack_wait", cls.ack_wait, minimum=0.5, integer=False)
    _number(cls, "max_ack_pending", cls.max_ack_pending, minimum=1, integer=True)
    _number(cls, "max_deliver", cls.max_deliver, minimum=1, integer=True)
    _number(cls, "concurrency", cls.concurrency, minimum=1, integer=True)
    if isinstance(cls.backoff, str) or not isinstance(cls.backoff, list):
        raise ConfigError(f"{q}.backoff must be a list of seconds, e.g. [1.0, 5.0, 30.0]")
    for b in cls.backoff:
        _number(cls, "backoff", b, minimum=0, integer=False)
    if cls.replay_policy not in REPLAY_POLICIES:
        raise ConfigError(
            f"{q}.replay_policy must be 'instant' or 'original'; got {cls.replay_policy!r}"
        )
    if cls.ordered not in ORDERINGS:
        raise ConfigError(
            f"{q}.ordered must be 'none' or 'subject' (keep each subject's order over all "
            f"workers); got {cls.ordered!r}"
        )
    check_combinations(cls)


__all__ = [
    "ACK_POLICIES",
    "DELIVER_POLICIES",
    "MAX_SECONDS",
    "REPLAY_POLICIES",
    "UPDATABLE",
    "Reactor",
    "consumer_name",
    "reactor_subjects",
    "validate_options",
]
