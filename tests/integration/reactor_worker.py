"""A reactor worker process the reactor tests start, spread work over and SIGKILL.

Run as a script::

    python tests/integration/reactor_worker.py --nats-url URL --stream S --activity FILE \
        [--kill-after-output N] [--slow 0.002] [--once]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eventkit import App, Event, JetStreamEventStore, Reactor, ReactorContext, RecordedEvent, on
from eventkit.reaction import ReactorRunner


class RwJob(Event):
    n: int


class RwDone(Event):
    n: int


class Jobs(Reactor):
    name = "jobs"
    ack_wait = 2.0
    backoff: ClassVar[list[float]] = [0.1]
    max_deliver = 20
    concurrency = 8
    kill_after: ClassVar[int] = 0
    slow: ClassVar[float] = 0.0
    activity: ClassVar[Any] = None
    handled: ClassVar[int] = 0

    @on(RwJob)
    async def job(self, e: RwJob, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        if Jobs.slow:
            await asyncio.sleep(Jobs.slow)
        await ctx.append(f"{ctx.store.stream}.done.{e.n % 10}", [RwDone(n=e.n)])
        Jobs.handled += 1
        if Jobs.activity is not None:
            Jobs.activity.write(f"{rec.sequence}\n")
            Jobs.activity.flush()
        if Jobs.kill_after and Jobs.handled >= Jobs.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # the output is stored, the ack never sent


class Flaky(Reactor):
    """Fails on job 1 while RW_BROKEN is set (the CLI tests)."""

    name = "flaky"
    max_deliver = 2
    backoff: ClassVar[list[float]] = [0.05]

    @on(RwJob)
    async def job(self, e: RwJob, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        if e.n == 1 and os.environ.get("RW_BROKEN"):
            raise RuntimeError("job 1 is broken")
        await ctx.append(f"{ctx.store.stream}.done.{e.n}", [RwDone(n=e.n)])


APP = App(stream=os.environ.get("RW_STREAM", "rw"), reactors=[Flaky()])


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nats-url", required=True)
    ap.add_argument("--stream", required=True)
    ap.add_argument("--activity")
    ap.add_argument("--kill-after-output", type=int, default=0)
    ap.add_argument("--slow", type=float, default=0.0)
    ap.add_argument("--once", action="store_true")
    args = ap.parse_args()
    Jobs.kill_after = args.kill_after_output
    Jobs.slow = args.slow
    if args.activity:
        Jobs.activity = open(args.activity, "a")  # noqa: SIM115, ASYNC230
    store = await JetStreamEventStore.connect(args.nats_url, stream=args.stream)
    runner = ReactorRunner(Jobs(), store)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, runner.stop)
    print("ready", flush=True)
    if args.once:
        await runner.catch_up()
    else:
        await runner.run()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
