"""What a newcomer hits first, through the installed console script: errors without tracebacks,
the current directory on sys.path, global options anywhere, and commands that only read or fail
creating nothing."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from _script import ROOT, eventkit, said  # type: ignore[import-not-found]

from eventkit.cli.main import hoist_global_options


def test_a_callable_that_is_not_an_app_is_a_one_line_error(tmp_path: Path) -> None:
    result = eventkit("--app", "samples.bank.domain:Account", "status", home=tmp_path)
    assert result.returncode == 2, said(result)
    assert "Traceback" not in said(result)
    assert "is the class Account, not an eventkit App" in said(result)
    assert len(result.stderr.strip().splitlines()) <= 3  # one message, wrapped at most


def test_a_factory_needing_arguments_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "factories.py").write_text("def make(stream):\n    return None\n")
    result = eventkit("--app", "factories:make", "status", home=tmp_path, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in said(result)
    assert "needs arguments, not an App factory" in said(result)


def test_a_module_in_the_current_directory_is_found(tmp_path: Path) -> None:
    (tmp_path / "mymod.py").write_text("from eventkit import App\n\napp = App(stream='mine')\n")
    result = eventkit("--app", "mymod:app", "db", "upgrade", home=tmp_path / "h", cwd=tmp_path)
    assert result.returncode == 0, said(result)
    assert "eventkit tables at revision" in said(result)


def test_global_options_after_the_command(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    result = eventkit(
        "db",
        "upgrade",
        "--app",
        "samples.bank.app:app",
        f"--database-url=sqlite:///{db}",
        home=tmp_path,
    )
    assert result.returncode == 0, said(result)
    assert "app tables at revision b0001" in said(result) and db.is_file()
    assert hoist_global_options(["status", "--json", "--app", "a:b"]) == [
        "--app",
        "a:b",
        "status",
        "--json",
    ]
    assert hoist_global_options(["events", "--", "--app"]) == ["events", "--", "--app"]


def test_status_on_a_mistyped_sqlite_path_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "eventkit.db"
    result = eventkit(
        "--app",
        "samples.bank.app:app",
        "--database-url",
        f"sqlite:///{missing}",
        "status",
        home=tmp_path / "home",
    )
    assert result.returncode == 2, said(result)
    assert "no SQLite database at" in said(result) and "db upgrade" in said(result)
    assert not missing.parent.exists()
    assert not (tmp_path / "home").exists()  # no server, no master key


def test_db_upgrade_under_a_missing_folder_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "deeper" / "x.db"
    result = eventkit("--database-url", f"sqlite:///{missing}", "db", "upgrade", home=tmp_path)
    assert result.returncode == 2, said(result)
    assert "does not exist" in said(result) and "nothing was created" in said(result)
    assert not (tmp_path / "nope").exists()


def test_db_current_creates_nothing(tmp_path: Path) -> None:
    result = eventkit("--app", "samples.bank.app:app", "db", "current", home=tmp_path / "h")
    assert result.returncode == 0, said(result)
    assert "eventkit tables at revision none" in said(result)
    assert "app tables at revision none" in said(result)
    assert not (tmp_path / "h").exists()


def test_mysql_is_not_sent_to_the_postgres_extra(tmp_path: Path) -> None:
    result = eventkit("--database-url", "mysql://u@h/db", "db", "upgrade", home=tmp_path)
    assert result.returncode == 2, said(result)
    assert "mysql:// databases are not supported" in said(result)
    assert "[postgres]" not in said(result)


def test_settings_is_importable_from_eventkit() -> None:
    from eventkit import Settings

    assert Settings.from_env().replicas >= 1


@pytest.mark.slow
def test_the_wheel_holds_only_the_eventkit_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("eventkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"eventkit", next(t for t in tops if t.endswith(".dist-info"))}, tops
    assert "eventkit/migrations/env.py" in names
    assert "eventkit/migrations/versions/0001_eventkit_initial.py" in names


def test_docker_image_and_compose_leave_the_host_alone() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv/" in ignored and ".eventkit/" in ignored
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host = str(port).rsplit(":", 2)[-2] if str(port).count(":") else str(port)
            assert host not in ("4222", "5432", "8222"), (name, port)
    text = (ROOT / "docker-compose.yml").read_text()
    assert ":?" not in text  # `docker compose down` must work in a shell without the key
