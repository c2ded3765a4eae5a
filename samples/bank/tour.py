"""The bank tour: every part of eventkit in one run, on the embedded defaults.

``python -m samples.bank`` (from a checkout, after ``pip install .``) runs, in order: the
migrations; customers (personal data, encrypted per customer) and accounts; concurrent deposits
that collide and retry; transfers, each one atomic append over two accounts; the projectors'
catch-up; the read models; a replay of the ledger from a point in time; and the erasure of a
customer. Every run uses fresh ids, so it can be run again; the projectors carry on from their
checkpoints.

With no ``EVENTKIT_NATS_URL`` it starts (or reuses) the embedded nats-server under
``./.eventkit``. With no ``EVENTKIT_DATABASE_URL`` it uses SQLite in ``./.eventkit/eventkit.db``.
Both can point elsewhere.

Example::

    result = asyncio.run(run_tour(Settings.from_env()))
    assert result.balances_match and result.ledger_idempotent is not False
"""

from __future__ import annotations

import asyncio
import random
import secrets
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine, func, select

from eventkit import AggregateNotFound, ConcurrencyError, EventkitError, ForgottenError, Repository
from eventkit.app import development_master_key
from eventkit.config import Settings
from eventkit.errors import ProjectionError
from eventkit.gdpr.forget import ForgetReport, forget_subject
from eventkit.projection.replay import plan_replay, replay
from eventkit.projection.runner import ProjectionRunner, RunResult
from eventkit.projection.sql import make_engine, transaction, upgrade
from eventkit.projection.status import status
from eventkit.store.erasure import is_marker
from eventkit.store.jetstream import JetStreamEventStore
from samples.bank.app import app as bank_app
from samples.bank.domain import Account, Customer, InsufficientFunds
from samples.bank.readmodels import balances, customers, ledger

APP_TARGET = "samples.bank.app:app"
WRITERS = 12
"""Concurrent writers depositing into one account at the same time."""
DEPOSIT = 25

PEOPLE = [
    # (first name, full name, opening deposit)
    ("mira", "Mira Okafor", 0),
    ("jonas", "Jonas Lindqvist", 500),
    ("priya", "Priya Raman", 200),
]
TRANSFERS = [
    # (from, to, amount)
    ("mira", "jonas", 120),
    ("jonas", "priya", 200),
    ("priya", "mira", 50),
    ("jonas", "mira", 75),
]
FORGET = "priya"


@dataclass
class TourResult:
    """What one run did: its ids, counts, and the checks it made."""

    run_id: str
    customers: dict[str, str] = field(default_factory=dict)
    """first name -> customer id"""
    accounts: dict[str, str] = field(default_factory=dict)
    """first name -> account id"""
    deposits: int = 0
    conflicts: int = 0
    transfers: int = 0
    balances_match: bool = False
    ledger_idempotent: bool | None = None
    """None when the replay was skipped (another process runs the ledger)."""
    forgotten: str = ""
    forget_report: ForgetReport | None = None
    seconds: float = 0.0


class Tour:
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

    # -- output helpers -----------------------------------------------------------------------
    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.step_no += 1
        self.console.print()
        self.console.rule(f"[bold cyan]{self.step_no} · {title}", align="left", style="cyan")
        yield

    def say(self, text: str) -> None:
        self.console.print(Padding(Text.from_markup(text), (0, 0, 0, 2), expand=False))

    def _mark(self, mark: str, text: str) -> None:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=1, no_wrap=True)
        grid.add_column()
        grid.add_row(Text.from_markup(mark), Text.from_markup(text))
        self.console.print(Padding(grid, (0, 0, 0, 2), expand=False))

    def show(self, table: Table) -> None:
        self.console.print(Padding(table, (0, 0, 0, 2), expand=False))

    def ok(self, text: str) -> None:
        self._mark("[green]✓[/]", text)

    def no(self, text: str) -> None:
        self._mark("[red]✗[/]", text)

    def table(self, *columns: str, title: str | None = None) -> Table:
        t = Table(*columns, title=title, title_justify="left", box=None, padding=(0, 3, 0, 0))
        t.title_style = "bold"
        return t

    # -- connections --------------------------------------------------------------------------
    @property
    def s(self) -> JetStreamEventStore:
        assert self.store is not None
        return self.store

    @property
    def db(self) -> Engine:
        assert self.engine is not None
        return self.engine

    def prepare_settings(self) -> None:
        from eventkit import server

        settings = self.settings
        if settings.uses_embedded_server:
            before = server.status(settings.home)
            info = server.ensure_running(settings.home, encrypt_key=settings.server_store_key)
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

    # -- the steps ----------------------------------------------------------------------------
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

    async def open_accounts(self) -> None:
        run = self.result.run_id
        people = Repository(self.s, Customer)
        accounts = Repository(self.s, Account)
        with self.step("Customers and accounts"):
            t = self.table("customer", "name", "account", "opening", "last seq")
            for n, (first, name, opening) in enumerate(PEOPLE, 1):
                # ids are opaque, never names: a forgotten subject's token stays in the stream
                # (its erasure marker) and in the server's index for a while
                customer = Customer(f"c-{run}-{n}")
                customer.register(name, f"{first}@example.com")
                await people.save(customer)
                account = Account(f"a-{run}-{n}")
                account.open(customer.id)
                if opening:
                    account.deposit(opening)  # two events, one atomic append
                await accounts.save(account)
                self.result.customers[first] = customer.id
                self.result.accounts[first] = account.id
                t.add_row(
                    customer.id,
                    name,
                    account.id,
                    str(opening),
                    f"{customer.version}, {account.version}",
                )
            self.show(t)
            self.say(
                "[dim]Customer has personal_data = True: its events are encrypted (AES-256-GCM) "
                "with a key of its own, so forgetting it can shred the key.[/]"
            )
            try:
                again = Account(self.result.accounts["mira"])
                again.open("someone else")
                await accounts.save(again)  # expects a new subject (sequence 0)
            except ConcurrencyError as e:
                self.ok(f"opening {again.id} twice is refused by the store: {e}")

    async def concurrent_deposits(self) -> None:
        accounts = Repository(self.s, Account)
        account_id = self.result.accounts["mira"]
        conflicts: list[ConcurrencyError] = []

        async def deposit(amount: int) -> None:
            # what Repository.update does, spelled out to count the retries
            while True:
                acct = await accounts.load(account_id)
                acct.deposit(amount)
                try:
                    await accounts.save(acct)  # expects acct.version: the sequence we loaded
                    return
                except ConcurrencyError as e:
                    conflicts.append(e)
                    await asyncio.sleep(random.uniform(0, 0.004))

        with self.step("Concurrent deposits: optimistic concurrency"):
            self.say(
                f"{WRITERS} writers deposit {DEPOSIT} into {accounts.subject(account_id)} at once; "
                f"each loads, decides, saves with expected sequence = the version it loaded, "
                f"and on ConcurrencyError reloads and tries again."
            )
            await asyncio.gather(*(deposit(DEPOSIT) for _ in range(WRITERS)))
            acct = await accounts.load(account_id)
            self.result.deposits = WRITERS
            self.result.conflicts = len(conflicts)
            self.ok(
                f"{WRITERS} deposits stored, [bold]{len(conflicts)} conflicts retried[/]; "
                f"balance {acct.balance} = {WRITERS} x {DEPOSIT}"
            )
            if conflicts:
                self.say(f"[dim]e.g. ConcurrencyError: {escape(str(conflicts[0]))}[/]")

    async def transfers(self) -> None:
        accounts = Repository(self.s, Account)
        ids = self.result.accounts
        run = self.result.run_id
        with self.step("Transfers: one atomic append over two accounts"):
            t = self.table("transfer", "from", "to", "amount", "sequences")
            for n, (src, dst, amount) in enumerate(TRANSFERS, 1):
                tid = f"t-{run}-{n}"
                sender, receiver = await self._transfer(accounts, tid, ids[src], ids[dst], amount)
                t.add_row(
                    tid,
                    sender.id,
                    receiver.id,
                    str(amount),
                    f"{sender.version}, {receiver.version}",
                )
                self.result.transfers += 1
            self.show(t)
            self.say(
                "[dim]Account.send records TransferSent on one account and TransferReceived on "
                "the other; Repository.save_all appends both as one ADR-50 atomic batch, with "
                "an expected sequence on each subject.[/]"
            )
            # a domain rule: nothing is recorded, nothing is sent
            priya, jonas = await accounts.load(ids["priya"]), await accounts.load(ids["jonas"])
            try:
                priya.send(f"t-{run}-x", jonas, 10_000)
            except InsufficientFunds as e:
                self.ok(f"refused by the domain, nothing recorded: {e}")
            # a stale side rejects the whole batch
            mira, jonas = await accounts.load(ids["mira"]), await accounts.load(ids["jonas"])
            mira_before = await self.s.last_sequence(accounts.subject(mira.id))
            await accounts.update(jonas.id, lambda a: a.deposit(1))  # someone else writes jonas
            mira.send(f"t-{run}-{len(TRANSFERS) + 1}", jonas, 10)
            try:
                await accounts.save_all([mira, jonas])
                self.no("the stale transfer was stored (it should not have been)")
            except ConcurrencyError as e:
                mira_after = await self.s.last_sequence(accounts.subject(mira.id))
                if mira_after == mira_before:
                    self.ok(
                        f"all or nothing: {jonas.id} changed after it was loaded, so the batch "
                        f"was rejected ({e.subject.rsplit('.', 1)[-1]}: expected {e.expected}, "
                        f"actual {e.actual}) and {mira.id} got nothing either"
                    )
                else:
                    self.no(f"{mira.id} moved from {mira_before} to {mira_after}")

    async def _transfer(
        self, accounts: Repository[Account], tid: str, src: str, dst: str, amount: int
    ) -> tuple[Account, Account]:
        while True:
            sender, receiver = await accounts.load(src), await accounts.load(dst)
            sender.send(tid, receiver, amount)
            try:
                await accounts.save_all([sender, receiver])
                return sender, receiver
            except ConcurrencyError:
                self.result.conflicts += 1

    async def catch_up(self) -> None:
        with self.step("Projectors: catch up into SQL"):
            before = {s.name: s for s in await status(bank_app.projectors, self.s, self.db)}
            busy = [s.name for s in before.values() if s.owner is not None]
            free = {name: st for name, st in before.items() if name not in busy}
            if free:
                results = await self._run_with_progress(free)
                t = self.table("projector", "checkpoint", "applied", "state")
                for r in results:
                    prev = before[r.projector]
                    t.add_row(
                        r.projector,
                        f"{prev.checkpoint} → {r.checkpoint}",
                        str(r.processed),
                        "[red]halted[/]" if r.halted else "[green]up to date[/]",
                    )
                self.show(t)
                self.say(
                    "[dim]Each batch is one SQL transaction holding the rows and the checkpoint: "
                    "a crash anywhere leaves the read model exactly at its checkpoint.[/]"
                )
            if busy:
                await self._wait_for_workers(busy)

    async def _run_with_progress(self, before: dict[str, Any]) -> list[RunResult]:
        progress = Progress(
            TextColumn("  {task.description:<10}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        tasks = {
            name: progress.add_task(name, total=max(st.lag_events, 1), completed=0)
            for name, st in before.items()
        }

        def on_batch(runner: ProjectionRunner, _n: int) -> None:
            progress.update(tasks[runner.name], completed=runner.processed)

        runners = [
            ProjectionRunner(bank_app.projector(name), self.s, self.db, on_batch=on_batch)
            for name in before
        ]
        with progress:
            results = list(await asyncio.gather(*(r.catch_up() for r in runners)))
            for r in results:
                task = tasks[r.projector]
                progress.update(task, total=max(r.processed, 1), completed=max(r.processed, 1))
        return results

    async def _wait_for_workers(self, busy: list[str]) -> None:
        self.say(
            f"[yellow]{', '.join(busy)}: another process runs them (eventkit run holds the "
            f"lease); waiting for it to catch up[/]"
        )
        watched = [bank_app.projector(name) for name in busy]
        with Progress(
            TextColumn("  {task.description:<10}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            console=self.console,
        ) as progress:
            tasks: dict[str, tuple[Any, int]] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                states = await status(watched, self.s, self.db)
                for st in states:
                    if st.name not in tasks:
                        lag0 = max(st.lag_events, 1)
                        tasks[st.name] = (progress.add_task(st.name, total=lag0), lag0)
                    task, lag0 = tasks[st.name]
                    progress.update(task, completed=max(0, lag0 - st.lag_events))
                if all(st.lag_events == 0 for st in states):
                    for task, lag0 in tasks.values():
                        progress.update(task, completed=lag0)
                    return
                await asyncio.sleep(0.2)
        raise ProjectionError("the projector worker did not catch up within 30 s (eventkit status)")

    def show_read_models(self) -> None:
        ids = self.result.accounts
        with self.step("Read models (SQL)"):
            with transaction(self.db) as db:
                rows = db.execute(
                    select(balances, customers.c.name)
                    .outerjoin(customers, customers.c.customer_id == balances.c.customer_id)
                    .where(balances.c.account_id.in_(ids.values()))
                    .order_by(balances.c.account_id)
                ).all()
                moves = db.execute(
                    select(ledger)
                    .where(ledger.c.account_id.in_(ids.values()), ledger.c.kind == "transfer")
                    .order_by(ledger.c.sequence)
                ).all()
                total = db.scalar(
                    select(func.count())
                    .select_from(ledger)
                    .where(ledger.c.account_id.in_(ids.values()))
                )
            t = self.table(
                "account",
                "customer (directory)",
                "balance",
                "events",
                title="bank_balances ⋈ bank_customers",
            )
            for r in rows:
                t.add_row(r.account_id, r.name or "", str(r.balance), str(r.events))
            self.show(t)
            self.console.print()
            t = self.table(
                "seq",
                "account",
                "amount",
                "counterparty",
                title=f"bank_ledger: the transfers ({total} rows for this run)",
            )
            for r in moves:
                t.add_row(str(r.sequence), r.account_id, f"{r.amount:+d}", r.counterparty or "")
            self.show(t)

    async def check_balances(self) -> None:
        accounts = Repository(self.s, Account)
        with transaction(self.db) as db:
            projected = dict(
                db.execute(
                    select(balances.c.account_id, balances.c.balance).where(
                        balances.c.account_id.in_(self.result.accounts.values())
                    )
                ).all()
            )
        loaded = {i: (await accounts.load(i)).balance for i in self.result.accounts.values()}
        self.result.balances_match = projected == loaded
        if self.result.balances_match:
            self.ok(
                f"every balance in SQL equals the aggregate loaded from its events "
                f"(total {sum(loaded.values())})"
            )
        else:
            self.no(f"read model {projected} differs from the aggregates {loaded}")

    async def replay_ledger(self, since: datetime) -> None:
        projector = bank_app.projector("ledger")
        with self.step("Replay the ledger from a point in time"):
            before = self._ledger_rows()
            try:
                plan = await plan_replay(projector, self.s, self.db, from_time=since)
            except EventkitError as e:
                self.no(f"cannot replay: {e}")
                return
            self.say(escape(plan.describe()))
            try:
                result = await replay(plan, projector, self.s, self.db)
            except ProjectionError as e:
                self.say(f"[yellow]skipped: {escape(str(e))}[/]")
                return
            after = self._ledger_rows()
            self.result.ledger_idempotent = before == after
            if self.result.ledger_idempotent:
                self.ok(
                    f"{result.processed} events applied again; the ledger is unchanged "
                    f"({len(after)} rows in all, sum {sum(r[3] for r in after)}): its rows are "
                    f"keyed by stream sequence, so the projector declares idempotent = True"
                )
            else:
                self.no(f"the ledger changed: {len(before)} rows before, {len(after)} after")
            self.say(
                "[dim]Balances is not idempotent (it adds amounts): it only replays from the "
                "start, where reset() empties it first.[/]"
            )

    def _ledger_rows(self) -> list[tuple[Any, ...]]:
        with transaction(self.db) as db:
            return [
                tuple(r)
                for r in db.execute(
                    select(
                        ledger.c.sequence,
                        ledger.c.account_id,
                        ledger.c.kind,
                        ledger.c.amount,
                        ledger.c.counterparty,
                    ).order_by(ledger.c.sequence)
                ).all()
            ]

    async def forget(self) -> None:
        people = Repository(self.s, Customer)
        customer_id = self.result.customers[FORGET]
        subject = people.subject(customer_id)
        directory = bank_app.projector("customers")
        assert hasattr(directory, "lookup")
        with self.step(f"Forget a customer (GDPR): {subject}"):
            raw = [m async for m in self.s.read_raw(subject)]
            name = (await people.load(customer_id)).name
            visible = any(name.encode() in m.data for m in raw)
            with transaction(self.db) as db:
                row = directory.lookup(db, customer_id)
            self.say(
                f"before: {len(raw)} message(s) on the subject, payload "
                f"{'[red]readable[/]' if visible else 'encrypted'} on the server "
                f"({raw[0].data[:12].hex()}…; {name!r} is {'' if visible else 'not '}in the "
                f"bytes); directory row {'present' if row else 'absent'}"
            )
            report = await forget_subject(bank_app, self.s, self.db, subject)
            self.result.forget_report = report
            self.result.forgotten = subject
            t = self.table("forget report", "")
            t.add_row("messages erased (secure delete)", str(report.messages))
            t.add_row("data key", report.key)
            t.add_row("snapshots erased", str(report.snapshots))
            t.add_row("projectors that forgot", ", ".join(report.projectors) or "none")
            t.add_row("without forget()", ", ".join(report.projectors_without_forget) or "none")
            t.add_row("notice for other services", f"seq {report.notice_sequence}")
            t.add_row("audit entry", f"HMAC {report.subject_hmac[:16]}… (no personal data)")
            self.show(t)
            self.say(f"[dim]copies out of reach are covered by {escape(report.covered_by)}[/]")
            with transaction(self.db) as db:
                row = directory.lookup(db, customer_id)
            left = [m async for m in self.s.read_raw(subject) if not is_marker(m.headers)]
            try:
                events = await self.s.read(subject)
                read_says = f"{len(events)} events"
            except ForgottenError as e:
                read_says = f"ForgottenError ({e})"
            if row is None and not left:
                self.ok(
                    f"after: directory row gone; 0 messages left (only the erasure marker, "
                    f"which refuses new appends); store.read: {read_says}"
                )
            else:
                self.no(f"after: directory row {row}, {len(left)} messages left")
            try:
                await people.load(customer_id)
                self.no("the customer still loads")
            except (ForgottenError, AggregateNotFound) as e:
                self.ok(f"loading it: {type(e).__name__}")
            again = Customer(customer_id)
            again.register("Priya Raman", "priya@example.com")
            try:
                await people.save(again)
                self.no("a forgotten subject accepted new events")
            except ForgottenError:
                self.ok("writing to it again is refused: ForgottenError")
            self.say(
                f"[dim]{self.result.accounts[FORGET]} keeps the customer id (a pseudonym) and "
                f"its balance; forget bank.account.{self.result.accounts[FORGET]} too to erase "
                f"the account. See docs/gdpr.md.[/]"
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

    async def react(self) -> None:
        from eventkit.reaction import ReactorRunner
        from samples.bank.reactors import LargeWithdrawals

        with self.step("Reactor: review large withdrawals, with a deadline"):
            accounts = Repository(self.s, Account)
            acct = await accounts.load(self.result.accounts["mira"])
            acct.deposit(15_000)
            acct.withdraw(12_000)
            await accounts.save(acct)
            stats = await ReactorRunner(LargeWithdrawals(), self.s).catch_up()
            reviews = await self.s.read(f"bank.review.{acct.id}")
            for r in reviews:
                self.ok(
                    f"{r.event_type} on {r.subject} (event id {r.event_id[:12]}…, caused by "
                    f"{r.headers.get('Eventkit-Causation-Id', '?')[:12]}…)"
                )
            self.say(
                f"[dim]{stats.handled} withdrawals handled. The output's id is derived from the "
                f"reactor, the withdrawal and its position: a redelivery stores nothing twice. "
                f"A deadline (ReviewDue, in {LargeWithdrawals.review_after}) is stored as a server "
                f"message schedule and escalates the review if it is still open.[/]"
            )

    def _short(self, path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    # -- everything ---------------------------------------------------------------------------
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
