"""``eventkit verify``: prove the stored history is the history that was written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from eventkit.cli.context import (
    EXIT_USAGE,
    console,
    err_console,
    fail,
    fail_on,
    readable,
    run,
    state,
)
from eventkit.cli.main import app
from eventkit.errors import ConfigError, EventkitError
from eventkit.store.subjects import validate_filter

EXIT_BROKEN = 5
"""``verify`` found a problem: a broken chain, a reused sequence, a replica that differs."""


def parse_store_dirs(values: list[str]) -> dict[str, Path]:
    """``NODE=PATH`` options as a mapping (``ConfigError`` naming the bad one)."""
    out: dict[str, Path] = {}
    for value in values:
        node, sep, path = value.partition("=")
        if not sep or not node.strip() or not path.strip():
            raise ConfigError(
                f"--store-dir {value!r}: give NODE=PATH, the server name and its JetStream store "
                f"directory, e.g. --store-dir n1=/data/nats/n1"
            )
        if not Path(path).is_dir():
            raise ConfigError(f"--store-dir {value!r}: {path!r} is not a directory")
        out[node.strip()] = Path(path)
    return out


@app.command("verify")
def verify_command(
    ctx: typer.Context,
    subject: str = typer.Argument(
        None, help="A subject or filter to check, e.g. bank.account.a-1 or 'bank.account.>'."
    ),
    every: bool = typer.Option(False, "--all", help="Check every subject of the stream."),
    replicas: bool = typer.Option(
        False, "--replicas", help="Also check each replica's own copy (needs --store-dir)."
    ),
    store_dirs: list[str] = typer.Option(
        [],
        "--store-dir",
        help="NODE=PATH: a server's JetStream store directory, read for --replicas (repeat it).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document for scripts."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="A progress bar on a terminal (stderr)."
    ),
) -> None:
    """Check the hash chains of the stored events: exit 0 when the history verifies, 5 when a
    chain is broken, a sequence was reused or a replica differs (1: could not check).

    --all also compares the sequences the previous --all run saw (a stream that lost its tail
    and reused them) and records this run for the next one and for `eventkit status`.

    Example: eventkit --app samples.bank.app:app verify --all --json
    """
    st = state(ctx)
    if (subject is None) == (not every):
        fail("give a SUBJECT (or filter) to check, or --all for the whole stream", EXIT_USAGE)
    try:
        if subject is not None:
            validate_filter(subject)
        dirs = parse_store_dirs(store_dirs)
    except EventkitError as e:
        fail_on(e)
    if store_dirs and not replicas:
        replicas = True
    if replicas and not store_dirs:
        fail(
            "--replicas reads each node's own copy from its files (a direct get is answered by "
            "whichever replica the server picks): give --store-dir NODE=PATH for the nodes to "
            "check, run where their store directories are",
            EXIT_USAGE,
        )
    report = run(_verify(st, subject, dirs, progress and not as_json))
    if as_json:
        out = report.as_dict()
        out["problems"] = [
            {"subject": p.subject, "sequence": p.sequence, "kind": p.kind, "what": p.what}
            | ({"node": p.node} if p.node else {})
            for p in report.problems
        ]
        console.print_json(json.dumps(out, default=str))
    else:
        _print(report)
    raise typer.Exit(0 if report.ok else EXIT_BROKEN)


async def _verify(st: Any, subject: str | None, dirs: dict[str, Path], bar: bool) -> Any:
    from eventkit.store.nats.anchors import load_verification, replica_names, save_verification
    from eventkit.store.nats.blocks import node_messages
    from eventkit.store.proof import check_anchors, erased_by_subject, verify_copies
    from eventkit.store.proof import verify_history as scan

    the_app = st.app()
    if subject is not None:
        validate_filter(subject, the_app.stream)
    store = await the_app.connect(st.settings())
    async with store:
        show = Progress(
            TextColumn("verifying"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err_console,
            transient=True,
            disable=not (bar and err_console.is_terminal),
        )
        with show:
            task = show.add_task("verify", total=None)

            def step(seq: int, last: int) -> None:
                if seq % 256 == 0 or seq == last:
                    show.update(task, completed=seq, total=last)

            previous = await load_verification(store.js, store.stream) if subject is None else None
            report = await scan(store, subject, step)
        if subject is None:
            report.previous = previous
            await check_anchors(store, report)
        if dirs:
            names = await replica_names(store.js, store.stream)
            unknown = sorted(set(dirs) - set(names)) if names else []
            if unknown:
                raise ConfigError(
                    f"--store-dir names {', '.join(unknown)}, but the replicas of stream "
                    f"{store.stream!r} are on {', '.join(names)}"
                )
            report.unchecked_nodes = [n for n in names if n not in dirs]
            system = f"{store.stream}._eventkit.erased.>"
            erased = erased_by_subject(store.stream, [m async for m in store.read_raw(system)])
            copies = {node: node_messages(path, store.stream) for node, path in dirs.items()}
            verify_copies(report, copies, erased)
        if subject is None:
            await save_verification(store.js, store.stream, report.record(), store.replicas)
    return report


def _print(report: Any) -> None:
    console.print(
        f"{report.scope}: {report.messages} messages on {report.subjects} subjects, "
        f"{report.chained} chained, {report.unchained} unchained (written before chains), "
        f"{report.foreign} foreign, {report.erased} erased links bridged",
        highlight=False,
        markup=False,
    )
    for node, seen in report.nodes.items():
        console.print(
            f"node {node}: {seen['messages']} messages, up to sequence {seen['last_sequence']}"
            + (
                f" ({seen['behind']} behind: lagging, or not yet flushed)" if seen["behind"] else ""
            ),
            highlight=False,
            markup=False,
        )
    if report.unchecked_nodes:
        console.print(
            f"not checked (no --store-dir): {', '.join(report.unchecked_nodes)}",
            highlight=False,
            markup=False,
        )
    if report.ok:
        console.print("verified: the history is the history that was written", markup=False)
        return
    table = Table("subject", "sequence", "node", "problem", "what differs")
    for p in report.problems:
        table.add_row(p.subject, str(p.sequence), p.node or "", p.kind, p.what)
    console.print(readable(table))
    console.print(f"{len(report.problems)} problem(s) found", markup=False)
