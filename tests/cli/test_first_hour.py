"""What a newcomer hits in the first hour with handlers, options and the CLI's output: a
handler's name never replaces eventkit's own method, projector and reactor options are checked
when the class is defined, tables keep their width in pipes, and the small things a user expects
(--version, reactors in info, parked counts, hints)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from _script import eventkit, said  # type: ignore[import-not-found]

from eventkit import Aggregate, Event, Projector, Reactor, on
from eventkit.errors import ConfigError, ConfigWarning


class Joined(Event):
    member: str


def define(base: type, body: dict[str, Any]) -> type:
    return type("Custom", (base,), body)


# -- a handler named like eventkit's own method --------------------------------------------------
@pytest.mark.parametrize(
    ("base", "name", "is_async"),
    [
        (Aggregate, "apply", False),
        (Projector, "apply", False),
        (Projector, "reset", False),
        (Reactor, "handle", True),
    ],
)
def test_a_handler_named_like_eventkits_own_method_is_refused(
    base: type, name: str, is_async: bool
) -> None:
    if is_async:

        async def handler(self: Any, *args: Any) -> None:
            return None

    else:

        def handler(self: Any, *args: Any) -> None:  # type: ignore[misc]
            return None

    with pytest.raises(ConfigError, match=rf"Custom\.{name} is an @on handler.*rename"):
        define(base, {"name": "custom", name: on(Joined)(handler)})


def test_an_aggregate_handler_with_any_other_name_is_dispatched_by_type() -> None:
    class Left(Event):
        member: str

    class Club(Aggregate):
        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.members: list[str] = []

        @on(Joined)
        def joined(self, e: Joined) -> None:
            self.members.append(e.member)

        @on(Left)
        def left(self, e: Left) -> None:
            self.members.remove(e.member)

    club = Club("c-1")
    club.record(Joined(member="ada"))
    club.record(Joined(member="bob"))
    club.record(Left(member="ada"))
    assert club.members == ["bob"]


# -- projector options, checked like reactor options ---------------------------------------------
@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        ({"subjects": "x.>"}, r"subjects must be a list of subject filters.*got 'x\.>'"),
        ({"batch_size": 0}, r"batch_size must be an int >= 1, got 0"),
        ({"batch_size": 2.5}, r"batch_size must be an int >= 1"),
        ({"max_retries": -1}, r"max_retries must be an int >= 0, got -1"),
        ({"retry_backoff": -1}, r"retry_backoff must be a number of seconds >= 0"),
        ({"retry_backoff": float("nan")}, r"retry_backoff must be a number of seconds"),
        ({"idempotent": "yes"}, r"idempotent must be True or False, got 'yes'"),
        ({"on_error": "skip"}, r"on_error must be 'halt' or 'park', got 'skip'"),
    ],
)
def test_bad_projector_options_are_refused_when_the_class_is_defined(
    attrs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        define(Projector, {"name": "custom", **attrs})


# -- reactor options: bounds and combinations that do not apply ----------------------------------
async def _noop(self: Any, e: Any, rec: Any, ctx: Any) -> None:
    return None


def reactor_with(**attrs: Any) -> type:
    return define(Reactor, {"name": "custom", "got": on(Joined)(_noop), **attrs})


@pytest.mark.parametrize("option", ["ack_wait", "backoff"])
def test_a_reactor_delay_past_the_maximum_is_refused_naming_it(option: str) -> None:
    value: Any = 1e12 if option == "ack_wait" else [1.0, 1e12]
    with pytest.raises(ConfigError, match=rf"{option} must be .* at most 86400, got 1[0e]"):
        reactor_with(**{option: value})


@pytest.mark.parametrize(
    ("attrs", "named"),
    [
        ({"ack_policy": "all", "concurrency": 4}, "concurrency = 4 does not apply"),
        ({"ack_policy": "none", "max_deliver": 3}, "max_deliver does not apply"),
        ({"ack_policy": "none", "backoff": [1.0]}, "backoff does not apply"),
        ({"ack_policy": "none", "ordered": "subject"}, "ordered = 'subject' does not apply"),
    ],
)
def test_reactor_options_that_do_not_apply_are_warned_about(
    attrs: dict[str, Any], named: str
) -> None:
    with pytest.warns(ConfigWarning, match=named):
        reactor_with(**attrs)


def test_reactor_defaults_with_another_ack_policy_warn_nothing() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reactor_with(ack_policy="all")
        reactor_with(ack_policy="none")
        reactor_with(ack_policy="explicit", concurrency=4, max_deliver=3, ordered="subject")


def test_run_with_a_huge_ack_wait_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "slowapp.py").write_text(
        "from eventkit import App, Event, Reactor, on\n\n"
        "class Ping(Event):\n    n: int\n\n"
        "class Slow(Reactor):\n    name = 'slow'\n    ack_wait = 1e12\n\n"
        "    @on(Ping)\n    async def got(self, e, rec, ctx):\n        pass\n\n"
        "app = App(stream='slowapp', reactors=[Slow()])\n"
    )
    result = eventkit("--app", "slowapp:app", "run", "--once", home=tmp_path / "h", cwd=tmp_path)
    assert result.returncode == 2, said(result)
    assert "Traceback" not in said(result)
    assert "Slow.ack_wait must be a number of seconds >= 0.5 and at most 86400" in said(result)
    assert not (tmp_path / "h").exists()  # refused before anything started
