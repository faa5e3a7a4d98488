"""Closing caches from async tests."""

from __future__ import annotations

from collections.abc import Iterable

import tta_cache as tc


async def aclose_all(caches: Iterable[tc.Cache]) -> None:
    """``aclose()`` each cache on the test's event loop (its pool and connections with it)."""
    for cache in caches:
        await cache.aclose()
