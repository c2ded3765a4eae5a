"""The tour's reactor step: large withdrawals reviewed, with a deadline."""

from __future__ import annotations

from eventkit import Repository
from samples.bank.domain import Account
from samples.bank.tour.narration import Narration


class Reactions(Narration):
    """The reactor step."""

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
