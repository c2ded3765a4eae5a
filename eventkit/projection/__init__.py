"""Projections: SQL read models fed by durable consumers, checkpointed in the same transaction.

::

    from eventkit.projection import ProjectionRunner, make_engine, upgrade, run_projectors
"""

from eventkit.projection.projector import Projector
from eventkit.projection.replay import ReplayPlan, parse_when, plan_replay, replay
from eventkit.projection.rows import RowProjector
from eventkit.projection.runner import ProjectionRunner, RunResult, run_projectors
from eventkit.projection.sql import make_engine, transaction, upgrade
from eventkit.projection.status import ProjectorStatus, status
from eventkit.projection.waiting import NotCaughtUpError, wait_for_projectors

__all__ = [
    "NotCaughtUpError",
    "ProjectionRunner",
    "Projector",
    "ProjectorStatus",
    "ReplayPlan",
    "RowProjector",
    "RunResult",
    "make_engine",
    "parse_when",
    "plan_replay",
    "replay",
    "run_projectors",
    "status",
    "transaction",
    "upgrade",
    "wait_for_projectors",
]
