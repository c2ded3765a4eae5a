"""The tour's writes: customers and accounts, concurrent deposits, atomic transfers."""

from __future__ import annotations

import asyncio
import random

from rich.markup import escape

from eventkit import ConcurrencyError, Repository
from samples.bank.domain import Account, Customer, InsufficientFunds
from samples.bank.tour.narration import Narration
from samples.bank.tour.script import DEPOSIT, PEOPLE, TRANSFERS, WRITERS


class Writes(Narration):
    """Steps 2-4."""

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
