"""The tour's GDPR step: forget a customer, and what is left."""

from __future__ import annotations

from rich.markup import escape

from eventkit import AggregateNotFound, ForgottenError, Repository
from eventkit.gdpr.forget import forget_subject
from eventkit.projection.sql import transaction
from eventkit.store.erasure import is_marker
from samples.bank.app import app as bank_app
from samples.bank.domain import Customer
from samples.bank.tour.narration import Narration
from samples.bank.tour.script import FORGET


class Erasure(Narration):
    """The forget step."""

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
