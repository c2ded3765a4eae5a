"""The bank's reactor: a review of every large withdrawal, escalated when its deadline passes.

``LargeWithdrawals`` opens a review (an event on ``bank.review.<account>``) for each withdrawal
of ``threshold`` or more and sets a deadline; when the deadline arrives and the review is still
open, it escalates it. Run by ``eventkit run``: each account's events in order (``ordered =
"subject"``), spread over 4 partitions that the workers running it share.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from eventkit import Event, Reactor, ReactorContext, RecordedEvent, on
from samples.bank.domain import MoneyWithdrawn


class ReviewOpened(Event):
    account: str
    amount: int


class ReviewDue(Event):
    account: str


class ReviewEscalated(Event):
    account: str


class LargeWithdrawals(Reactor):
    name = "large-withdrawals"
    subjects: ClassVar[list[str]] = ["bank.account.*"]
    ordered = "subject"  # an account's withdrawals reviewed in order...
    partitions = 4  # ...by several workers, each holding a share of the accounts
    max_deliver = 5
    backoff: ClassVar[list[float]] = [1.0, 5.0, 30.0]
    threshold: ClassVar[int] = 10_000
    review_after: ClassVar[timedelta] = timedelta(hours=1)

    @on(MoneyWithdrawn)
    async def withdrawn(
        self, e: MoneyWithdrawn, rec: RecordedEvent[Any], ctx: ReactorContext
    ) -> None:
        if e.amount < self.threshold:
            return
        subject = f"bank.review.{rec.entity_id}"
        await ctx.append(subject, [ReviewOpened(account=rec.entity_id, amount=e.amount)])
        await ctx.schedule(ReviewDue(account=rec.entity_id), after=self.review_after)

    @on(ReviewDue)
    async def due(self, e: ReviewDue, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        history = await ctx.store.read(f"bank.review.{e.account}")
        if history and isinstance(history[-1].event, ReviewOpened):
            await ctx.append(f"bank.review.{e.account}", [ReviewEscalated(account=e.account)])
