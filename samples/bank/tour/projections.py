"""The tour's projectors: catch-up, the read models, the replay of the ledger."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select

from eventkit import EventkitError, Repository
from eventkit.errors import ProjectionError
from eventkit.projection.replay import plan_replay, replay
from eventkit.projection.runner import ProjectionRunner, RunResult
from eventkit.projection.sql import transaction
from eventkit.projection.status import status
from samples.bank.app import app as bank_app
from samples.bank.domain import Account
from samples.bank.readmodels import balances, customers, ledger
from samples.bank.tour.narration import Narration


class Projections(Narration):
    """Steps 5-7."""

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
