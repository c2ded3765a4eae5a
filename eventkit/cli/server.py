"""``eventkit server``: start, stop and inspect the embedded nats-server.

A thin shim: it reads the settings, calls :mod:`eventkit.server`, and prints.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from eventkit.config import Settings
from eventkit.errors import EventkitError
from eventkit.server import EmbeddedServer, ServerInfo

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3

server_app = typer.Typer(
    help=(
        "Manage the embedded nats-server (used when EVENTKIT_NATS_URL is not set).\n\n"
        "Example: eventkit server start && eventkit server status"
    ),
    no_args_is_help=True,
)

_out = Console()
_err = Console(stderr=True)

_KEY_HOWTO = (
    "set EVENTKIT_SERVER_KEY in the environment (never on the command line), e.g.\n"
    "  export EVENTKIT_SERVER_KEY=$(openssl rand -base64 32)\n"
    "and keep it safe: without it the stored data cannot be read."
)


def _settings(ctx: typer.Context) -> Settings:
    """The settings the root command built (``ctx.obj``), else read from the environment.

    ``ctx.obj`` may be a :class:`Settings`, or hold one as ``.settings`` (an attribute or a
    method returning it).
    """
    obj = ctx.find_root().obj
    if isinstance(obj, Settings):
        return obj
    found = getattr(obj, "settings", None)
    if callable(found):
        found = found()
    if isinstance(found, Settings):
        return found
    return Settings.from_env()


def _fail(message: str) -> typer.Exit:
    _err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(EXIT_ERROR)


def _describe(info: ServerInfo) -> None:
    _out.print(f"[green]running[/] at [bold]{info.url}[/] (pid {info.pid})", highlight=False)
    _out.print(f"  nats-server {info.version}, monitoring http://127.0.0.1:{info.http_port}")
    at_rest = "[green]encrypted[/] (chachapoly)" if info.encrypted else "unencrypted"
    _out.print(f"  store {info.store_dir}, {at_rest}", highlight=False)


@server_app.command("start")
def start(
    ctx: typer.Context,
    encrypt: Annotated[
        bool,
        typer.Option(
            "--encrypt",
            help="Encrypt the JetStream store at rest with EVENTKIT_SERVER_KEY (a new store only).",
        ),
    ] = False,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Client port on 127.0.0.1 (default: free)."),
    ] = None,
) -> None:
    """Start the embedded server in the background, or report the one already running.

    Example: EVENTKIT_SERVER_KEY=... eventkit server start --encrypt
    """
    try:
        settings = _settings(ctx)
        server = EmbeddedServer()
        key = settings.server_store_key
        if encrypt and key is None:
            raise _fail(f"--encrypt needs a key: {_KEY_HOWTO}")
        home = settings.home
        if encrypt and server.store_encryption(home) == "plain":
            raise _fail(
                f"the store under {home} already holds unencrypted data and cannot be encrypted "
                f"in place; point EVENTKIT_HOME at a new directory to start an encrypted store"
            )
        running = server.status(home)
        if running is not None:
            if encrypt and not running.encrypted:
                raise _fail(
                    f"the server of {home} is running unencrypted; stop it first "
                    f"(eventkit server stop)"
                )
            _out.print("[yellow]already running[/]")
            _describe(running)
            return
        info = server.ensure_running(home, encrypt_key=key, port=port)
        _describe(info)
        _out.print(f"  log {home / 'nats-server.log'}; stop it with: eventkit server stop")
    except EventkitError as e:
        raise _fail(str(e)) from None


@server_app.command("stop")
def stop(ctx: typer.Context) -> None:
    """Stop the embedded server (SIGTERM, then SIGKILL after 10 s).

    Example: eventkit server stop
    """
    try:
        home = _settings(ctx).home
        if EmbeddedServer().stop(home):
            _out.print(f"[green]stopped[/] the server of {home}", highlight=False)
        else:
            _out.print(f"no server was running for {home}", highlight=False)
    except EventkitError as e:
        raise _fail(str(e)) from None


@server_app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show whether the embedded server runs. Exit code 0 running, 3 not running, 1 error.

    Example: eventkit server status --json
    """
    try:
        home = _settings(ctx).home
        info = EmbeddedServer().status(home)
    except EventkitError as e:
        raise _fail(str(e)) from None
    if as_json:
        data: dict[str, object] = {"running": info is not None, "home": str(home)}
        if info is not None:
            data.update(json.loads(info.to_json()))
        typer.echo(json.dumps(data))
    elif info is None:
        _out.print(
            f"[yellow]not running[/] (home {home}); start it with: eventkit server start",
            highlight=False,
        )
    else:
        _describe(info)
    if info is None:
        raise typer.Exit(EXIT_NOT_RUNNING)


@server_app.command("run")
def run(
    ctx: typer.Context,
    encrypt: Annotated[
        bool,
        typer.Option("--encrypt", help="Encrypt the store at rest with EVENTKIT_SERVER_KEY."),
    ] = False,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Client port on 127.0.0.1 (default: free)."),
    ] = None,
) -> None:
    """Run the embedded server in the foreground until Ctrl-C (for containers and debugging).

    Example: eventkit server run --port 4333
    """
    try:
        settings = _settings(ctx)
        key = settings.server_store_key
        if encrypt and key is None:
            raise _fail(f"--encrypt needs a key: {_KEY_HOWTO}")
        server = EmbeddedServer()
        home = settings.home
        if encrypt and server.store_encryption(home) == "plain":
            raise _fail(
                f"the store under {home} already holds unencrypted data and cannot be encrypted "
                f"in place; point EVENTKIT_HOME at a new directory to start an encrypted store"
            )

        def ready(info: ServerInfo) -> None:
            _describe(info)
            _out.print(f"  log {home / 'nats-server.log'}; press Ctrl-C to stop")

        code = server.run_foreground(home, port=port, encrypt_key=key, on_ready=ready)
    except EventkitError as e:
        raise _fail(str(e)) from None
    _out.print("stopped")
    raise typer.Exit(EXIT_OK if code == 0 else EXIT_ERROR)


__all__ = ["server_app"]
