"""``eventkit events`` and ``eventkit info``: look into the stream."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from eventkit.cli.context import console, readable, run, state
from eventkit.cli.main import app
from eventkit.errors import EventkitError, ForgottenError
from eventkit.projection.replay import parse_when
from eventkit.store.erasure import is_marker
from eventkit.store.subjects import validate_subject
from eventkit.store.wire_constants import ENCRYPTION, EVENT_TYPE, MSG_ID


@app.command("events")
def events_command(
    ctx: typer.Context,
    subject: str = typer.Argument(..., help="The entity's subject, e.g. bank.account.a-1."),
    after: int = typer.Option(0, "--after", min=0, help="Only events after this sequence."),
    as_of: str = typer.Option(
        None,
        "--as-of",
        help="Only events stored at or before this time: ISO 8601 with a zone, or 2h (ago).",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON Lines (one compact object per event) for scripts."
    ),
) -> None:
    """Show an entity's history (--as-of: as it was at a time).

    Example: eventkit --app samples.bank.app:app events bank.account.a-1 --as-of 2h --json
    """
    st = state(ctx)
    validate_subject(subject)
    when = (
        parse_when(as_of, everything="leave out --as-of to show every event")
        if as_of is not None
        else None
    )

    async def go() -> list[dict[str, Any]]:
        the_app = st.app()
        validate_subject(subject, the_app.stream)
        store = await the_app.connect(st.settings())
        rows: list[dict[str, Any]] = []
        async with store:
            raw = [m async for m in store.read_raw(subject, from_sequence=after + 1)]
            if when is not None:
                raw = [m for m in raw if m.time <= when]
            cipher = store.codec.cipher
            if cipher is not None and any(ENCRYPTION in m.headers for m in raw):
                with contextlib.suppress(ForgottenError):
                    await cipher.prepare([subject], create=False)  # fetch the subject's key
            for m in raw:
                row: dict[str, Any] = {
                    "sequence": m.sequence,
                    "time": m.time.isoformat(),
                    "type": m.headers.get(EVENT_TYPE, "?"),
                    "event_id": m.headers.get(MSG_ID, ""),
                }
                if is_marker(m.headers):  # forget's erasure marker: not an event, not foreign
                    row.update(type=None, event_id=None, data=None, forgotten=True)
                    rows.append(row)
                    continue
                try:
                    rec = store.codec.decode(m)
                    row["data"] = rec.event.model_dump(mode="json")
                except EventkitError as e:
                    row["data"] = None
                    row["error"] = str(e)
                rows.append(row)
        return rows

    rows = run(go())
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    erased = [r for r in rows if r.get("forgotten")]
    for row in erased:
        console.print(
            f"{subject} was forgotten at {row['time']} (erasure marker at sequence "
            f"{row['sequence']}): its events were erased, so reading it gives no events",
            markup=False,
            highlight=False,
        )
    rows = [r for r in rows if not r.get("forgotten")]
    if not rows:
        if not erased:
            console.print(f"no events on {subject}", markup=False)
        return
    table = Table(title=subject)
    for col in ("seq", "time", "type", "data"):
        table.add_column(col)
    for row in rows:
        data = (
            Text(json.dumps(row["data"]))
            if row.get("data") is not None
            else Text(row["error"], style="red")
        )
        table.add_row(str(row["sequence"]), row["time"], Text(row["type"]), data)
    console.print(readable(table))


def durability_line(store: Any) -> str:
    """The stream's durability in one line, with what can be lost and the fix."""
    d = store.durability
    if d is None:
        return "unknown (the server did not answer)"
    warning = d.warning()
    return str(d.summary()) + (f"; {warning}" if warning else "")


@app.command("info")
def info_command(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show the stream, the server version and the limits.

    Example: eventkit --app samples.bank.app:app info --json
    """
    st = state(ctx)

    async def go() -> dict[str, Any]:
        the_app = st.app()
        store = await the_app.connect(st.settings())
        async with store:
            si = await store.js.stream_info(store.stream)
            raw = await store.nc.request(f"$JS.API.STREAM.INFO.{store.stream}", b"", timeout=5)
            num_subjects = json.loads(raw.data).get("state", {}).get("num_subjects", 0)
            cfg, s = si.config, si.state
            return {
                "stream": store.stream,
                "subjects": list(cfg.subjects or []),
                "server_version": store.server_version,
                "servers": [getattr(u, "geturl", lambda u=u: str(u))() for u in store.nc.servers],
                "replicas": cfg.num_replicas,
                "messages": s.messages,
                "bytes": s.bytes,
                "first_sequence": s.first_seq,
                "last_sequence": s.last_seq,
                "subjects_count": int(num_subjects),  # not in nats-py's StreamState
                "deleted": s.num_deleted,
                "max_payload": store.max_payload,
                "duplicate_window_s": cfg.duplicate_window,
                "allow_atomic": bool(cfg.allow_atomic),
                "allow_direct": bool(cfg.allow_direct),
                "durability": durability_line(store),
                "personal_subjects": list(the_app.personal_subjects),
                "projectors": [pr.name for pr in the_app.projectors],
                "reactors": [r.name for r in the_app.reactors],
            }

    info = run(go())
    if as_json:
        typer.echo(json.dumps(info, default=str, indent=2))
        return
    table = Table(title=f"stream {info['stream']}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for k, v in info.items():
        table.add_row(k, ", ".join(map(str, v)) if isinstance(v, list) else str(v))
    console.print(readable(table))
