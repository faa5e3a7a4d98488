"""Where redis-py and socket errors become :class:`~tta_cache.exceptions.BackendError`: here, and
nowhere else (``with translated("GET"): ...``)."""

from __future__ import annotations

import asyncio

import redis

from ...exceptions import BackendError, BackendTimeout, CacheError, PoolTimeout

__all__ = ["PoolExhausted", "translated"]


class PoolExhausted(redis.ConnectionError):
    """No connection came free within ``pool_timeout`` (translated into PoolTimeout). A redis-py
    ConnectionError, so code that catches those (the channel thread's) still does."""


class translated:
    """Translate redis-py and socket errors raised inside into BackendError (the one place).

    A plain class, not ``@contextmanager``: it sits on every Redis operation, and a generator
    per call costs more than the rest of the wrapper."""

    __slots__ = ("op",)

    def __init__(self, op: str) -> None:
        self.op = op

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None or isinstance(exc, CacheError):
            return
        if isinstance(exc, PoolExhausted):
            raise PoolTimeout(str(exc)) from None
        if isinstance(exc, (redis.TimeoutError, TimeoutError, asyncio.TimeoutError)):
            raise BackendTimeout(f"redis {self.op} timed out") from exc
        if isinstance(exc, (redis.RedisError, OSError)):
            raise BackendError(f"redis {self.op} failed: {type(exc).__name__}: {exc}") from exc
