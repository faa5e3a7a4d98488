"""tta-cache's decorator against the peer libraries, measured in one run. Report only.

1. Local hit (sync): ``Cache()`` (no Redis) ``@cached(ttl=600)`` vs a dogpile.cache memory region
   (``@region.cache_on_arguments()``). cachetools is in ``bench_core``.
2. Local hit (async): the same on an ``async def`` vs cashews (``mem://``) and aiocache
   (``@cached(ttl=600)``: ``SimpleMemoryCache``, no serializer).
3. Redis hit, local tier off (sync): ``Cache(url, local_maxsize=0)`` vs a dogpile.cache redis
   region and django-redis (a ``get`` / ``set`` memoizer around its cache backend), both pickle.
4. Redis hit, local tier off (async): vs cashews (``redis://``, pickle) and aiocache
   ``RedisCache`` (its default JSON serializer).

Every decorated function returns ``bench_core.CHARACTER`` for ``("char-0042", 7)`` with a TTL of
600 s; each is filled, then checked to be served from its cache (its body does not run again, the
value is equal) before timing. ``ours`` is tta-cache, ``floor`` the peer: a ratio below 1 means
tta-cache is faster. A peer that is not installed is skipped, one that fails to set up or to hit
is dropped with a note; neither fails the run. One redis-server of our own serves every case.

    .venv/bin/python -m benchmarks.bench_peers [--quick]
"""

from __future__ import annotations

import argparse
import functools
import importlib
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from types import ModuleType
from typing import Any

import redis

import tta_cache as tc

from ._harness import (
    AsyncRunner,
    Row,
    Settings,
    SyncRunner,
    Timing,
    ameasure,
    measure,
    print_table,
    redis_server,
    round_trips,
    run_async,
)
from .bench_core import CHARACTER, served

TTL = 600
ARGS = ("char-0042", 7)
CHECK_OPS = 500  # calls that must all be hits before a runner is timed (then one more)

SyncFn = Callable[[str, int], Any]
AsyncFn = Callable[[str, int], Awaitable[Any]]


class Body:
    """The cached function, sync and async, counting how often it really runs."""

    def __init__(self) -> None:
        self.calls = 0

    def sync(self) -> SyncFn:
        def load_character(character_id: str, turn: int) -> dict[str, Any]:
            self.calls += 1
            return CHARACTER

        return load_character

    def async_(self) -> AsyncFn:
        async def load_character(character_id: str, turn: int) -> dict[str, Any]:
            self.calls += 1
            return CHARACTER

        return load_character


def calls(f: SyncFn) -> SyncRunner:
    a, b = ARGS

    def run(n: int) -> None:
        for _ in range(n):
            f(a, b)

    return run


def acalls(f: AsyncFn) -> AsyncRunner:
    a, b = ARGS

    async def run(n: int) -> None:
        for _ in range(n):
            await f(a, b)

    return run


class NotHit(RuntimeError):
    """A decorated function whose calls were not served from its cache."""


def _checked(name: str, value: Any, ran: int) -> None:
    if ran:
        raise NotHit(f"{name}: the function ran {ran} times in {CHECK_OPS} calls after the fill")
    if value != CHARACTER:
        raise NotHit(f"{name}: a hit returned {value!r}")


def _trips(admin: redis.Redis | None, into: list[str]) -> AbstractContextManager[None]:
    return nullcontext() if admin is None else round_trips(admin, CHECK_OPS, into)


def check(name: str, f: SyncFn, body: Body, admin: redis.Redis | None = None) -> str:
    """Fill, then make sure ``CHECK_OPS`` calls are hits; what they sent to Redis per call."""
    f(*ARGS)  # the miss that fills the cache
    trips: list[str] = []
    before = body.calls
    with _trips(admin, trips):
        calls(f)(CHECK_OPS)
    ran = body.calls - before
    _checked(name, f(*ARGS), ran)
    return trips[0] if trips else "0"


async def acheck(name: str, f: AsyncFn, body: Body, admin: redis.Redis | None = None) -> str:
    await f(*ARGS)
    trips: list[str] = []
    before = body.calls
    with _trips(admin, trips):
        await acalls(f)(CHECK_OPS)
    ran = body.calls - before
    _checked(name, await f(*ARGS), ran)
    return trips[0] if trips else "0"


# ---------------------------------------------------------------------- the peers


def _import(module: str, peer: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except Exception as exc:
        note = "not installed" if isinstance(exc, ImportError) else f"import failed: {exc!r}"
        print(f"  skipped: {peer} {note}", flush=True)
        return None


class Peers:
    """The peer modules that import (None for the others), each reported once if missing."""

    def __init__(self) -> None:
        self.dogpile = _import("dogpile.cache", "dogpile.cache")
        self.cashews = _import("cashews", "cashews")
        self.aiocache = _import("aiocache", "aiocache")
        self.django_redis = _import("django_redis.cache", "django-redis")


class Case:
    """The runners of one case: tta-cache's first, then each peer that set up and hits."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.runners: dict[str, Any] = {}
        self.trips: dict[str, str] = {}
        self.closers: list[Callable[[], Any]] = []

    def drop(self, name: str, exc: BaseException) -> None:
        print(f"  dropped: {name} ({self.title}): {exc!r}", flush=True)

    def rows(self, timings: dict[str, Timing]) -> list[Row]:
        ours = timings["ours"]
        return [
            Row(
                case=self.title,
                ours_ns=ours.median,
                floor_ns=timing.median,
                floor=name,
                target=None,
                round_trips=self.trips["ours"],
                extra={
                    "ours_best_ns": ours.best,
                    "floor_best_ns": timing.best,
                    "floor_round_trips": self.trips[name],
                },
            )
            for name, timing in timings.items()
            if name != "ours"
        ]


def add_sync(
    case: Case, name: str, build: Callable[[SyncFn], SyncFn], admin: redis.Redis | None = None
) -> None:
    body = Body()
    try:
        f = build(body.sync())
        case.trips[name] = check(name, f, body, admin)
    except Exception as exc:
        case.drop(name, exc)
        return
    case.runners[name] = calls(f)


async def add_async(
    case: Case, name: str, build: Callable[[AsyncFn], AsyncFn], admin: redis.Redis | None = None
) -> None:
    body = Body()
    try:
        f = build(body.async_())
        case.trips[name] = await acheck(name, f, body, admin)
    except Exception as exc:
        case.drop(name, exc)
        return
    case.runners[name] = acalls(f)


def cashews(case: Case, module: ModuleType, url: str) -> Callable[[AsyncFn], AsyncFn]:
    """``@cache(ttl=600)`` on a ``cashews.Cache()`` of its own set up for ``url``."""

    def decorate(func: AsyncFn) -> AsyncFn:
        cache = module.Cache()
        cache.setup(url)
        case.closers.append(cache.close)
        return cache(ttl=TTL)(func)  # type: ignore[no-any-return]

    return decorate


def aiocache(case: Case, module: ModuleType, **options: Any) -> Callable[[AsyncFn], AsyncFn]:
    """``@cached(ttl=600, **options)``; each decorated function gets a cache of its own."""

    def decorate(func: AsyncFn) -> AsyncFn:
        wrapper = module.cached(ttl=TTL, **options)(func)
        case.closers.append(wrapper.cache.close)
        return wrapper  # type: ignore[no-any-return]

    return decorate


def dogpile_redis_region(dogpile: ModuleType, server: Any) -> Any:
    """A dogpile.cache region on ``server``'s Redis (pickle), entries living ``TTL`` seconds."""
    region = dogpile.make_region()
    region.configure(
        "dogpile.cache.redis",
        expiration_time=TTL,
        arguments={
            "host": server.host,
            "port": server.port,
            "db": 0,
            "redis_expiration_time": TTL + 60,
        },
    )
    return region


def django_redis_memoize(case: Case, module: ModuleType, url: str) -> Callable[[SyncFn], SyncFn]:
    """django-redis has no function decorator: ``cache.get``, on a miss ``cache.set``."""

    def decorate(func: SyncFn) -> SyncFn:
        import django  # type: ignore[import-untyped]
        from django.conf import settings  # type: ignore[import-untyped]

        if not settings.configured:
            settings.configure()
            django.setup()
        # What django.core.cache does with a CACHES entry: BACKEND(LOCATION, params).
        backend = module.RedisCache(url, {"TIMEOUT": TTL})
        case.closers.append(backend.close)

        @functools.wraps(func)
        def wrapper(character_id: str, turn: int) -> Any:
            key = f"peers:load_character:{character_id}:{turn}"
            value = backend.get(key)
            if value is None:
                value = func(character_id, turn)
                backend.set(key, value, TTL)
            return value

        return wrapper

    return decorate


# ---------------------------------------------------------------------- cases


def local_sync(peers: Peers, settings: Settings) -> list[Row]:
    case = Case("peers: local hit (sync)")
    with tc.Cache(namespace="peers") as cache:
        body = Body()
        ours = cache.cached(ttl=TTL)(body.sync())
        with served(cache, "local", CHECK_OPS + 1):
            case.trips["ours"] = check("tta-cache", ours, body)
        case.runners["ours"] = calls(ours)
        if peers.dogpile is not None:
            dogpile = peers.dogpile

            def dogpile_memory(func: SyncFn) -> SyncFn:
                region = dogpile.make_region()
                region.configure("dogpile.cache.memory", expiration_time=TTL)
                return region.cache_on_arguments()(func)  # type: ignore[no-any-return]

            add_sync(case, "dogpile.cache memory region", dogpile_memory)
        return case.rows(measure(case.runners, settings))


async def local_async(peers: Peers, settings: Settings) -> list[Row]:
    case = Case("peers: local hit (async)")
    cache = tc.Cache(namespace="peers")
    try:
        body = Body()
        ours = cache.cached(ttl=TTL)(body.async_())
        with served(cache, "local", CHECK_OPS + 1):
            case.trips["ours"] = await acheck("tta-cache", ours, body)
        case.runners["ours"] = acalls(ours)
        if peers.cashews is not None:
            await add_async(case, "cashews mem://", cashews(case, peers.cashews, "mem://"))
        if peers.aiocache is not None:
            await add_async(case, "aiocache SimpleMemoryCache", aiocache(case, peers.aiocache))
        return case.rows(await ameasure(case.runners, settings))
    finally:
        for close in case.closers:
            await close()
        await cache.aclose()


def redis_sync(peers: Peers, server: Any, admin: redis.Redis, settings: Settings) -> list[Row]:
    case = Case("peers: Redis hit (sync, local off)")
    with tc.Cache(server.url, namespace="peers", local_maxsize=0) as cache:
        if not cache.wait_ready(10):
            raise RuntimeError("the invalidation channel did not come up")
        body = Body()
        ours = cache.cached(ttl=TTL)(body.sync())
        with served(cache, "redis", CHECK_OPS + 1):
            case.trips["ours"] = check("tta-cache", ours, body, admin)
        case.runners["ours"] = calls(ours)
        try:
            if peers.dogpile is not None:
                dogpile = peers.dogpile

                def dogpile_redis(func: SyncFn) -> SyncFn:
                    region = dogpile_redis_region(dogpile, server)
                    case.closers.append(region.backend.writer_client.close)
                    return region.cache_on_arguments()(func)  # type: ignore[no-any-return]

                add_sync(case, "dogpile.cache redis region (pickle)", dogpile_redis, admin)
            if peers.django_redis is not None:
                memoize = django_redis_memoize(case, peers.django_redis, server.url)
                add_sync(case, "django-redis get/set memoizer (pickle)", memoize, admin)
            return case.rows(measure(case.runners, settings))
        finally:
            for close in case.closers:
                close()


async def redis_async(
    peers: Peers, cache: tc.Cache, server: Any, admin: redis.Redis, settings: Settings
) -> list[Row]:
    case = Case("peers: Redis hit (async, local off)")
    try:
        body = Body()
        ours = cache.cached(ttl=TTL)(body.async_())
        with served(cache, "redis", CHECK_OPS + 1):
            case.trips["ours"] = await acheck("tta-cache", ours, body, admin)
        case.runners["ours"] = acalls(ours)
        if peers.cashews is not None:
            url = f"redis://{server.host}:{server.port}/0"
            decorate = cashews(case, peers.cashews, url)
            await add_async(case, "cashews redis:// (pickle)", decorate, admin)
        if peers.aiocache is not None:
            decorate = aiocache(
                case,
                peers.aiocache,
                cache=peers.aiocache.Cache.REDIS,
                endpoint=server.host,
                port=server.port,
                namespace="peers",
            )
            await add_async(case, "aiocache RedisCache (json)", decorate, admin)
        return case.rows(await ameasure(case.runners, settings))
    finally:
        for close in case.closers:
            await close()
        await cache.aclose()


# ---------------------------------------------------------------------- entry point


def progress(case: str) -> None:
    print(f"  timing {case} ...", flush=True)


def main(quick: bool = False) -> list[Row]:
    """Print the table; return its rows for ``python -m benchmarks``."""
    settings = Settings.for_mode(quick)
    peers = Peers()
    progress("local hit (sync)")
    rows = local_sync(peers, settings)
    progress("local hit (async)")
    rows += run_async(local_async(peers, settings))
    with redis_server() as server:
        admin = server.client()
        try:
            progress("Redis hit (sync)")
            rows += redis_sync(peers, server, admin, settings)
            progress("Redis hit (async)")
            cache = tc.Cache(server.url, namespace="peers_async", local_maxsize=0)
            try:
                if not cache.wait_ready(10):
                    raise RuntimeError("the invalidation channel did not come up")
                rows += run_async(redis_async(peers, cache, server, admin, settings))
            finally:
                cache.close()
        finally:
            admin.close()
    print_table(rows, "peers: median ns/op over interleaved rounds; ratio < 1: tta-cache faster")
    for row in rows:
        print(f"  Redis/op, {row.floor}: {row.extra['floor_round_trips']}")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_peers")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke)")
    main(quick=parser.parse_args().quick)
