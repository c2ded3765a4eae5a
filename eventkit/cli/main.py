"""Top-level Typer app; each command group lives in its own module."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from eventkit.cli.context import CliState

app = typer.Typer(
    name="eventkit",
    help=(
        "Event sourcing on NATS JetStream.\n\nExample: eventkit --app samples.bank.app:app status"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"eventkit {version('eventkit')}")
        except PackageNotFoundError:  # run from a clone without installing
            typer.echo("eventkit (not installed)")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    _version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        callback=_show_version,
        help="Show eventkit's version and exit.",
    ),
    app_target: str | None = typer.Option(
        None, "--app", help="The App to load, as module:attribute (or EVENTKIT_APP)."
    ),
    nats_url: str | None = typer.Option(
        None, "--nats-url", help="NATS server URL(s), comma-separated (or EVENTKIT_NATS_URL)."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="SQLAlchemy URL of the read models (or EVENTKIT_DATABASE_URL)."
    ),
) -> None:
    ctx.obj = CliState(
        app_target=app_target or os.environ.get("EVENTKIT_APP"),
        nats_url=nats_url,
        database_url=database_url,
    )


def _mount_server() -> None:
    from eventkit.cli.server import server_app

    app.add_typer(server_app, name="server")


_mount_server()

# command groups register themselves on import
for _module in (
    "store",
    "run",
    "replay",
    "status",
    "dlq",
    "reactors",
    "skip",
    "db",
    "gdpr",
    "schema",
    "versions",
    "verify",
):
    importlib.import_module(f"eventkit.cli.{_module}")


GLOBAL_OPTIONS = ("--app", "--nats-url", "--database-url")


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move the global options found after the command to the front, so that
    ``eventkit status --app x`` means ``eventkit --app x status`` (nothing after ``--`` moves)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        if arg in GLOBAL_OPTIONS and i + 1 < len(argv):
            front += [arg, argv[i + 1]]
            i += 2
            continue
        if arg.split("=", 1)[0] in GLOBAL_OPTIONS and "=" in arg:
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def main() -> None:
    """The ``eventkit`` console script: errors found while parsing arguments (before a command
    reaches the library) are shown as a message with exit code 2, never a traceback."""
    from eventkit.cli.context import fail_on
    from eventkit.errors import EventkitError

    try:
        app(args=hoist_global_options(sys.argv[1:]), prog_name="eventkit")
    except (EventkitError, OSError) as e:
        try:
            fail_on(e)
        except typer.Exit as done:
            raise SystemExit(done.exit_code) from None
