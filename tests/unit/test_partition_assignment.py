"""The partition function, the assignment of partitions to workers, and the class options."""

from __future__ import annotations

from typing import Any

import pytest

from eventkit import Projector, RecordedEvent, RowProjector
from eventkit.errors import ConfigError
from eventkit.runtime.partitions import (
    assign,
    default_key,
    fnv1a_32,
    owned_by,
    partition_of,
)


def test_fnv1a_32_gives_the_published_test_vectors() -> None:
    # from the FNV reference (Fowler/Noll/Vo test suite)
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


def test_the_default_key_is_the_subject_tokens_after_the_stream_joined() -> None:
    assert default_key("bank.account.a-1") == "accounta-1"
    assert default_key("bank.system.forget.x") == "systemforgetx"


def test_one_subject_always_lands_in_one_partition_and_all_partitions_are_used() -> None:
    seen = {partition_of(default_key(f"s.account.a-{i}"), 16) for i in range(2000)}
    assert seen == set(range(16))
    assert partition_of("accounta-7", 16) == partition_of("accounta-7", 16)
    assert partition_of("anything", 1) == 0


def test_every_partition_has_exactly_one_owner_among_the_members() -> None:
    members = ["w1", "w2", "w3", "w4"]
    owners = assign(32, members)
    assert sorted(owners) == list(range(32))
    assert set(owners.values()) <= set(members)
    shares = [len(owned_by(m, 32, members)) for m in members]
    assert shares == [8, 8, 8, 8]  # even: the slowest worker bounds a catch-up
    assert sorted(len(owned_by(m, 16, members[:3])) for m in members[:3]) == [5, 5, 6]


@pytest.mark.parametrize("partitions", [2, 3, 4, 5, 8, 16, 17, 32])
def test_every_member_holds_its_even_share_never_none_while_there_are_enough(
    partitions: int,
) -> None:
    for count in range(1, 9):
        for run in range(5):
            members = [f"m{run}-{i}" for i in range(count)]
            shares = sorted(len(owned_by(m, partitions, members)) for m in members)
            low, extra = divmod(partitions, count)
            assert shares == [low] * (count - extra) + [low + 1] * extra, (partitions, count)


def test_a_joining_or_leaving_worker_moves_few_partitions() -> None:
    before = assign(64, ["w1", "w2", "w3"])
    after = assign(64, ["w1", "w2", "w3", "w4"])
    moved = [p for p in before if before[p] != after[p]]
    assert 16 <= len(moved) <= 24  # w4's share, and a few to even the loads
    assert sum(1 for p in moved if after[p] == "w4") == 16
    gone = assign(64, ["w1", "w3"])  # w2 leaves: its partitions move, few others
    kept = [p for p in before if before[p] != "w2" and gone[p] == before[p]]
    assert len(kept) >= 36


def test_no_members_no_assignment() -> None:
    assert assign(8, []) == {}


@pytest.mark.parametrize("bad", [0, -1, 1025, True, "4", 2.5, None])
def test_bad_partitions_is_a_config_error_naming_the_option(bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"\.partitions must be a whole number from 1 to 1024"):
        type("Bad", (Projector,), {"partitions": bad})
    with pytest.raises(ConfigError, match="partitions"):
        type("BadRows", (RowProjector,), {"partitions": bad, "row_cache": 0})


def test_a_partition_key_that_is_not_a_method_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="partition_key must be a method"):
        type("Bad", (Projector,), {"partitions": 4, "partition_key": "customer"})


def test_partition_key_defaults_to_the_subject_and_can_be_overridden() -> None:
    class ByCustomer(Projector):
        partitions = 8

        def partition_key(self, rec: RecordedEvent[Any]) -> str:
            return "c-1"

    class BySubject(Projector):
        partitions = 8

    assert ByCustomer.keys_partitions() and not BySubject.keys_partitions()


@pytest.mark.parametrize("value", [0, "2", 2])
def test_a_reactor_with_bad_or_unordered_partitions_is_refused_when_the_class_is_made(
    value: Any,
) -> None:
    from eventkit import Reactor

    with pytest.raises(ConfigError, match="partitions"):
        type("Partitioned", (Reactor,), {"partitions": value})
