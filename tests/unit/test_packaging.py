"""eventkit's own migrations: at the repository's top level in a clone, inside the package in a
wheel, and `eventkit db upgrade` works from each (the wheel installed into a fresh venv)."""

from __future__ import annotations

import os
import site
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

import eventkit
from eventkit import bundled
from eventkit.errors import ConfigError
from eventkit.projection.sql import VERSION_TABLE, migrations_location

ROOT = Path(__file__).resolve().parents[2]
HEAD = ScriptDirectory(str(ROOT / "migrations")).get_current_head()


def test_the_clone_keeps_the_tree_at_the_top_level() -> None:
    assert (ROOT / "migrations" / "env.py").is_file()
    assert not (ROOT / "eventkit" / "migrations" / "env.py").exists()
    # a revision written at the old place would never run: it belongs in migrations/versions
    stray = sorted((ROOT / "eventkit" / "migrations").rglob("*.py"))
    assert stray == [], f"move these to migrations/versions/: {stray}"
    assert bundled.migrations_folder() == ROOT / "migrations"
    assert migrations_location() == str(ROOT / "migrations")
    assert bundled.revision_template().is_file()


def test_a_missing_tree_is_a_config_error_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "migrations").mkdir()  # a leftover folder without env.py is not a tree
    monkeypatch.setattr(bundled, "CANDIDATES", (tmp_path / "migrations", tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="reinstall eventkit"):
        bundled.migrations_folder()


def test_db_upgrade_from_the_clone(tmp_path: Path) -> None:
    db = tmp_path / "clone.db"
    result = subprocess.run(
        [sys.executable, "-m", "eventkit", "--database-url", f"sqlite:///{db}", "db", "upgrade"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"eventkit tables at revision {HEAD}" in result.stdout
    assert _revision(db) == HEAD


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("eventkit-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding the wheel only; its dependencies come from this interpreter's
    site-packages through a .pth line (no download, and no .pth of the editable install: a
    path listed in a .pth is added without reading the .pth files inside it)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib, "zz_eventkit_test_deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-compile",
            "--target",
            purelib,
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    yield venv


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EVENTKIT_APP")}


def _revision(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        (row,) = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
    return str(row[0])


@pytest.mark.slow
def test_the_wheel_ships_the_tree_inside_the_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {
        "eventkit"
    }
    versions = sorted(p.name for p in (ROOT / "migrations" / "versions").glob("*.py"))
    shipped = sorted(
        n.rsplit("/", 1)[1] for n in names if n.startswith("eventkit/migrations/versions/")
    )
    assert shipped == versions
    assert "eventkit/migrations/env.py" in names
    assert "eventkit/migrations/script.py.mako" in names
    assert "eventkit/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.slow
def test_db_upgrade_from_an_installed_wheel(installed: Path, tmp_path: Path) -> None:
    python = installed / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import eventkit.bundled as b; print(b.migrations_folder())"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        check=True,
    ).stdout.strip()
    # the installed copy, not the clone's
    assert Path(where).parts[-2:] == ("eventkit", "migrations")
    assert Path(where).is_relative_to(installed), where
    assert not Path(where).is_relative_to(Path(eventkit.__file__).parents[1])

    db = tmp_path / "wheel.db"
    result = subprocess.run(
        [str(python), "-m", "eventkit", "--database-url", f"sqlite:///{db}", "db", "upgrade"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"eventkit tables at revision {HEAD}" in result.stdout
    assert _revision(db) == HEAD
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"eventkit_checkpoints", "eventkit_dead_letters", "eventkit_leases"} <= tables


@pytest.mark.slow
def test_the_installed_wheel_adds_no_top_level_migrations(installed: Path) -> None:
    python = installed / "bin" / "python"
    probe = "import importlib.util as u; print(u.find_spec('migrations'))"
    found = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, cwd=installed, env=_env()
    ).stdout.strip()
    assert found == "None"


def test_an_undeclared_marker_fails_the_run(tmp_path: Path) -> None:
    test = tmp_path / "test_marked.py"
    test.write_text("import pytest\n\n@pytest.mark.nonesuch\ndef test_x():\n    pass\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(tmp_path),
            str(test),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode != 0
    assert "'nonesuch' not found in `markers`" in result.stdout + result.stderr
