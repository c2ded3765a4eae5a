"""`eventkit schema export` as another service reads it: the types the App writes but no
handler reads are in it, two types with the same fields are told apart by their type, a producer
may add fields, and ajv in its default strict mode compiles it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from _script import eventkit, said  # type: ignore[import-not-found]

INTEROP = Path(__file__).resolve().parents[1] / "interop"


@pytest.fixture(scope="session")
def ajv_script() -> Path:
    """The Node checker, with ajv and nats.js installed from the lock file on first use."""
    npm = shutil.which("npm")
    assert shutil.which("node") and npm, "Node.js and npm are needed for the schema interop test"
    if not (INTEROP / "node_modules" / "ajv" / "package.json").exists():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=INTEROP,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"npm ci failed in {INTEROP}: {done.stderr}"
    return INTEROP / "check_schema.mjs"


def exported(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / "bank.schema.json"
    result = eventkit(
        "--app", "samples.bank.app:app", "schema", "export", "-o", str(out), home=tmp_path / "h"
    )
    assert result.returncode == 0, said(result)
    return out, json.loads(out.read_text())


def keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in keys(v)}
    return set()


def test_the_export_holds_the_types_the_app_writes_and_tolerates_added_fields(
    tmp_path: Path,
) -> None:
    _, schema = exported(tmp_path)
    assert {"ReviewOpened", "ReviewEscalated"} <= set(schema["$defs"])  # a reactor's outputs
    assert {"MoneyDeposited", "ReviewDue"} <= set(schema["$defs"])  # and what handlers read
    for name in ("MoneyDeposited", "ReviewOpened"):
        assert schema["$defs"][name].get("additionalProperties") is not False, name
    assert not [k for k in keys(schema) if k.startswith("x-")]  # no keyword of eventkit's own


def test_ajv_in_strict_mode_tells_same_shaped_types_apart(tmp_path: Path, ajv_script: Path) -> None:
    path, schema = exported(tmp_path)
    same = schema["$defs"]["MoneyDeposited"]["properties"]
    assert same == schema["$defs"]["MoneyWithdrawn"]["properties"]  # the same fields
    messages = [
        {"type": "MoneyDeposited", "schema_version": 1, "body": {"amount": 5}},
        {"type": "MoneyWithdrawn", "schema_version": 1, "body": {"amount": 5}},
        {"type": "MoneyDeposited", "body": {"amount": 5, "note": "a producer's new field"}},
        {"type": "ReviewOpened", "body": {"account": "a-1", "amount": 12000}},
        {"type": "MoneyDeposited", "body": {"amount": "five"}},
        {"type": "MoneyDeposited", "body": {}},
        {"type": "NoSuchType", "body": {"amount": 5}},
        {"type": "MoneyDeposited", "schema_version": 7, "body": {"amount": 5}},
    ]
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(
        [node, str(ajv_script), str(path)],
        input=json.dumps(messages),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["compiled"], result.get("error")
    assert result["valid"] == [True, True, True, True, False, False, False, False]
