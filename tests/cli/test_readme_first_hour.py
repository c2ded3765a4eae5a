"""The README's first-hour sections, checked as a newcomer uses them: the pytest settings it
shows run an async test without a warning, the tour's step list matches the tour, and
`forget --help` keeps its examples together."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from _script import ROOT, eventkit, said  # type: ignore[import-not-found]

README = (ROOT / "README.md").read_text()

ASYNC_TEST = """
from eventkit import InMemoryEventStore, Repository
from samples.bank.domain import Account


async def test_transfer_stores_both_sides() -> None:
    accounts = Repository(InMemoryEventStore(stream="bank"), Account)
    acct = Account("a-1")
    acct.open("c-1")
    acct.deposit(100)
    await accounts.save(acct)
    assert (await accounts.load("a-1")).balance == 100
"""


def section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n## ", start + 1)
    following = README.find("\n### ", start + 1)
    ends = [e for e in (end, following) if e != -1]
    return README[start : min(ends)] if ends else README[start:]


def test_the_readmes_pytest_settings_run_async_tests_without_a_warning(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", section("### Testing your service"), re.S)
    assert blocks, "the testing section shows no pytest settings"
    settings = "\n".join(line.strip() for line in blocks[0].splitlines())
    (tmp_path / "pyproject.toml").write_text(settings + "\n")
    (tmp_path / "test_service.py").write_text(ASYNC_TEST)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "Warning" not in done.stdout + done.stderr, done.stdout


def test_the_tour_step_list_matches_the_tour() -> None:
    listed = re.findall(r"^\d+\. \*\*(.+?)\*\*", section("## The bank tour"), re.M)
    tour = ROOT / "samples" / "bank" / "tour"
    steps = [
        title
        for path in sorted(tour.glob("*.py"))
        for title in re.findall(r'self\.step\(f?"([^"]+)"', path.read_text())
    ]
    assert len(listed) == len(steps), (listed, steps)
    assert any("Reactor" in t for t in listed) and any("Reactor" in t for t in steps)


def test_forget_help_keeps_its_examples_together(tmp_path: Path) -> None:
    helped = eventkit("forget", "--help", home=tmp_path)
    assert helped.returncode == 0, said(helped)
    text = helped.stdout
    after = text[text.index("Examples:") : text.index("Arguments")]
    lines = [line.strip(" │") for line in after.splitlines()[1:] if line.strip(" │╭─")]
    assert lines and all(line.startswith("eventkit ") for line in lines), lines
