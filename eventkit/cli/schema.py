"""``eventkit schema export``: JSON Schema of every event type of the App, for other languages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from eventkit.cli.context import console, state
from eventkit.cli.main import app
from eventkit.domain.events import Event

schema_app = typer.Typer(help="The event types of the App, for other languages.")
app.add_typer(schema_app, name="schema")


def event_types(the_app: Any) -> list[type[Event]]:
    """The event classes the App's aggregates, projectors and reactors handle, by type name."""
    found: dict[str, type[Event]] = {}
    owners = [*the_app.aggregates, *the_app.projectors, *getattr(the_app, "reactors", [])]
    for owner in owners:
        for cls in getattr(owner, "_handlers", {}):
            found.setdefault(cls.event_type, cls)
    return [found[name] for name in sorted(found)]


def export(the_app: Any) -> dict[str, Any]:
    """One JSON Schema document: ``$defs`` holds each event type's body, keyed by its
    ``Eventkit-Type``; ``x-eventkit`` the header values that go with it."""
    defs: dict[str, Any] = {}
    for cls in event_types(the_app):
        body = cls.model_json_schema(mode="serialization")
        nested = body.pop("$defs", {})
        for name, sub in nested.items():
            defs.setdefault(name, sub)
        body["x-eventkit"] = {
            "type": cls.event_type,
            "schema_version": cls.schema_version,
            "personal_data": bool(cls.personal_data),
        }
        defs[cls.event_type] = body
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"eventkit events of stream {the_app.stream}",
        "description": (
            "Each event's body (the Eventkit-Type header names the type). Bodies of personal "
            "data are encrypted on the wire (see docs/wire-format.md)."
        ),
        "x-eventkit-wire-format": 1,
        "$defs": defs,
        "oneOf": [{"$ref": f"#/$defs/{cls.event_type}"} for cls in event_types(the_app)],
    }


@schema_app.command("export")
def export_command(
    ctx: typer.Context,
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write to this file (default: stdout)."
    ),
) -> None:
    """Write the JSON Schema of every event type the App handles.

    Example: eventkit --app samples.bank.app:app schema export -o bank-events.schema.json
    """
    the_app = state(ctx).app()
    text = json.dumps(export(the_app), indent=2, sort_keys=True)
    if out is None:
        typer.echo(text)
        return
    out.write_text(text + "\n")
    console.print(f"wrote {len(event_types(the_app))} event types to {out}")
