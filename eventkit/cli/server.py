"""``eventkit server``: start, stop and inspect the embedded nats-server.

A thin shim: it reads the settings, calls :mod:`eventkit.server`, and prints.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from eventkit.cli.context import (
    EXIT_ERROR,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    console,
    fail,
    fail_on,
    state,
)
from eventkit.config import Settings
from eventkit.errors import EventkitError
from eventkit.server import EmbeddedServer, ServerInfo

server_app = typer.Typer(
    help=(
        "Manage the embedded nats-server (used when EVENTKIT_NATS_URL is not set).\n\n"
        "Example: eventkit server start && eventkit server status"
    ),
    no_args_is_help=True,
)

_KEY_HOWTO = (
    "set EVENTKIT_SERVER_KEY in the environment (never on the command line), e.g.\n"
    "  export EVENTKIT_SERVER_KEY=$(openssl rand -base64 32)\n"
    "and keep it safe: without it the stored data cannot be read."
)


def _key(settings: Settings, encrypt: bool) -> str | None:
    """The store key; ``--encrypt`` without one is refused (the library refuses a key for a
    store that already holds unencrypted data)."""
    if encrypt and settings.server_store_key is None:
        fail(f"--encrypt needs a key: {_KEY_HOWTO}", EXIT_USAGE)
    return settings.server_store_key


def _describe(info: ServerInfo) -> None:
    console.print(f"[green]running[/] at [bold]{info.url}[/] (pid {info.pid})", highlight=False)
    console.print(f"  nats-server {info.version}, monitoring http://127.0.0.1:{info.http_port}")
    at_rest = "[green]encrypted[/] (chachapoly)" if info.encrypted else "unencrypted"
    console.print(f"  store {info.store_dir}, {at_rest}", highlight=False)
    if info.sync_interval == "always":
        console.print("  sync always: an acknowledged append is on disk", highlight=False)
    else:
        console.print(
            f"  [yellow]sync every {info.sync_interval or '2m'}[/]: a power loss loses the "
            f"appends acknowledged within it; set EVENTKIT_SERVER_SYNC=always and restart",
            highlight=False,
        )


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
    settings = state(ctx).settings()
    key = _key(settings, encrypt)
    server = EmbeddedServer(sync_interval=settings.server_sync)
    home = settings.home
    try:
        running = server.status(home)
        if running is not None:
            if encrypt and not running.encrypted:
                fail(
                    f"the server of {home} is running unencrypted; stop it first "
                    f"(eventkit server stop)",
                    EXIT_USAGE,
                )
            console.print("[yellow]already running[/]")
            _describe(running)
            return
        info = server.ensure_running(home, encrypt_key=key, port=port)
    except EventkitError as e:
        fail_on(e)
    _describe(info)
    console.print(
        f"  log {home / 'nats-server.log'}; stop it with: eventkit server stop", highlight=False
    )


@server_app.command("stop")
def stop(ctx: typer.Context) -> None:
    """Stop the embedded server (SIGTERM, then SIGKILL after 10 s).

    Example: eventkit server stop
    """
    home = state(ctx).settings().home
    try:
        stopped = EmbeddedServer().stop(home)
    except EventkitError as e:
        fail_on(e)
    if stopped:
        console.print(f"[green]stopped[/] the server of {home}", highlight=False)
    else:
        console.print(f"no server was running for {home}", highlight=False, markup=False)


@server_app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show whether the embedded server runs. Exit code 0 running, 3 not running, 1 error.

    Example: eventkit server status --json
    """
    home = state(ctx).settings().home
    try:
        info = EmbeddedServer().status(home)
    except EventkitError as e:
        fail_on(e)
    if as_json:
        data: dict[str, object] = {"running": info is not None, "home": str(home)}
        if info is not None:
            data.update(json.loads(info.to_json()))
        typer.echo(json.dumps(data))
    elif info is None:
        console.print(
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
    log_file: Annotated[
        bool, typer.Option("--log-file", help="Log to <home>/nats-server.log, not stdout.")
    ] = False,
) -> None:
    """Run the embedded server in the foreground until Ctrl-C (for containers and debugging).
    Its log goes to stdout (--log-file: to the home's nats-server.log instead).

    Example: eventkit server run --port 4333
    """
    settings = state(ctx).settings()
    key = _key(settings, encrypt)
    home = settings.home

    def ready(info: ServerInfo) -> None:
        _describe(info)
        where = home / "nats-server.log" if log_file else "stdout"
        console.print(f"  log {where}; press Ctrl-C to stop", highlight=False)

    try:
        code = EmbeddedServer(sync_interval=settings.server_sync).run_foreground(
            home, port=port, encrypt_key=key, on_ready=ready, log_to_file=log_file
        )
    except EventkitError as e:
        fail_on(e)
    console.print("stopped")
    raise typer.Exit(EXIT_OK if code == 0 else EXIT_ERROR)


__all__ = ["server_app"]
