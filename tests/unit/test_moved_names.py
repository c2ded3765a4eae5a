"""Names that moved between modules so the modules of a package import each other one way:
the old import paths still give the same objects, and a plain runner made for a partitioned
projector is still the partitioned runner."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from eventkit import Event, RecordedEvent, on
from eventkit.errors import ConfigError
from eventkit.projection import Projector
from eventkit.projection.partitioned import PartitionedRunner
from eventkit.projection.runner import ProjectionRunner


class MovedOpened(Event):
    x: int


class Shared(Projector):
    subjects = ["bank.moved.>"]
    partitions = 4

    @on(MovedOpened)
    def opened(self, e: MovedOpened, rec: RecordedEvent[Any], db: Session) -> None: ...


def test_old_import_paths_give_the_moved_objects() -> None:
    from eventkit.gdpr import forget, reports
    from eventkit.projection import (
        bluegreen,
        checkpoints,
        deployment,
        partition_lease,
        registry,
        switching,
        targets,
    )
    from eventkit.runtime import membership
    from eventkit.store import protocol, wire_constants

    assert bluegreen.switch is switching.switch
    assert bluegreen.SWITCH_TIMEOUT == switching.SWITCH_TIMEOUT == 60.0
    for name in ("fence", "copy_table", "label", "live_version", "quoted", "versions", "FOREVER"):
        assert getattr(bluegreen, name) is getattr(targets, name), name
    for name in ("deployed", "slots", "Slot"):
        assert getattr(bluegreen, name) is getattr(deployment, name), name
    for name in ("slots_named", "projector_versions", "LIVE", "BUILDING", "RETIRED"):
        assert getattr(registry, name) is getattr(checkpoints, name), name
    for name in ("heard_of", "keep_membership", "membership_name", "refresh_membership"):
        assert getattr(partition_lease, name) is getattr(membership, name), name
    for name in ("ForgetReport", "MessageForgetReport", "CANNOT_ERASE"):
        assert getattr(forget, name) is getattr(reports, name), name
    assert membership.membership_name("balances") == "partitions-balances"
    for name in wire_constants.__all__:
        assert getattr(protocol, name) is getattr(wire_constants, name), name
    assert protocol.MSG_ID == "Nats-Msg-Id"


def test_a_runner_made_for_a_partitioned_projector_is_the_partitioned_runner() -> None:
    made = ProjectionRunner.__new__(ProjectionRunner, Shared())
    assert type(made) is PartitionedRunner


def test_without_the_partitioned_runner_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ProjectionRunner, "_partitioned", None)
    with pytest.raises(ConfigError, match="partitioned runner is not loaded"):
        ProjectionRunner.__new__(ProjectionRunner, Shared())
