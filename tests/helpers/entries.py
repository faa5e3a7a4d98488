"""Helpers of the entry-control tests (``integration/test_entry_control_redis.py``,
``integration/test_refresh_set.py``): caches on one Redis, one function decorated on each, sync
or async, and a wait for an invalidation to reach another cache."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import tta_cache as tc

from .caches import aclose_all

MODES = ("sync", "async")
WAIT = 10.0  # seconds a test waits for something that should happen at once (never asserted)


class Clock:
    """A clock the tests move (entries are judged by it; Redis keeps them by its own)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


Make = Callable[..., tc.Cache]


async def caches(redis_url: str) -> AsyncIterator[Make]:
    """Caches on the test's Redis, in one namespace, their channels up; all closed."""
    made: list[tc.Cache] = []

    def factory(**options: Any) -> tc.Cache:
        options = {"jitter": 0.0, "beta": 0.0, "health_check_interval": 0, **options}
        cache = tc.Cache(redis_url, namespace="entry", **options)
        assert cache.wait_ready(WAIT)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        await cache.engine.await_refreshes(WAIT)
    await aclose_all(made)


def decorate(
    cache: tc.Cache, mode: str, body: Callable[[str], Any], **options: Any
) -> tuple[Any, list[str]]:
    """``body`` cached on ``cache`` (the same key on every cache); the list records each run."""
    calls: list[str] = []

    if mode == "sync":

        @cache.cached(tags=("user:{user_id}",), **options)
        def load(user_id: str) -> Any:
            calls.append(user_id)
            return body(user_id)

        return load, calls

    @cache.cached(tags=("user:{user_id}",), **options)
    async def load(user_id: str) -> Any:  # the same qualname: the same key
        calls.append(user_id)
        return body(user_id)

    return load, calls


async def call(f: Any, *args: Any) -> Any:
    result = f(*args)
    return await result if inspect.isawaitable(result) else result


def applied(cache: tc.Cache, source: tc.Cache, tag: str) -> None:
    """Wait until ``cache``'s tag map holds ``source``'s version of ``tag`` (the message was
    applied: I2's part, not what these tests are about)."""
    want = source.engine.versions.get(tag)
    deadline = time.monotonic() + WAIT
    while cache.engine.versions.get(tag) != want:
        assert time.monotonic() < deadline, "the invalidation never reached the other cache"
        time.sleep(0.002)


def profile(cache: tc.Cache, calls: list[str]) -> Any:
    """A function with the same key in every process that defines it through here."""

    @cache.cached(tags=("user:{user_id}",))
    def load(user_id: str) -> str:
        calls.append(user_id)
        entry = tc.current_entry()
        assert entry is not None
        if user_id.startswith("skip"):
            entry.skip()
        return "computed"

    return load


def read_in_child(url: str, user_ids: list[str], out: Any) -> None:
    """In a spawned process: read ``user_ids`` through :func:`profile` and put back
    ``[(value, computed)]``."""
    cache = tc.Cache(url, namespace="entry", health_check_interval=0)
    try:
        assert cache.wait_ready(WAIT)
        calls: list[str] = []
        load = profile(cache, calls)
        got = []
        for user_id in user_ids:
            before = len(calls)
            got.append((load(user_id), len(calls) > before))
        out.put(got)
    finally:
        cache.close()
