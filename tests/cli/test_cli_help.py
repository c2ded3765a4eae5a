"""Every command's --help shows an example."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from eventkit.cli.main import app


def _commands(cmd: Any, path: list[str]) -> Iterator[list[str]]:
    subcommands = getattr(cmd, "commands", None)
    if subcommands is None:
        yield path
        return
    for name, sub in subcommands.items():
        yield from _commands(sub, [*path, name])


COMMANDS = list(_commands(typer.main.get_command(app), []))


def test_the_cli_has_every_documented_command() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {
        "events",
        "info",
        "run",
        "replay",
        "status",
        "forget",
        "server start",
        "server stop",
        "server status",
        "server run",
        "dlq list",
        "dlq retry",
        "db upgrade",
        "db current",
        "db init",
        "db revision",
        "skip",
    } <= names


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and "eventkit " in result.output
