"""A Node service (nats.js, as under the NestJS transport) verifies the hash chains eventkit wrote,
from docs/wire-format.md alone; and a body changed behind eventkit's back fails it there too.
The Node side is ``tests/interop/verify_chain.mjs``."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from eventkit import Event
from eventkit.store.base import Write
from eventkit.store.jetstream import JetStreamEventStore

pytestmark = [pytest.mark.nats]

INTEROP = Path(__file__).resolve().parents[1] / "interop"


class InteropNoted(Event):
    text: str
    amount: float


@pytest.fixture(scope="module")
def verifier() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "Node.js and npm are needed for the nats.js interop test"
    if not (INTEROP / "node_modules" / "nats" / "package.json").exists():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=INTEROP,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"npm ci failed in {INTEROP}: {done.stderr}"
    return INTEROP / "verify_chain.mjs"


def run_node(script: Path, url: str, stream: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(
        [node, str(script), url, stream], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def test_a_node_service_verifies_the_chains_eventkit_wrote(
    nats_url: str, verifier: Path
) -> None:
    stream = f"chi{uuid.uuid4().hex[:8]}"
    store = await JetStreamEventStore.connect(nats_url, stream=stream)
    try:
        a, b = f"{stream}.ledger.a", f"{stream}.ledger.b"
        await store.append(
            a, [InteropNoted(text="grüße, ünïcode", amount=1.5)], expected_sequence=0
        )
        await store.append(a, [InteropNoted(text='quotes " and \\n', amount=2)])
        await store.append_many(
            [
                Write(a, [InteropNoted(text="x", amount=3), InteropNoted(text="y", amount=4)]),
                Write(b, [InteropNoted(text="z", amount=5)]),
            ]
        )
        await store.delete(2)  # forget --seq: the rest still verifies
        await store.append(a, [InteropNoted(text="after", amount=6)])
        await store.mark_forgotten(b)
        await store.js.publish(f"{stream}.orders.o-1", b'{"total": 1}')  # foreign: outside
        result = run_node(verifier, nats_url, stream)
        assert result == {"chained": 6, "outside": 1, "erased": 1, "problems": []}

        # a message that claims to follow the head of ``a`` but whose bytes are not the ones
        # its link was made of (a body rewritten behind eventkit's back)
        head = await store.get(7)
        assert head is not None and b"after" in head.data
        forged = {k: v for k, v in head.headers.items() if not k.startswith("Nats-Expected")}
        forged["Eventkit-Chain-Prev"] = head.headers["Eventkit-Chain"]
        forged["Nats-Msg-Id"] = "forged-1"
        await store.js.publish(a, head.data.replace(b"after", b"AFTER"), headers=forged)
        result = run_node(verifier, nats_url, stream)
        assert result["problems"] == [{"subject": a, "seq": 10, "what": "content"}]
    finally:
        await store.js.delete_stream(stream)
        await store.close()
