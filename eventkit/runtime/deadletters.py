"""One dead-letter model for every worker kind.

A dead letter is an event a worker gave up on: a projector with ``on_error = "park"`` after its
retries, a reactor after ``max_deliver`` failed deliveries (or a worker death during the last
one). Both kinds are listed, shown, retried, counted and erased through this one model: the
same fields (:class:`DeadLetter`, ``as_dict`` for ``--json``), the same commands
(``eventkit dlq list/retry``), the same erasure (:meth:`DeadLetterStore.forget`), the same
metric (``parked``).

Where the letters live follows what each kind guarantees:

- a projector parks an event in the SQL transaction that moves its checkpoint past it, so the
  read model and the letter can never disagree: its letters are rows of ``eventkit_dead_letters``
  (:mod:`eventkit.projection.deadletters`);
- a reactor needs no SQL: its letters are entries of a JetStream key-value bucket
  (:class:`eventkit.runtime.parked.ParkedLetters`), or of :class:`MemoryParked` over an
  in-memory store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

Kind = Literal["projector", "reactor"]

REDACTED = "the error quoted data of a forgotten subject and was erased"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One parked event of worker ``name`` (a projector's slot or a reactor): its stream
    ``sequence`` and ``subject``, why and after how many attempts it was parked."""

    name: str
    sequence: int
    subject: str
    event_type: str
    error: str
    attempts: int
    parked_at: datetime
    kind: Kind = "reactor"
    number: int | None = None
    """A projector's letter: its row id."""
    resolved_at: datetime | None = None

    @property
    def id(self) -> str:
        """How ``eventkit dlq retry`` names it: a projector's row id, ``<reactor>:<sequence>``."""
        if self.kind == "projector":
            return str(self.number)
        return f"{self.name}:{self.sequence}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "sequence": self.sequence,
            "subject": self.subject,
            "event_type": self.event_type,
            "error": self.error,
            "attempts": self.attempts,
            "parked_at": self.parked_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
        }


class DeadLetterStore(Protocol):
    """Where one worker kind keeps its letters (the reactors' key-value bucket)."""

    async def park(self, letter: DeadLetter) -> None: ...

    async def get(self, name: str, sequence: int) -> DeadLetter | None: ...

    async def list(self, name: str | None = None) -> list[DeadLetter]: ...

    async def remove(self, name: str, sequence: int) -> None: ...

    async def forget(self, subject: str) -> int:
        """Erase every letter of ``subject`` (unrecoverably) and redact the errors of other
        letters that quote it; the letters erased."""
        ...


def quotes(letter: DeadLetter, subject: str) -> bool:
    """Whether the letter's error text names ``subject``."""
    return subject in letter.error


def redacted(letter: DeadLetter) -> DeadLetter:
    return DeadLetter(
        letter.name,
        letter.sequence,
        letter.subject,
        letter.event_type,
        REDACTED,
        letter.attempts,
        letter.parked_at,
        letter.kind,
        letter.number,
        letter.resolved_at,
    )


class MemoryParked:
    """Reactor letters of an in-memory store (``ReactorScenario``, users' unit tests)."""

    def __init__(self) -> None:
        self.letters: dict[tuple[str, int], DeadLetter] = {}

    async def park(self, letter: DeadLetter) -> None:
        self.letters[(letter.name, letter.sequence)] = letter

    async def get(self, name: str, sequence: int) -> DeadLetter | None:
        return self.letters.get((name, sequence))

    async def list(self, name: str | None = None) -> list[DeadLetter]:
        return sorted(
            (x for x in self.letters.values() if name is None or x.name == name),
            key=lambda x: (x.name, x.sequence),
        )

    async def remove(self, name: str, sequence: int) -> None:
        self.letters.pop((name, sequence), None)

    async def forget(self, subject: str) -> int:
        gone = [k for k, x in self.letters.items() if x.subject == subject]
        for k in gone:
            del self.letters[k]
        for k, x in list(self.letters.items()):
            if quotes(x, subject):
                self.letters[k] = redacted(x)
        return len(gone)


def now() -> datetime:
    return datetime.now(UTC)


__all__ = [
    "REDACTED",
    "DeadLetter",
    "DeadLetterStore",
    "Kind",
    "MemoryParked",
    "now",
    "quotes",
    "redacted",
]
