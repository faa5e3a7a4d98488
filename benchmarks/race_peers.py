"""The stale-set race, shown deterministically for tta-cache and the peers. Report only.

A cached ``load(key)`` reads a fake database (``db = {"v": 1}``) and, on its first call only,
then blocks until an event is set. A reader calls ``load("k")`` in a thread (an asyncio task for
async libraries); once it has read ``v == 1`` the writer sets ``db["v"] = 2``, invalidates the
entry the library's own way, and lets the reader finish: its value, read before the
invalidation, reaches the cache after it. Then ``load("k")`` is called twice on the same
instance and once on a second instance on the same Redis (what another process would get).
2 is fresh; 1 is stale, served until the TTL (600 s) runs out.

- tta-cache (sync and async): ``@cache.cached(ttl=600)``, L1 on; ``load.invalidate("k")``.
  Entries are stamped with the tag versions read before computing; a fill whose versions moved
  meanwhile is refused (invariant I3 in docs/design.md).
- dogpile.cache redis region: ``@region.cache_on_arguments()``; ``load.invalidate("k")``.
- django-redis: a ``get`` / ``set`` memoizer around its backend (it has no decorator);
  ``backend.delete(key)``.
- cashews (``redis://``): ``@cache(ttl=600, key="race:{key}")``; the write is a function
  decorated with ``@cache.invalidate("race:{key}")``.
- aiocache ``RedisCache``: ``@cached(ttl=600)``; ``wrapper.cache.delete(key)`` with the key the
  decorator builds (``cached.get_cache_key``).

A peer that is not installed is skipped, one whose setup fails is dropped with a note.

    .venv/bin/python -m benchmarks.race_peers
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import redis

import tta_cache as tc

from ._harness import redis_server, run_async
from .bench_peers import TTL, Peers, dogpile_redis_region

KEY = "k"
WAIT = 5.0  # seconds any step may wait before the scenario is abandoned

Result = tuple[list[Any], Any]  # (two calls on the same instance, one on a second instance)
SyncLoad = Callable[[str], Any]
AsyncLoad = Callable[[str], Awaitable[Any]]


class SyncRace:
    """The fake database, the events and the scenario, for a sync library."""

    def __init__(self) -> None:
        self.db = {"v": 1}
        self.has_read = threading.Event()
        self.proceed = threading.Event()
        self.calls = 0

    def body(self) -> SyncLoad:
        def load(key: str) -> int:
            value = self.db["v"]
            self.calls += 1
            if self.calls == 1:
                self.has_read.set()
                if not self.proceed.wait(WAIT):
                    raise TimeoutError("proceed was never set")
            return value

        return load

    def invalidating(self, invalidate: Callable[[str], Any]) -> Callable[[str], None]:
        """The writer: update the database, then invalidate."""

        def write(key: str) -> None:
            self.db["v"] = 2
            invalidate(key)

        return write

    def run(self, load: SyncLoad, write: Callable[[str], Any], other: SyncLoad) -> Result:
        errors: list[BaseException] = []

        def read() -> None:
            try:
                load(KEY)
            except BaseException as exc:
                errors.append(exc)

        reader = threading.Thread(target=read, name="race-reader", daemon=True)
        reader.start()
        try:
            if not self.has_read.wait(WAIT):
                raise TimeoutError("the reader never read the database")
            write(KEY)
        finally:
            self.proceed.set()
            reader.join(WAIT)
        if errors:
            raise errors[0]
        if reader.is_alive():
            raise TimeoutError("the reader did not finish")
        return [load(KEY), load(KEY)], other(KEY)


class AsyncRace:
    """The same for an async library: the reader is a task, the events are asyncio's."""

    def __init__(self) -> None:
        self.db = {"v": 1}
        self.has_read = asyncio.Event()
        self.proceed = asyncio.Event()
        self.calls = 0

    def body(self) -> AsyncLoad:
        async def load(key: str) -> int:
            value = self.db["v"]
            self.calls += 1
            if self.calls == 1:
                self.has_read.set()
                await asyncio.wait_for(self.proceed.wait(), WAIT)
            return value

        return load

    def invalidating(self, invalidate: Callable[[str], Awaitable[Any]]) -> AsyncLoad:
        async def write(key: str) -> None:
            self.db["v"] = 2
            await invalidate(key)

        return write

    async def run(self, load: AsyncLoad, write: AsyncLoad, other: AsyncLoad) -> Result:
        reader = asyncio.ensure_future(load(KEY))
        try:
            await asyncio.wait_for(self.has_read.wait(), WAIT)
            await write(KEY)
        finally:
            self.proceed.set()
            await asyncio.wait_for(asyncio.shield(reader), WAIT)
        return [await load(KEY), await load(KEY)], await other(KEY)


# ---------------------------------------------------------------------- the libraries


def ours_sync(server: Any) -> Result:
    race = SyncRace()
    body = race.body()
    with (
        tc.Cache(server.url, namespace="race") as cache,
        tc.Cache(server.url, namespace="race") as second,
    ):
        if not (cache.wait_ready(10) and second.wait_ready(10)):
            raise RuntimeError("the invalidation channel did not come up")
        load = cache.cached(ttl=TTL)(body)
        other = second.cached(ttl=TTL)(body)
        return race.run(load, race.invalidating(load.invalidate), other)


async def ours_async(server: Any) -> Result:
    race = AsyncRace()
    body = race.body()
    cache = tc.Cache(server.url, namespace="race")
    second = tc.Cache(server.url, namespace="race")
    try:
        if not (cache.wait_ready(10) and second.wait_ready(10)):
            raise RuntimeError("the invalidation channel did not come up")
        load = cache.cached(ttl=TTL)(body)
        other = second.cached(ttl=TTL)(body)
        return await race.run(load, race.invalidating(load.invalidate), other)
    finally:
        await cache.aclose()
        await second.aclose()


def dogpile_redis(dogpile: Any, server: Any) -> Result:
    race = SyncRace()
    body = race.body()
    regions = []
    try:
        for _ in range(2):
            regions.append(dogpile_redis_region(dogpile, server))
        load, other = (region.cache_on_arguments()(body) for region in regions)
        return race.run(load, race.invalidating(load.invalidate), other)
    finally:
        for region in regions:
            region.backend.writer_client.close()


def django_redis(module: Any, server: Any) -> Result:
    import django  # type: ignore[import-untyped]
    from django.conf import settings  # type: ignore[import-untyped]

    if not settings.configured:
        settings.configure()
        django.setup()
    race = SyncRace()
    body = race.body()
    # What django.core.cache does with a CACHES entry: BACKEND(LOCATION, params).
    backends = [module.RedisCache(server.url, {"TIMEOUT": TTL}) for _ in range(2)]

    def memoize(backend: Any) -> SyncLoad:
        @functools.wraps(body)
        def wrapper(key: str) -> Any:
            value = backend.get(f"race:load:{key}")
            if value is None:
                value = body(key)
                backend.set(f"race:load:{key}", value, TTL)
            return value

        return wrapper

    try:
        first = backends[0]
        write = race.invalidating(lambda key: first.delete(f"race:load:{key}"))
        return race.run(memoize(first), write, memoize(backends[1]))
    finally:
        for backend in backends:
            backend.close()


async def cashews_redis(module: Any, server: Any) -> Result:
    race = AsyncRace()
    body = race.body()
    caches = []
    try:
        for _ in range(2):
            cache = module.Cache()
            cache.setup(f"redis://{server.host}:{server.port}/0")
            caches.append(cache)
        load, other = (cache(ttl=TTL, key="race:{key}")(body) for cache in caches)

        @caches[0].invalidate("race:{key}")
        async def write(key: str) -> None:
            race.db["v"] = 2

        return await race.run(load, write, other)
    finally:
        for cache in caches:
            await cache.close()


async def aiocache_redis(module: Any, server: Any) -> Result:
    race = AsyncRace()
    body = race.body()
    decorators = [
        module.cached(
            ttl=TTL,
            cache=module.Cache.REDIS,
            endpoint=server.host,
            port=server.port,
            namespace="race",
        )
        for _ in range(2)
    ]
    load, other = (decorator(body) for decorator in decorators)
    try:
        key = decorators[0].get_cache_key(body, (KEY,), {})

        async def invalidate(_: str) -> None:
            await load.cache.delete(key)

        return await race.run(load, race.invalidating(invalidate), other)
    finally:
        for wrapper in (load, other):
            await wrapper.cache.close()


# ---------------------------------------------------------------------- entry point


def _shown(result: Result) -> tuple[str, str]:
    same, other = result
    values = [*same, other]
    if all(v == 2 for v in values):
        verdict = "fresh"
    elif all(v == 1 for v in values):
        verdict = "STALE"
    else:
        verdict = "mixed"
    same_text = str(same[0]) if same[0] == same[1] else f"{same[0]},{same[1]}"
    return f"{same_text} / {other}", verdict


def main(quick: bool = False) -> None:
    """Print the table (``quick`` changes nothing: the scenario is already short)."""
    peers = Peers()
    cases: list[tuple[str, Callable[[Any], Result]]] = [
        ("tta-cache (sync)", ours_sync),
        ("tta-cache (async)", lambda server: run_async(ours_async(server))),
    ]
    if peers.dogpile is not None:
        dogpile = peers.dogpile
        cases.append(("dogpile.cache redis", lambda s: dogpile_redis(dogpile, s)))
    if peers.django_redis is not None:
        module = peers.django_redis
        cases.append(("django-redis get/set memoizer", lambda s: django_redis(module, s)))
    if peers.cashews is not None:
        cashews = peers.cashews
        cases.append(("cashews redis://", lambda s: run_async(cashews_redis(cashews, s))))
    if peers.aiocache is not None:
        aiocache = peers.aiocache
        cases.append(("aiocache RedisCache", lambda s: run_async(aiocache_redis(aiocache, s))))

    lines: list[str] = []
    with redis_server() as server:
        admin: redis.Redis = server.client()
        try:
            for name, run in cases:
                admin.flushall()
                try:
                    result = run(server)
                except Exception as exc:
                    print(f"  dropped: {name}: {exc!r}", flush=True)
                    continue
                if not admin.dbsize():  # e.g. a library that hides connection errors
                    print(f"  dropped: {name}: nothing was written to Redis", flush=True)
                    continue
                served, verdict = _shown(result)
                lines.append(f"{name:<32}{served:<8}{verdict}")
        finally:
            admin.close()
    print("stale-set race: a value read before an invalidation, cached after it")
    print(f"{'library':<32}served after invalidation (same / other instance)")
    for line in lines:
        print(line)
    print(
        "1 = stale (the value read before the invalidation, served until the TTL), 2 = fresh;"
        " tta-cache refuses a fill whose tag versions moved while it was computed (I3)."
    )


if __name__ == "__main__":
    main()
