"""``eventkit schema export``: JSON Schema of every event type the App handles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_schema_export_writes_every_event_type_of_the_app(tmp_path: Path) -> None:
    out = tmp_path / "bank.schema.json"
    env = {**os.environ, "EVENTKIT_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    args = ["--app", "samples.bank.app:app", "schema", "export", "-o", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "eventkit", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    schema = json.loads(out.read_text())
    from samples.bank.domain import Account, Customer

    expected = {c.event_type for agg in (Account, Customer) for c in agg._handlers}
    assert expected <= set(schema["$defs"])
    deposited = schema["$defs"]["MoneyDeposited"]
    assert deposited["properties"]["amount"]["type"] == "integer"
    assert "Eventkit-Type MoneyDeposited, schema version 1" in deposited["description"]
    (picks,) = [
        c for c in schema["allOf"] if c["if"]["properties"]["type"]["const"] == "MoneyDeposited"
    ]
    assert picks["then"]["properties"]["body"] == {"$ref": "#/$defs/MoneyDeposited"}
    assert picks["then"]["properties"]["schema_version"] == {"const": 1}
    assert not (tmp_path / "home").exists()  # exporting touches no server and no database
