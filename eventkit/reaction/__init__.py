"""Reactors: event handlers with side effects on a shared durable consumer (no SQL)."""

from eventkit.reaction.consumer import ConsumerChangedError, reset_consumer
from eventkit.reaction.context import ReactorContext, derived_id
from eventkit.reaction.partitioned import PartitionedReactorRunner
from eventkit.reaction.reactor import Reactor
from eventkit.reaction.runner import ReactorRunner, ReactorStats, run_reactors

__all__ = [
    "ConsumerChangedError",
    "PartitionedReactorRunner",
    "Reactor",
    "ReactorContext",
    "ReactorRunner",
    "ReactorStats",
    "derived_id",
    "reset_consumer",
    "run_reactors",
]
