"""Waiting on a condition in a test: polled, with a deadline, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable

import tta_cache as tc


def eventually(check: Callable[[], object], timeout: float = 15.0) -> bool:
    """Whether ``check()`` became true within ``timeout`` seconds (polled every 10 ms)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def reconnected(cache: tc.Cache, before: int) -> Callable[[], bool]:
    """A check: ``cache``'s channel has reconnected since it counted ``before`` and is up."""

    def done() -> bool:
        channel = cache.stats()["channel"]
        return bool(channel["reconnects"] > before and channel["channel"] == "up")

    return done
