"""Run the installed ``eventkit`` console script as a user's shell does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from eventkit.config import ENV_VARS

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "eventkit"


def user_env(home: Path, **settings: str) -> dict[str, str]:
    """No EVENTKIT_* settings but ours, no PYTHONPATH, a wide terminal."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS.values()}
    env.pop("PYTHONPATH", None)
    env["EVENTKIT_HOME"] = str(home)
    env["COLUMNS"] = "200"
    env.update(settings)
    return env


def eventkit(
    *args: str, home: Path, cwd: Path = ROOT, stdin: str = "", **settings: str
) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"the console script {SCRIPT} is not installed"
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=user_env(home, **settings),
        cwd=cwd,
        input=stdin,
        timeout=120,
    )


def said(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stdout + result.stderr).split())
