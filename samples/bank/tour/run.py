"""One run of the tour: its order, its start and end, the command line."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine

from eventkit import EventkitError
from eventkit.app import development_master_key
from eventkit.config import Settings
from eventkit.projection.sql import make_engine, upgrade
from eventkit.store.jetstream import JetStreamEventStore
from samples.bank.app import app as bank_app
from samples.bank.tour.erasure import Erasure
from samples.bank.tour.projections import Projections
from samples.bank.tour.reactions import Reactions
from samples.bank.tour.script import APP_TARGET, TourResult
from samples.bank.tour.writes import Writes


class Tour(Writes, Projections, Erasure, Reactions):
    """One run of the tour; :func:`run_tour` is the entry point."""

    def __init__(self, settings: Settings, console: Console) -> None:
        self.settings = settings
        self.console = console
        self.result = TourResult(run_id=secrets.token_hex(3))
        self.store: JetStreamEventStore | None = None
        self.engine: Engine | None = None
        self.step_no = 0
        self.notes: list[str] = []
        self.server_line = ""
        self.dev_key = settings.master_key is None

    def prepare_settings(self) -> None:
        from eventkit import server

        settings = self.settings
        if settings.uses_embedded_server:
            before = server.status(settings.home)
            info = server.ensure_running(
                settings.home,
                encrypt_key=settings.server_store_key,
                sync_interval=settings.server_sync,
            )
            how = "reused" if before is not None and before.pid == info.pid else "started"
            at_rest = ", encrypted at rest" if info.encrypted else ""
            self.server_line = (
                f"{info.url} · embedded nats-server {info.version}, {how} (pid {info.pid}{at_rest})"
            )
        else:
            self.server_line = f"{', '.join(settings.nats_urls)} (EVENTKIT_NATS_URL)"
            if settings.master_key is None:
                # App.connect only derives a development key for the embedded server; the tour
                # is a demo, so it does the same here and says so.
                key = development_master_key(settings.home)
                self.settings = settings.replace(master_key=key)
                self.notes.append(
                    f"EVENTKIT_MASTER_KEY is not set: the tour uses the development key in "
                    f"{settings.home / 'master.key'}; set EVENTKIT_MASTER_KEY to your own "
                    f"(the CLI needs the same one to read the customers)"
                )

    async def connect(self) -> None:
        self.engine = make_engine(self.settings.resolved_database_url)
        self.store = await bank_app.connect(self.settings)

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
        if self.engine is not None:
            self.engine.dispose()

    def header(self) -> None:
        if self.settings.database_url is None:
            db_line = f"{self._short(self.settings.home / 'eventkit.db')} (SQLite)"
        else:
            shown = self.settings.redacted()["database_url"] or ""
            db_line = f"{shown} (EVENTKIT_DATABASE_URL)"
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_row("run", f"{self.result.run_id} · stream {bank_app.stream} · app {APP_TARGET}")
        grid.add_row("NATS", Text(self.server_line))
        grid.add_row("SQL", Text(db_line))
        self.console.print(
            Panel(grid, title="[bold]eventkit · the bank tour", title_align="left", expand=False)
        )
        for note in self.notes:
            self.console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)

    async def migrate(self) -> None:
        with self.step("Migrations"):
            await asyncio.to_thread(upgrade, self.db, app_migrations=bank_app.migrations)
            self.ok(
                "eventkit's tables (eventkit_alembic_version) and the bank's read-model tables "
                "(bank_alembic_version) are at head"
            )

    def footer(self) -> None:
        r = self.result
        replayed = "the ledger replayed" if r.ledger_idempotent else "no replay"
        self.console.print()
        self.console.rule(f"[bold green]Done in {r.seconds:.1f} s", align="left", style="green")
        self.say(
            f"{len(r.customers)} customers, {len(r.accounts)} accounts, {r.deposits} concurrent "
            f"deposits ({r.conflicts} conflicts retried), {r.transfers} transfers, {replayed}, "
            f"{r.forgotten} forgotten."
        )
        home = self.settings.home
        t = self.table("where things live", "")
        if self.settings.uses_embedded_server:
            t.add_row(
                self._short(home / "jetstream"),
                "the JetStream store (stream bank, key and snapshot buckets)",
            )
            t.add_row(self._short(home / "nats-server.log"), "the embedded server's log")
        if self.settings.database_url is None:
            t.add_row(self._short(home / "eventkit.db"), "SQLite: read models, checkpoints, audit")
        if self.dev_key:
            t.add_row(
                self._short(home / "master.key"),
                "development master key (set EVENTKIT_MASTER_KEY in production)",
            )
        if t.row_count:
            self.show(t)
        a = f"--app {APP_TARGET}"
        tries = [
            f"eventkit {a} info",
            f"eventkit {a} events bank.account.{r.accounts['mira']}",
            f"eventkit {a} events bank.customer.{r.customers['jonas']}",
            f"eventkit {a} status",
            f"eventkit {a} replay ledger --from-time 10m",
            f"eventkit {a} forget bank.customer.{r.customers['jonas']} --dry-run",
            "python -m samples.bank                      # again: fresh ids, same read models",
        ]
        if self.settings.uses_embedded_server:
            tries.append("eventkit server status   # it keeps running; eventkit server stop")
        self.console.print()
        exe = _eventkit_command()
        note = ""
        if exe != "eventkit":  # no activated venv: print commands that run as they are
            python = self._short(Path(sys.executable))
            tries = [t.replace("eventkit ", f"{exe} ", 1) for t in tries]
            tries = [t.replace("python -m", f"{python} -m", 1) for t in tries]
            venv_bin = self._short(Path(sys.executable).parent)
            note = f" (or activate the venv first: . {venv_bin}/activate)"
        self.console.print(f"[bold]Try next[/]{escape(note)}")
        for line in tries:
            self.console.print(f"  [cyan]$[/] {escape(line)}", highlight=False, soft_wrap=True)

    def _short(self, path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    async def run(self) -> TourResult:
        started = time.perf_counter()
        self.prepare_settings()
        self.header()
        try:
            await self.connect()
            await self.migrate()
            await self.open_accounts()
            await self.concurrent_deposits()
            since = await self._last_event_time()
            await self.transfers()
            await self.catch_up()
            self.show_read_models()
            await self.check_balances()
            await self.replay_ledger(since)
            await self.react()
            await self.forget()
        finally:
            await self.close()
        self.result.seconds = time.perf_counter() - started
        self.footer()
        return self.result

    async def _last_event_time(self) -> datetime:
        """The server's timestamp of the latest event: the replay starts here."""
        last = await self.s.last_sequence()
        msg = await self.s.get(last)
        return msg.time if msg is not None else datetime.now(UTC)


async def run_tour(settings: Settings | None = None, console: Console | None = None) -> TourResult:
    """Run the tour once and return what it did.

    Example::

        result = asyncio.run(run_tour())
        print(result.conflicts, result.forgotten)
    """
    tour = Tour(settings or Settings.from_env(), console or Console(highlight=False))
    return await tour.run()


def _eventkit_command() -> str:
    """``eventkit`` when it is on PATH as this interpreter's script, else the script's path."""
    script = Path(sys.executable).parent / "eventkit"
    found = shutil.which("eventkit")
    if found is not None and Path(found).resolve() == script.resolve():
        return "eventkit"
    if not script.exists():
        return "eventkit"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m samples.bank``: exit code 0 when every check passed, 1 otherwise."""
    console = Console(highlight=False)
    try:
        settings = Settings.from_env()
        result = asyncio.run(run_tour(settings, console))
    except EventkitError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        return 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    return 0 if result.balances_match and result.ledger_idempotent is not False else 1


if __name__ == "__main__":
    sys.exit(main())
