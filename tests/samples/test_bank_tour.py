"""``python -m samples.bank`` end to end, in a subprocess, as a user runs it."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from eventkit import server
from eventkit.config import ENV_VARS
from eventkit.server import ServerProcess, start_server_process

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.nats, pytest.mark.slow]


def tour_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of a user's shell: no EVENTKIT_* settings but ours, a wide terminal."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS.values()}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)
    env["EVENTKIT_HOME"] = str(home)
    env["COLUMNS"] = "200"
    env.update(settings)
    return env


def run_tour(cwd: Path, env: dict[str, str]) -> str:
    """Run the tour; assert exit code 0; return its output with whitespace collapsed."""
    proc = subprocess.run(
        [sys.executable, "-m", "samples.bank"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return " ".join(proc.stdout.split())


def checkpoints(out: str) -> dict[str, tuple[int, int]]:
    found = re.findall(r"\b(balances|ledger|customers) (\d+) → (\d+)", out)
    return {name: (int(a), int(b)) for name, a, b in found}


def assert_every_step(out: str) -> None:
    for line in (
        "1 · Migrations",
        "are at head",
        "twice is refused by the store",
        "12 deposits stored",
        "conflicts retried",
        "refused by the domain, nothing recorded",
        "all or nothing:",
        "every balance in SQL equals the aggregate loaded from its events",
        "the ledger is unchanged",
        "ReviewOpened on bank.review.",  # the (partitioned) reactor's output
        "1 withdrawals handled",
        "data key shredded",
        "after: directory row gone; 0 messages left",
        "writing to it again is refused: ForgottenError",
        "Done in",
        "Try next",
        "eventkit --app samples.bank.app:app status",
    ):
        assert line in out, f"missing {line!r} in:\n{out}"
    assert re.search(r"\b(\d+) conflicts retried", out)


def test_the_tour_runs_twice_on_the_embedded_defaults(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = tour_env(home)
    try:
        first = run_tour(tmp_path, env)
        second = run_tour(tmp_path, env)
    finally:
        stopped = server.stop(home)
    assert stopped, "the tour should leave its embedded server running for the CLI"
    for out in (first, second):
        assert_every_step(out)
        assert "(SQLite)" in out and "home/eventkit.db" in out and "home/master.key" in out
    assert "embedded nats-server" in first and ", started (pid" in first
    assert ", reused (pid" in second
    # fresh ids per run
    runs = [re.search(r"run (\w{6}) ·", out) for out in (first, second)]
    assert runs[0] and runs[1] and runs[0].group(1) != runs[1].group(1)
    # the projectors start from scratch, then carry on from their checkpoints
    one, two = checkpoints(first), checkpoints(second)
    assert set(one) == set(two) == {"balances", "ledger", "customers"}
    for name in one:
        assert one[name][0] == 0 and one[name][1] > 0
        assert two[name][0] == one[name][1] < two[name][1]
    assert (home / "jetstream").is_dir() and (home / "eventkit.db").is_file()


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = start_server_process(tmp_path / "nats")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.postgres
def test_the_tour_runs_on_a_nats_server_and_postgresql_of_your_own(
    tmp_path: Path, nats: ServerProcess, pg_url: str
) -> None:
    home = tmp_path / "home"
    key = base64.b64encode(os.urandom(32)).decode()
    env = tour_env(
        home,
        EVENTKIT_NATS_URL=nats.url,
        EVENTKIT_DATABASE_URL=pg_url,
        EVENTKIT_MASTER_KEY=key,
    )
    first = run_tour(tmp_path, env)
    second = run_tour(tmp_path, env)
    for out in (first, second):
        assert_every_step(out)
        assert f"{nats.url} (EVENTKIT_NATS_URL)" in out
        assert "postgresql+psycopg://" in out and "(EVENTKIT_DATABASE_URL)" in out
        assert "embedded" not in out and "development key" not in out
    assert checkpoints(second)["ledger"][0] == checkpoints(first)["ledger"][1]
    # nothing was started or written locally
    assert server.status(home) is None
    assert not (home / "jetstream").exists() and not (home / "eventkit.db").exists()
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM bank_balances")).scalar_one()
    finally:
        engine.dispose()
    assert count == 6  # three accounts per run
