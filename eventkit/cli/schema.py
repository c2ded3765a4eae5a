"""``eventkit schema export``: JSON Schema of every event type of the App, for other languages.

The document is plain JSON Schema 2020-12 (no keyword of eventkit's own, so validators in strict
mode, such as ajv's default, accept it):

- ``$defs/<Eventkit-Type>`` is the schema of that type's JSON body. It allows fields it does not
  name: readers are tolerant, so a producer may add fields (eventkit sets them aside).
- The root validates one message as ``{"type": <Eventkit-Type header>, "schema_version":
  <Eventkit-Schema header>, "body": <the JSON body>}``, the type choosing the body's schema (a
  discriminator: two types with the same fields are still told apart).
"""

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

WIRE_FORMAT = 1


def event_types(the_app: Any) -> list[type[Event]]:
    """The event classes the App's aggregates, projectors and reactors handle, and those it
    declares it writes (``App(writes=[...])``), by type name."""
    found: dict[str, type[Event]] = {}
    owners = [*the_app.aggregates, *the_app.projectors, *getattr(the_app, "reactors", [])]
    for owner in owners:
        for cls in getattr(owner, "_handlers", {}):
            found.setdefault(cls.event_type, cls)
    for cls in getattr(the_app, "writes", []):
        found.setdefault(cls.event_type, cls)
    return [found[name] for name in sorted(found)]


def _body(cls: type[Event]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema of one type's body (tolerant: extra fields allowed) and its nested defs."""
    body = cls.model_json_schema(mode="serialization")
    nested = body.pop("$defs", {})
    body.pop("additionalProperties", None)  # a reader ignores fields it does not know
    personal = " Stored encrypted (see docs/wire-format.md)." if cls.personal_data else ""
    body["description"] = (
        f"{(body.get('description') or '').strip()} Body of Eventkit-Type {cls.event_type}, "
        f"schema version {cls.schema_version}.{personal}"
    ).strip()
    return body, nested


def export(the_app: Any) -> dict[str, Any]:
    """One JSON Schema document (see the module docstring)."""
    defs: dict[str, Any] = {}
    types = event_types(the_app)
    for cls in types:
        body, nested = _body(cls)
        for name, sub in nested.items():
            defs.setdefault(name, sub)
        defs[cls.event_type] = body
    names = [cls.event_type for cls in types]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"eventkit wire format {WIRE_FORMAT}",
        "title": f"eventkit events of stream {the_app.stream}",
        "description": (
            "One message of the stream as {type: its Eventkit-Type header, schema_version: its "
            "Eventkit-Schema header, body: its JSON body}; the type picks the body's schema. "
            "To check a body alone, use #/$defs/<Eventkit-Type>. Bodies of personal data are "
            "encrypted on the wire (see docs/wire-format.md). Readers are tolerant: a producer "
            "may add fields."
        ),
        "type": "object",
        "required": ["type", "body"],
        "properties": {
            "type": {"enum": names},
            "schema_version": {"type": "integer", "minimum": 1},
            "body": {"type": "object"},
        },
        "allOf": [
            {
                "if": {"properties": {"type": {"const": cls.event_type}}, "required": ["type"]},
                "then": {
                    "properties": {
                        "body": {"$ref": f"#/$defs/{cls.event_type}"},
                        "schema_version": {"const": cls.schema_version},
                    }
                },
            }
            for cls in types
        ],
        "$defs": defs,
    }


@schema_app.command("export")
def export_command(
    ctx: typer.Context,
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write to this file (default: stdout)."
    ),
) -> None:
    """Write the JSON Schema of every event type the App handles or declares it writes
    (App(writes=[...])): $defs/<Eventkit-Type> is each body's schema.

    Example: eventkit --app samples.bank.app:app schema export -o bank-events.schema.json
    """
    the_app = state(ctx).app()
    text = json.dumps(export(the_app), indent=2, sort_keys=True)
    if out is None:
        typer.echo(text)
        return
    out.write_text(text + "\n")
    console.print(f"wrote {len(event_types(the_app))} event types to {out}")
