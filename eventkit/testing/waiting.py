"""Waiting on a condition with a deadline: what a test does instead of sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``condition`` (state owned by another task or process) until it is true (True) or
    ``timeout`` seconds have passed (False).

    Example: ``assert await wait_until(lambda: len(seen) == 3, 10)``
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


__all__ = ["wait_until"]
