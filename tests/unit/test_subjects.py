"""Subject naming and validation."""

from __future__ import annotations

import pytest

from eventkit.errors import InvalidSubjectError
from eventkit.store.subjects import (
    entity_id_of,
    entity_subject,
    is_wildcard,
    subject_matches,
    validate_filter,
    validate_stream_name,
    validate_subject,
)


def test_entity_subject_is_stream_type_id() -> None:
    assert entity_subject("bank", "account", "a-1") == "bank.account.a-1"
    assert entity_id_of("bank.account.a-1") == "a-1"


@pytest.mark.parametrize(
    ("id", "needle"),
    [
        ("a.b", "'.'"),
        ("a b", "' '"),
        ("*", "'\\*'"),
        (">", "'>'"),
        ("", "empty"),
        ("a\x00", "control"),
    ],
)
def test_bad_entity_ids_name_the_token_and_rule(id: str, needle: str) -> None:
    with pytest.raises(InvalidSubjectError, match="entity id") as info:
        entity_subject("bank", "account", id)
    assert needle.strip("'\\") in str(info.value)


def test_bad_aggregate_type_and_stream() -> None:
    with pytest.raises(InvalidSubjectError, match="aggregate type"):
        entity_subject("bank", "acc ount", "1")
    with pytest.raises(InvalidSubjectError, match="stream name"):
        validate_stream_name("ba.nk")
    with pytest.raises(InvalidSubjectError, match="stream name"):
        validate_stream_name("x" * 65)


def test_subjects_are_validated_per_token_and_stream() -> None:
    assert validate_subject("bank.account.a-1", "bank") == "bank.account.a-1"
    with pytest.raises(InvalidSubjectError, match="token 3"):
        validate_subject("bank.account.a b")
    with pytest.raises(InvalidSubjectError, match="outside the stream"):
        validate_subject("shop.account.1", "bank")
    with pytest.raises(InvalidSubjectError):
        validate_subject(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidSubjectError):
        validate_subject("bank.account.>")


def test_filters() -> None:
    assert validate_filter("bank.account.>", "bank") == "bank.account.>"
    assert validate_filter("bank.*.a-1") == "bank.*.a-1"
    with pytest.raises(InvalidSubjectError, match="last token"):
        validate_filter("bank.>.x")
    with pytest.raises(InvalidSubjectError, match="outside the stream"):
        validate_filter("shop.>", "bank")
    assert is_wildcard("bank.*.x") and not is_wildcard("bank.a.x")


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("bank.>", "bank.account.1", True),
        ("bank.>", "bank", False),
        ("bank.*.1", "bank.account.1", True),
        ("bank.*", "bank.account.1", False),
        ("bank.account.1", "bank.account.1", True),
        ("bank.account.1", "bank.account.2", False),
    ],
)
def test_subject_matching(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(pattern, subject) is matches
