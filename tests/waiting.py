"""Waiting in tests for what another task or process does a moment later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def settled(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Wait until predicate() holds; False if it still does not after `timeout` seconds (generous by default:
    a loaded 2-core CI is slow, and a condition that holds returns at once)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
