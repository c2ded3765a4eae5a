"""Partitions: which worker applies which events of one projector or reactor.

An event's partition is ``fnv1a_32(key) % N``: FNV-1a, 32 bits, over the UTF-8 bytes of its key.
The default key is the event's subject without the stream name, its tokens joined with nothing
(``bank.account.a-1`` -> ``"accounta-1"``): the same number NATS computes for the subject
mapping ``{{partition(N,2,3)}}`` on ``<stream>.<type>.<id>``, and that any client computes in a
few lines (Node: ``h = 0x811c9dc5; for (b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0``)::

    partition_of("accounta-1", 16)        # 0..15
    default_key("bank.account.a-1")       # "accounta-1"

Which live worker owns a partition is rendezvous hashing (highest random weight, with bounded
loads) over the live workers' ids: every worker computes the same owners from the same member
list, the shares are even, and a worker that joins or leaves moves few partitions
(:func:`assign`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Final

from eventkit.errors import ConfigError

MAX_PARTITIONS: Final = 1024
"""More partitions than this is a misunderstanding (a partition is a lease and a checkpoint row
each, renewed by its owner): 16-64 give room to grow to as many workers."""

_OFFSET: Final = 0x811C9DC5
_PRIME: Final = 0x01000193


def fnv1a_32(data: bytes) -> int:
    """FNV-1a, 32 bits (the hash of NATS's ``partition()`` subject mapping)."""
    h = _OFFSET
    for b in data:
        h = ((h ^ b) * _PRIME) & 0xFFFFFFFF
    return h


def default_key(subject: str) -> str:
    """The partition key of a subject: its tokens after the stream name, joined with nothing."""
    _, _, rest = subject.partition(".")
    return rest.replace(".", "")


def partition_of(key: str, partitions: int) -> int:
    """The partition (0..partitions-1) of a key."""
    if partitions <= 1:
        return 0
    return fnv1a_32(key.encode("utf-8", "surrogatepass")) % partitions


def check_partitions(owner: str, value: Any) -> int:
    """Validate a class's ``partitions`` option (a whole number 1..:data:`MAX_PARTITIONS`)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARTITIONS:
        raise ConfigError(
            f"{owner}.partitions must be a whole number from 1 to {MAX_PARTITIONS} (events of one "
            f"entity always land in one partition; 1 = not partitioned), got {value!r}"
        )
    return value


def _weight(member: str, partition: int) -> bytes:
    return hashlib.blake2b(f"{member}/{partition}".encode(), digest_size=8).digest()


def assign(partitions: int, members: Iterable[str]) -> dict[int, str]:
    """Every partition's owner among ``members`` (empty when there are none).

    Rendezvous hashing with bounded loads: each partition goes to the member it ranks highest
    that still has room, every member holding ``partitions // members`` or one more, so the
    shares are even (the slowest worker bounds a catch-up; a bound of ``ceil`` alone could
    leave a member with none: 2/2/0 for 4 over 3) and a member that joins or leaves moves few
    partitions.
    """
    ms = sorted(set(members))
    if not ms:
        return {}
    base, extra = divmod(partitions, len(ms))
    load = dict.fromkeys(ms, 0)
    above = 0  # members holding base + 1 (at most ``extra`` of them)
    out: dict[int, str] = {}
    for p in range(partitions):
        ranked = sorted(ms, key=lambda m: _weight(m, p), reverse=True)
        owner = next(m for m in ranked if load[m] < base or (load[m] == base and above < extra))
        above += load[owner] == base
        load[owner] += 1
        out[p] = owner
    return out


def owned_by(member: str, partitions: int, members: Iterable[str]) -> set[int]:
    """The partitions ``member`` owns when ``members`` (which should include it) are live."""
    ms = set(members) | {member}
    return {p for p, m in assign(partitions, ms).items() if m == member}


__all__ = [
    "MAX_PARTITIONS",
    "assign",
    "check_partitions",
    "default_key",
    "fnv1a_32",
    "owned_by",
    "partition_of",
]
