"""The console script answers bad input with a message and an exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def eventkit(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EVENTKIT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("EVENTKIT_APP", None)
    return subprocess.run(
        [sys.executable, "-m", "eventkit", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=next(d for d in (home, *home.parents) if d.is_dir()),
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--app", "samples.bank.app:app", "events", "bank.account.a b"], "whitespace"),
        (["--app", "samples.bank.app:app", "events", "bank.account.>"], "'>'"),
        (["--app", "samples.bank.app:app", "replay", "ledger", "--from-time", "soon"], "time"),
        (["--app", "samples.bank.app:app", "replay", "nope", "--from-start"], "no projector"),
        (["--app", "no.such.module:app", "status"], "cannot import"),
        (["--app", "samples.bank.app", "status"], "module:attribute"),
        (["status"], "no app given"),
        (["--app", "samples.bank.app:app", "--database-url", "mysql://x", "status"], "SQLite"),
        # markup-like text in a message is printed as written
        (
            ["--app", "samples.bank.app:app", "--database-url", "postgresql+pg8000://x", "status"],
            "[postgres]",
        ),
    ],
)
def test_bad_input_gives_a_message_and_exit_code_2(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = eventkit(*args, home=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert message in " ".join((result.stderr + result.stdout).split())
    # nothing was started or written for a command that never ran
    assert not (tmp_path / "server.json").exists()


@pytest.mark.nats
def test_commands_before_db_upgrade_say_to_run_it(tmp_path: Path) -> None:
    app = ["--app", "samples.bank.app:app"]
    try:
        for args in (
            ["run", "--once"],
            ["status"],
            ["replay", "ledger", "--from-start", "--yes"],
            ["dlq", "list"],
            ["forget", "bank.customer.c-1"],
        ):
            result = eventkit(*app, *args, home=tmp_path)
            text = " ".join((result.stderr + result.stdout).split())
            assert result.returncode == 2, (args, text)
            assert "Traceback" not in text and "eventkit db upgrade" in text, (args, text)
        assert eventkit(*app, "db", "upgrade", home=tmp_path).returncode == 0
        assert eventkit(*app, "run", "--once", home=tmp_path).returncode == 0
    finally:
        eventkit("server", "stop", home=tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["server", "start"], "writable"),
        # a command that only reads finds no database there, and creates none
        (["--app", "samples.bank.app:app", "status"], "no SQLite database at"),
        (["db", "upgrade"], "writable"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_an_unusable_home_is_a_clear_error(args: list[str], message: str, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    result = eventkit(*args, home=not_a_dir / "home")
    text = " ".join((result.stderr + result.stdout).split())
    assert result.returncode == 2, text
    assert "Traceback" not in text and message in text
    assert str(not_a_dir) in "".join(text.split())  # the path, as the terminal wrapped it
