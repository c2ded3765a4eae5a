"""The curated names of ``eventkit``: every one resolves, the EventStore port is among them, and
``import eventkit`` alone loads neither SQLAlchemy nor nats-py nor the runners."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

import eventkit

ROOT = Path(__file__).resolve().parents[2]


def _loaded_after(code: str) -> dict[str, list[str]]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    names: list[str] = json.loads(out)
    return {
        "eventkit": [n for n in names if n.split(".")[0] == "eventkit"],
        "tops": sorted({n.split(".")[0] for n in names}),
    }


def test_import_eventkit_loads_no_driver_and_no_runner() -> None:
    loaded = _loaded_after("import eventkit")
    for heavy in ("sqlalchemy", "nats", "alembic", "pydantic", "typer", "rich", "cryptography"):
        assert heavy not in loaded["tops"], heavy
    assert loaded["eventkit"] == ["eventkit", "eventkit._version", "eventkit.errors"]


def test_a_unit_test_of_the_domain_loads_no_driver() -> None:
    loaded = _loaded_after(
        "from eventkit import Aggregate, Event, InMemoryEventStore, Repository, on"
    )
    for heavy in ("sqlalchemy", "nats", "alembic", "typer"):
        assert heavy not in loaded["tops"], heavy


@pytest.mark.parametrize("name", eventkit.__all__)
def test_every_public_name_resolves_to_its_defining_object(name: str) -> None:
    value = getattr(eventkit, name)
    assert value is not None
    module = getattr(value, "__module__", None)
    if module is not None and module.startswith("eventkit."):
        home = importlib.import_module(module)
        # the same object as where it is defined (re-exported, not copied)
        assert getattr(home, name, value) is value


def test_star_import_gives_every_public_name() -> None:
    space: dict[str, object] = {}
    exec("from eventkit import *", space)
    assert set(eventkit.__all__) <= set(space)


def test_the_event_store_port_is_public_and_both_stores_implement_it() -> None:
    from eventkit import EventStore, InMemoryEventStore, JetStreamEventStore

    assert issubclass(InMemoryEventStore, EventStore)
    assert issubclass(JetStreamEventStore, EventStore)
    assert "EventStore" in dir(eventkit)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        eventkit.Nope  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(ImportError):
        exec("from eventkit import Nope", {})


def test_the_version_has_one_source() -> None:
    from eventkit._version import __version__

    assert eventkit.__version__ == __version__
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" in project["dynamic"] and "version" not in project
    assert version("eventkit") == __version__  # the build took it from eventkit/_version.py
