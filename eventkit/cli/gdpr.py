"""``eventkit forget``: GDPR erasure of a subject, a pattern of subjects, or one message."""

from __future__ import annotations

import asyncio
from typing import Any

import typer
from rich.markup import escape

from eventkit.cli.context import (
    EXIT_ERROR,
    EXIT_USAGE,
    connected,
    console,
    err_console,
    fail,
    run,
    state,
)
from eventkit.cli.main import app
from eventkit.gdpr.forget import (
    ForgetReport,
    MessageForgetReport,
    forget_message,
    forget_pattern,
    forget_subject,
    replay_command,
)
from eventkit.store.subjects import is_wildcard, validate_filter, validate_subject


@app.command("forget")
def forget_command(
    ctx: typer.Context,
    subject: str | None = typer.Argument(
        None, help="The subject to erase, e.g. bank.customer.c-1 (a wildcard needs --pattern)."
    ),
    seq: int | None = typer.Option(
        None, "--seq", min=1, help="Erase only the message at this stream sequence."
    ),
    pattern: bool = typer.Option(
        False, "--pattern", help="SUBJECT is a wildcard filter: erase every subject it matches."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would go; erase nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before erasing."),
) -> None:
    """Erase a subject for good (GDPR): its events, snapshots, key and read-model rows.

    It shows what goes and asks first (--yes: do not ask). A subject that was never stored exits
    with 1 (check its spelling); one forgotten already says so and exits with 0. --pattern
    erases every subject a wildcard matches; --seq N erases one message.

    Examples:

      eventkit --app samples.bank.app:app forget bank.customer.c-1 --dry-run

      eventkit --app samples.bank.app:app forget bank.customer.c-1 --yes

      eventkit --app samples.bank.app:app forget 'bank.customer.*' --pattern --yes

      eventkit --app samples.bank.app:app forget --seq 42
    """
    st = state(ctx)
    if seq is not None:
        if subject is not None or pattern:
            fail("give either SUBJECT or --seq N, not both", EXIT_USAGE)
        report = run(_forget_seq(st, seq, dry_run))
        _print_message(report, st.app_target)
        return
    if subject is None:
        fail("give the SUBJECT to forget (or --seq N for one message)", EXIT_USAGE)
    if is_wildcard(subject) and not pattern:
        fail(
            f"{subject!r} is a wildcard: pass --pattern to forget every subject it matches "
            f"(you will see the count first)",
            EXIT_USAGE,
        )
    if pattern:
        validate_filter(subject)
        reports = run(_forget_pattern(st, subject, dry_run, yes))
        if not reports:
            console.print(
                f"no subject with events matches {subject}; nothing to forget", markup=False
            )
        for i, r in enumerate(reports):
            _print_subject(r, caveats=i == len(reports) - 1)
        return
    validate_subject(subject)
    one = run(_forget_one(st, subject, dry_run, yes))
    _print_subject(one)
    if _never_seen(one):
        raise typer.Exit(EXIT_ERROR)


def _never_seen(r: ForgetReport) -> bool:
    """Nothing stored and no trace of an earlier forget (erasure marker, audit entry, key)."""
    return (
        r.nothing
        and not r.already_forgotten
        and r.previously_finished is None
        and r.key != "already shredded"
    )


async def _forget_one(st: Any, subject: str, dry_run: bool, yes: bool) -> ForgetReport:
    the_app = st.app()
    async with connected(st, the_app) as (store, engine):
        if not dry_run and not yes:
            preview = await forget_subject(the_app, store, engine, subject, dry_run=True)
            if preview.nothing:
                return preview
            _print_subject(preview, caveats=False)
            if not await asyncio.to_thread(_confirm_one, subject):
                fail("nothing erased (answer y, or pass --yes)")
        return await forget_subject(the_app, store, engine, subject, dry_run=dry_run)


def _confirm_one(subject: str) -> bool:
    try:
        return typer.confirm(f"Erase {subject} for good?", default=False)
    except typer.Abort:
        return False


async def _forget_pattern(st: Any, pattern: str, dry_run: bool, yes: bool) -> list[ForgetReport]:
    def approve(counts: dict[str, int]) -> bool:
        console.print(
            f"{pattern} matches {len(counts)} subject(s) with {sum(counts.values())} message(s) "
            f"in total",
            markup=False,
        )
        if not dry_run and not yes and not _confirm(len(counts)):
            fail("nothing erased (answer y, or pass --yes)")
        return True

    the_app = st.app()
    async with connected(st, the_app) as (store, engine):
        return await forget_pattern(
            the_app, store, engine, pattern, dry_run=dry_run, confirm=approve
        )


def _confirm(n: int) -> bool:
    try:
        return typer.confirm(f"Erase all {n} subject(s) for good?", default=False)
    except typer.Abort:
        return False


async def _forget_seq(st: Any, seq: int, dry_run: bool) -> MessageForgetReport:
    the_app = st.app()
    async with connected(st, the_app) as (store, engine):
        return await forget_message(the_app, store, engine, seq, dry_run=dry_run)


def _print_subject(r: ForgetReport, *, caveats: bool = True) -> None:
    if r.nothing:
        if _never_seen(r):
            err_console.print(
                f"error: {r.subject} was never stored in stream {r.stream} (no events, snapshot, "
                f"key or earlier forget): check the subject's spelling; nothing erased",
                highlight=False,
                markup=False,
            )
            return
        done = f" on {r.previously_finished:%Y-%m-%d %H:%M} UTC" if r.previously_finished else ""
        console.print(
            f"{r.subject} was forgotten already{done}: nothing is left to erase",
            highlight=False,
            markup=False,
        )
        return
    verb = "would erase" if r.dry_run else "erased"
    head = "dry run: " if r.dry_run else ""
    console.print(
        f"{head}{r.subject}{' (resumed)' if r.resumed else ''}", highlight=False, markup=False
    )
    console.print(
        f"  messages {verb}:  {r.messages} (secure erase, one by one)",
        highlight=False,
        markup=False,
    )
    console.print(f"  snapshots {verb}: {r.snapshots}", highlight=False, markup=False)
    key = {"active": "would be shredded", "none": "none (not a personal-data subject)"}.get(
        r.key, r.key
    )
    console.print(f"  data key:         {key}", highlight=False, markup=False)
    names = ", ".join(r.projectors) or "none"
    console.print(f"  read models:      {names}", highlight=False, markup=False)
    if r.projectors_without_forget:
        without = ", ".join(r.projectors_without_forget)
        console.print(
            f"  [yellow]projectors without forget(): {escape(without)}"
            f"[/] (rows they derived from this subject are NOT removed: implement forget)",
            highlight=False,
        )
    if r.dead_letters:
        console.print(f"  dead letters {verb}: {r.dead_letters}", highlight=False, markup=False)
    if r.deadlines:
        console.print(f"  deadlines {verb}:  {r.deadlines}", highlight=False, markup=False)
    if r.joined:
        console.print(
            "  audit:            joined a forget of this subject that ran at the same time; "
            "its audit entry covers both (one entry per erasure)",
            highlight=False,
            markup=False,
        )
    if r.notice_sequence is not None:
        console.print(
            f"  notice for other services: seq {r.notice_sequence}", highlight=False, markup=False
        )
    if not r.dry_run:
        console.print(
            f"  audit entry:      HMAC {r.subject_hmac[:16]}...", highlight=False, markup=False
        )
    if caveats:
        _print_caveats(r)


def _print_caveats(r: ForgetReport) -> None:
    console.print("  eventkit cannot erase:", highlight=False)
    for item in r.cannot_erase:
        console.print(f"    - {item}", highlight=False, markup=False)
    console.print(f"  covered by: {r.covered_by}", highlight=False, markup=False)


def _print_message(r: MessageForgetReport, app_target: str | None) -> None:
    if not r.found:
        console.print(
            f"no message at sequence {r.sequence} in stream {r.stream} (already erased or "
            f"never written); nothing to erase",
            highlight=False,
        )
        return
    verb = "would erase" if r.dry_run else ("erased" if r.erased else "already gone")
    console.print(f"sequence {r.sequence} on {r.subject}: {verb}", highlight=False, markup=False)
    if r.stale_projectors:
        console.print("  read models that already applied it (rebuild them to drop its effect):")
        for name in r.stale_projectors:
            console.print(
                f"    {name}: {replay_command(name, app_target)}", highlight=False, markup=False
            )
    else:
        console.print("  no read model has applied it yet", highlight=False)
