"""``eventkit verify``: scan subjects for broken chains, compare with what the last verification
saw (reused sequences), and compare the copies each replica holds.

Example::

    report = await verify_history(store)              # every subject of the stream
    report.ok, report.problems                       # Problem(subject, sequence, kind, what)
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from eventkit.store.chain import ChainCheck, ErasedLink, Problem, erased_link_of
from eventkit.store.records import StoredMessage
from eventkit.store.subjects import subject_matches, validate_filter
from eventkit.store.wire_constants import CHAIN, MSG_ID, system_prefix

ANCHORS_AT_END = 16
"""The last messages of a full scan remembered, to see the next time whether they still hold:
a stream that lost its tail and reused the sequences holds other messages there."""
ANCHOR_EVERY = 4096
ANCHORS_SPREAD = 48

Progress = Callable[[int, int], None]
"""Called as ``progress(sequence, last_sequence)`` while scanning."""


class Scannable(Protocol):
    stream: str

    def read_raw(
        self, subject: str | None = None, from_sequence: int = 1
    ) -> AsyncIterator[StoredMessage]: ...

    async def last_sequence(self, subject: str | None = None) -> int: ...

    async def get(self, sequence: int) -> StoredMessage | None: ...


@dataclass
class VerifyReport:
    """What a verification found; ``ok`` when no problem was found."""

    stream: str
    scope: str
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_sequence: int = 0
    messages: int = 0
    subjects: int = 0
    chained: int = 0
    unchained: int = 0
    foreign: int = 0
    erased: int = 0
    problems: list[Problem] = field(default_factory=list)
    nodes: dict[str, dict[str, int]] = field(default_factory=dict)
    unchecked_nodes: list[str] = field(default_factory=list)
    previous: dict[str, Any] | None = None
    anchors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["started"] = self.started.isoformat()
        out["ok"] = self.ok
        out.pop("anchors")
        if self.previous is not None:
            out["previous"] = {k: v for k, v in self.previous.items() if k != "anchors"}
        return out

    def record(self) -> dict[str, Any]:
        """What is kept of a full verification for the next one (and ``eventkit status``)."""
        return {
            "time": self.started.isoformat(),
            "ok": self.ok,
            "problems": len(self.problems),
            "messages": self.messages,
            "subjects": self.subjects,
            "unchained": self.unchained,
            "last_sequence": self.last_sequence,
            "anchors": self.anchors,
        }


def erased_by_subject(stream: str, records: Iterable[StoredMessage]) -> dict[str, list[ErasedLink]]:
    """The erased-message records (``<stream>._eventkit.erased.<rest>``) per original subject."""
    prefix = f"{system_prefix(stream)}erased."
    out: dict[str, list[ErasedLink]] = {}
    for m in records:
        record = erased_link_of(m.headers)
        if record is not None and m.subject.startswith(prefix):
            out.setdefault(f"{stream}.{m.subject[len(prefix) :]}", []).append(record)
    return out


async def verify_history(
    store: Scannable, subject: str | None = None, progress: Progress | None = None
) -> VerifyReport:
    """Check every chain of ``subject`` (a subject or filter; None: the whole stream) as the
    store serves it. A whole-stream check also compares the sequences the last one saw."""
    stream = store.stream
    scope = validate_filter(subject, stream) if subject is not None else f"{stream}.>"
    report = VerifyReport(stream=stream, scope=scope)
    report.last_sequence = await store.last_sequence()
    system = system_prefix(stream)
    erased_filter = f"{system}erased.{scope[len(stream) + 1 :]}"
    erased = erased_by_subject(stream, [m async for m in store.read_raw(erased_filter)])
    check = ChainCheck(erased=erased)
    tail: deque[StoredMessage] = deque(maxlen=ANCHORS_AT_END)
    spread: deque[StoredMessage] = deque(maxlen=ANCHORS_SPREAD)
    subjects: set[str] = set()
    async for m in store.read_raw(scope):
        if m.subject.startswith(system):
            continue
        report.messages += 1
        subjects.add(m.subject)
        check.check(m)
        tail.append(m)
        if m.sequence % ANCHOR_EVERY == 0:
            spread.append(m)
        if progress is not None:
            progress(m.sequence, report.last_sequence)
    report.subjects = len(subjects)
    report.chained, report.unchained = check.chained, check.unchained
    report.foreign, report.erased = check.foreign, check.bridged
    report.problems.extend(check.problems)
    if subject is None:
        seen = {m.sequence: m for m in (*spread, *tail)}
        report.anchors = [_anchor(m) for _, m in sorted(seen.items())]
    return report


def _anchor(m: StoredMessage) -> dict[str, Any]:
    return {"seq": m.sequence, "subject": m.subject, "id": m.headers.get(MSG_ID, "")}


async def check_anchors(store: Scannable, report: VerifyReport) -> None:
    """Add a ``reused`` problem for each message the last verification saw that is now another
    message, or past the stream's end (the stream lost its tail)."""
    previous = report.previous
    if not previous:
        return
    when = previous.get("time", "?")
    for a in previous.get("anchors", []):
        try:
            seq, subject, event_id = int(a["seq"]), str(a["subject"]), str(a["id"])
        except (KeyError, TypeError, ValueError):
            continue
        if seq > report.last_sequence:
            report.problems.append(
                Problem(
                    subject,
                    seq,
                    "reused",
                    f"the stream now ends at sequence {report.last_sequence}, but sequence "
                    f"{seq} held event {event_id} at the verification of {when}: the stream lost "
                    f"its tail, and its sequences will be given to new messages",
                )
            )
            continue
        m = await store.get(seq)
        if m is None:
            continue  # erased since (forget): nothing holds the sequence
        now = m.headers.get(MSG_ID, "")
        if m.subject != subject or now != event_id:
            report.problems.append(
                Problem(
                    m.subject,
                    seq,
                    "reused",
                    f"sequence {seq} now holds event {now or '(no id)'} on {m.subject}, but held "
                    f"event {event_id} on {subject} at the verification of {when}: the stream "
                    f"lost messages and gave their sequences to new ones",
                )
            )


def verify_copies(
    report: VerifyReport,
    copies: Mapping[str, Iterable[StoredMessage]],
    erased: Mapping[str, list[ErasedLink]],
) -> None:
    """Check each node's copy (``copies``: node -> its messages in order) on its own chains,
    then against the other copies: a sequence one node lacks or holds differently is named."""
    stream, scope = report.stream, report.scope
    system = system_prefix(stream)
    links: dict[str, dict[int, str]] = {}
    subjects: dict[int, str] = {}
    for node, messages in copies.items():
        check = ChainCheck(erased=erased)
        held: dict[int, str] = {}
        for m in messages:
            if m.subject.startswith(system) or not subject_matches(scope, m.subject):
                continue
            held[m.sequence] = m.headers.get(CHAIN) or m.headers.get(MSG_ID, "")
            subjects[m.sequence] = m.subject
            problem = check.check(m)
            if problem is not None:
                check.problems[-1] = Problem(
                    problem.subject, problem.sequence, problem.kind, problem.what, node
                )
        links[node] = held
        report.problems.extend(check.problems)
        last = max(held, default=0)
        report.nodes[node] = {"messages": len(held), "last_sequence": last}
    if len(links) < 2:
        return
    # past the end of the shortest copy a node may only lag (or not have flushed its last
    # writes yet): its last sequence is reported, the sequences up to there are compared
    lasts = [seen["last_sequence"] for seen in report.nodes.values()]
    end = min(lasts)
    for seen in report.nodes.values():
        seen["behind"] = max(lasts) - seen["last_sequence"]
    for seq in sorted(set().union(*(set(h) for h in links.values()))):
        if seq > end:
            break
        values = {node: held.get(seq) for node, held in links.items()}
        subject = subjects.get(seq, scope)
        common, count = Counter(v for v in values.values() if v is not None).most_common(1)[0]
        if count * 2 <= len(values) and len(set(values.values())) > 1:
            what = f"the nodes disagree on sequence {seq}, with no majority: {sorted(values)}"
            report.problems.append(Problem(subject, seq, "replica", what))
            continue
        for node, value in values.items():
            if value == common:
                continue
            others = sorted(n for n, v in values.items() if v == common)
            if value is None:
                what = f"node {node} lacks sequence {seq}, which {', '.join(others)} hold"
            else:
                what = f"node {node} holds sequence {seq} differently from {', '.join(others)}"
            report.problems.append(Problem(subject, seq, "replica", what, node))


__all__ = [
    "Progress",
    "VerifyReport",
    "check_anchors",
    "erased_by_subject",
    "verify_copies",
    "verify_history",
]
