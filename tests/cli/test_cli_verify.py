"""``eventkit verify`` answers bad usage with a message naming the fix and exit code 2, before it
connects to anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventkit.cli.main import app as cli


def verify(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--app", "nowhere.at.all:app", "verify", *args])
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "give a SUBJECT (or filter) to check, or --all"),
        (("bank.account.a-1", "--all"), "give a SUBJECT (or filter) to check, or --all"),
        (("bank..a-1",), "bank..a-1"),
        (("--all", "--replicas"), "give --store-dir NODE=PATH"),
        (("--all", "--store-dir", "n1"), "give NODE=PATH"),
        (("--all", "--store-dir", "n1=/no/such/dir"), "is not a directory"),
    ],
)
def test_bad_usage_is_named_with_exit_2(args: tuple[str, ...], says: str) -> None:
    code, output = verify(*args)
    assert code == 2, output
    assert says in output and "Traceback" not in output


def test_a_store_dir_without_the_stream_is_named(tmp_path: Path) -> None:
    from eventkit.errors import ConfigError
    from eventkit.store.nats.blocks import stream_dir

    with pytest.raises(ConfigError, match="no copy of stream 'bank'"):
        stream_dir(tmp_path, "bank")
