"""Parked events (``on_error = "park"``): list them and re-apply them in order.

::

    for outcome in await retry_dead_letters(app.projectors, store, engine, all_open=True):
        print(outcome.letter.id, outcome.ok, outcome.error)

A letter belongs to the slot of the version that parked it (``balances``, ``balances_v2``: see
:mod:`eventkit.projection.bluegreen`): a projector's name lists the letters of all its versions,
and a letter is retried by the version that parked it, into the table that version writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from eventkit.errors import ConfigError, EventkitError
from eventkit.projection import checkpoints
from eventkit.projection import letters as letter_rows
from eventkit.projection.deployment import deployed, slots
from eventkit.projection.projector import Projector
from eventkit.projection.registry import slot_name
from eventkit.projection.sql import read_transaction, transaction
from eventkit.runtime.deadletters import DeadLetter
from eventkit.store.wire_constants import ENCRYPTION


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    letter: letter_rows.DeadLetter
    ok: bool
    error: str | None = None


def as_dead_letter(d: letter_rows.DeadLetter) -> DeadLetter:
    """A projector's letter in the one dead-letter model of every worker kind."""
    return DeadLetter(
        d.projector,
        d.sequence,
        d.subject,
        d.event_type,
        d.error,
        d.attempts,
        d.parked_at,
        "projector",
        d.id,
        d.resolved_at,
    )


def list_dead_letters(
    engine: Engine, projector: str | None = None, *, include_resolved: bool = False
) -> list[letter_rows.DeadLetter]:
    """Unresolved parked events, by projector then sequence; ``projector`` names a projector
    (the letters of every version of it) or one version's slot (``balances_v2``)."""
    with read_transaction(engine) as db:
        letters = letter_rows.list_dead_letters(db, None, include_resolved=include_resolved)
    if projector is None:
        return letters
    return [d for d in letters if d.projector == projector or _slot_of(d.projector, projector)]


def _slot_of(slot: str, projector: str) -> bool:
    """Whether ``slot`` is a version's slot of ``projector`` (``<projector>_v<N>``)."""
    head, sep, version = slot.rpartition("_v")
    return bool(sep) and head == projector and version.isdigit()


def _by_slot(projectors: Sequence[Projector], engine: Engine) -> dict[str, Projector | str]:
    """Each slot the projectors' versions run in: the projector that applies its letters (as
    its runner deploys it), or why none here can (the slot of another version)."""
    out: dict[str, Projector | str] = {}
    for pr in projectors:
        with read_transaction(engine) as db:
            known = slots(pr, db)
        try:
            mine: Projector | str = deployed(pr, engine)
        except EventkitError as e:
            mine = str(e)
        for s in known:
            if s.slot == slot_name(pr.name, getattr(pr, "version", 1)):
                out[s.slot] = mine
            else:
                out[s.slot] = (
                    f"parked by version {s.version} of {pr.name!r}, this code is version "
                    f"{getattr(pr, 'version', 1)}: retry it from a deployment of version "
                    f"{s.version}, or let the switch to the new version drop it"
                )
    return out


async def retry_dead_letters(
    projectors: Sequence[Projector],
    store: Any,
    engine: Engine,
    *,
    letter_id: int | None = None,
    all_open: bool = False,
) -> list[RetryOutcome]:
    """Re-apply one parked event (``letter_id``) or every open one (``all_open``), in order.

    Each success sets ``resolved_at`` in the same transaction as the handler's writes; the first
    failure of a projector records the error and leaves its later letters parked.
    """
    if (letter_id is None) == (not all_open):
        raise ConfigError("give a dead letter ID or --all")
    by_name = _by_slot(projectors, engine)
    if letter_id is not None:
        with read_transaction(engine) as db:
            letter = letter_rows.get_dead_letter(db, letter_id)
        if letter is None:
            raise ConfigError(f"no dead letter with id {letter_id} (see: eventkit dlq list)")
        if letter.resolved_at is not None:
            raise ConfigError(f"dead letter {letter_id} was already resolved")
        letters = [letter]
    else:
        letters = list_dead_letters(engine)
    failed: set[str] = set()
    out: list[RetryOutcome] = []
    for letter in letters:
        projector = by_name.get(letter.projector)
        if projector is None:
            out.append(RetryOutcome(letter, False, f"no projector {letter.projector!r} in app"))
            continue
        if isinstance(projector, str):
            out.append(RetryOutcome(letter, False, projector))
            continue
        if letter.projector in failed:
            out.append(RetryOutcome(letter, False, "skipped: an earlier letter failed"))
            continue
        error = await _retry_one(projector, store, engine, letter)
        if error is not None:
            failed.add(letter.projector)
        out.append(RetryOutcome(letter, error is None, error))
    return out


async def _retry_one(
    projector: Projector, store: Any, engine: Engine, letter: letter_rows.DeadLetter
) -> str | None:
    stored = await store.get(letter.sequence)
    error: str | None = None
    if stored is None:
        error = f"sequence {letter.sequence} is no longer in the stream"
    else:
        cipher = store.codec.cipher
        if cipher is not None and ENCRYPTION in stored.headers:
            try:
                await cipher.prepare([stored.subject], create=False)
            except EventkitError as e:
                error = str(e)
    if error is None and stored is not None:

        def apply() -> None:
            with transaction(engine) as db:
                # first: wait for the runner's batch in flight, tell it its rows change
                checkpoints.touch_rows(db, projector.name)
                # claimed before applying: a concurrent retry of the same letter finds it
                # resolved and applies nothing
                if letter_rows.resolve_dead_letter(db, letter.id):
                    projector.apply(store.codec.decode(stored), db)

        try:
            await asyncio.to_thread(apply)
            return None
        except Exception as e:
            error = f"{type(e).__name__}: {e}"

    def record() -> None:
        with transaction(engine) as db:
            letter_rows.record_retry_failure(db, letter.id, error or "")

    await asyncio.to_thread(record)
    return error


__all__ = ["RetryOutcome", "as_dead_letter", "list_dead_letters", "retry_dead_letters"]
