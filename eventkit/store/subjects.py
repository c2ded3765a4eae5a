"""Subject naming and validation: ``<stream>.<aggregate type>.<entity id>``."""

from __future__ import annotations

import re
from collections.abc import Callable

from eventkit.config.values import validate_stream_name as validate_stream_name
from eventkit.errors import InvalidSubjectError

_FORBIDDEN = re.compile(r"[.*>\s\x00-\x1f\x7f]")
MAX_SUBJECT_BYTES = 1024
"""Longest subject (UTF-8 bytes): a protocol line over the server's 4 KiB limit closes the
connection for good, so a long subject is refused before it is sent."""


def _check_length(subject: str, what: str) -> None:
    size = len(subject.encode("utf-8", "surrogatepass"))
    if size > MAX_SUBJECT_BYTES:
        raise InvalidSubjectError(
            f"{what} {subject[:40]!r}... is {size} bytes, over the limit of {MAX_SUBJECT_BYTES}; "
            f"use shorter ids (e.g. a UUID or a hash of the natural key)"
        )


def validate_token(token: str, what: str = "subject token") -> str:
    """Check one subject token: non-empty; no ``.``, ``*``, ``>``, whitespace, control chars."""
    if not isinstance(token, str):
        raise InvalidSubjectError(f"{what} must be a string, got {type(token).__name__}")
    if token == "":
        raise InvalidSubjectError(f"{what} is empty; give a non-empty token")
    bad = _FORBIDDEN.search(token)
    if bad is None:
        try:
            token.encode()
        except UnicodeEncodeError as e:
            raise InvalidSubjectError(
                f"{what} {token!r} is not valid UTF-8 (a lone surrogate at position {e.start}): "
                f"build ids from real text (a surrogate usually comes from bytes decoded with "
                f"errors='surrogateescape')"
            ) from None
    if bad:
        raise InvalidSubjectError(
            f"{what} {token!r} contains {bad.group()!r}: tokens may not contain '.', '*', '>', "
            f"whitespace or control characters (use '-' or '_' instead)"
        )
    return token


def entity_subject(stream: str, aggregate_type: str, entity_id: str) -> str:
    """The subject of one entity's events."""
    validate_stream_name(stream)
    validate_token(aggregate_type, "aggregate type")
    validate_token(entity_id, "entity id")
    return f"{stream}.{aggregate_type}.{entity_id}"


_VALID_SUBJECTS: set[str] = set()
_VALID_SUBJECTS_MAX = 100_000


def validate_subject(subject: str, stream: str | None = None) -> str:
    """A concrete (wildcard-free) subject, inside ``stream`` when given."""
    if not isinstance(subject, str) or subject not in _VALID_SUBJECTS:
        if not isinstance(subject, str) or not subject:
            raise InvalidSubjectError(
                f"subject {subject!r} is empty or not a string; expected e.g. 'bank.account.a-1'"
            )
        _check_length(subject, "subject")
        for i, token in enumerate(subject.split(".")):
            validate_token(token, f"token {i + 1} of subject {subject!r}")
        if len(_VALID_SUBJECTS) >= _VALID_SUBJECTS_MAX:
            _VALID_SUBJECTS.clear()
        _VALID_SUBJECTS.add(subject)
    if stream is not None and not subject.startswith(stream + "."):
        raise InvalidSubjectError(
            f"subject {subject!r} is outside the stream {stream!r}; subjects start with '{stream}.'"
        )
    return subject


def validate_filter(pattern: str, stream: str | None = None) -> str:
    """A subject filter: tokens, ``*`` for one token, ``>`` as the last token only."""
    if not isinstance(pattern, str) or not pattern:
        raise InvalidSubjectError(
            f"subject filter {pattern!r} is empty; expected e.g. 'bank.account.>'"
        )
    _check_length(pattern, "subject filter")
    tokens = pattern.split(".")
    for i, token in enumerate(tokens):
        if token == "*":
            continue
        if token == ">":
            if i != len(tokens) - 1:
                raise InvalidSubjectError(
                    f"subject filter {pattern!r}: '>' is only allowed as the last token"
                )
            continue
        validate_token(token, f"token {i + 1} of subject filter {pattern!r}")
    if stream is not None and tokens[0] != stream and tokens[0] not in ("*", ">"):
        raise InvalidSubjectError(
            f"subject filter {pattern!r} is outside the stream {stream!r}; "
            f"start it with '{stream}.'"
        )
    return pattern


def is_wildcard(pattern: str) -> bool:
    return any(t in ("*", ">") for t in pattern.split("."))


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching of a concrete ``subject`` against a filter ``pattern``."""
    p = pattern.split(".")
    s = subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s):
            return False
        if token != "*" and token != s[i]:
            return False
    return len(p) == len(s)


def subject_filter(patterns: list[str]) -> Callable[[str], bool]:
    """A fast ``subject -> matches any of patterns`` for a consumer that receives more than
    it needs (subjects ending in ``.>`` are a prefix test, concrete ones a set lookup, the rest
    token matching)."""
    prefixes: list[str] = []
    exact: set[str] = set()
    others: list[str] = []
    for pattern in patterns:
        if pattern == ">":
            return lambda subject: True
        head, _, last = pattern.rpartition(".")
        if last == ">" and not is_wildcard(head):
            prefixes.append(head + ".")
        elif not is_wildcard(pattern):
            exact.add(pattern)
        else:
            others.append(pattern)
    starts = tuple(prefixes)

    def matches(subject: str) -> bool:
        if subject.startswith(starts) or subject in exact:
            return True
        return any(subject_matches(o, subject) for o in others)

    return matches


def entity_id_of(subject: str) -> str:
    """The last token of a subject: the entity id by eventkit's naming."""
    return subject.rsplit(".", 1)[-1]
