"""Where redis-py and socket errors become :class:`~tta_cache.exceptions.BackendError`: here, and
nowhere else (``with translated("GET"): ...``)."""

from __future__ import annotations

import asyncio
import os
import re
from types import TracebackType

import redis
from redis.exceptions import RedisClusterException

from ...exceptions import BackendError, BackendTimeout, CacheError, PoolTimeout

__all__ = ["PoolExhausted", "acl_refusal", "translated"]

_NAMED = re.compile(r"run the '([^']+)' command")
_IN_SCRIPT = "can't run this command or subcommand"


def acl_refusal(op: str, exc: BaseException) -> str | None:
    """What to say when Redis's ACL refused ``op`` (a command, or one inside a script); None
    when ``exc`` is not such a refusal."""
    text = str(exc)
    if isinstance(exc, redis.exceptions.NoPermissionError) or text.startswith("NOPERM"):
        named = _NAMED.search(text)
        grant = f"+{named.group(1)}" if named else "the command"
        return (
            f"redis {op} refused by the ACL: {text}; grant {grant} to this user "
            "(docs/security.md#acl lists what tta-cache needs)"
        )
    if isinstance(exc, redis.ResponseError) and _IN_SCRIPT in text:
        return (
            f"redis {op} refused by the ACL inside a script: {text}; the user needs every "
            "command docs/security.md#acl lists (the scripts run GET, SET, INCR, TTL, EXPIRE, "
            "PTTL, TIME, UNLINK, PUBLISH)"
        )
    return None


_REDIS_PY = os.path.dirname(redis.__file__) + os.sep


def _inside_redis_py(tb: TracebackType | None) -> bool:
    """Whether the exception was raised inside redis-py (its Cluster client raises
    AttributeError and the like while its topology is being refreshed after a failover; since
    redis-py 8.2 a RedisClusterException, which is not a RedisError, in the same window)."""
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and last.tb_frame.f_code.co_filename.startswith(_REDIS_PY)


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
        if isinstance(exc, (redis.RedisError, OSError, RedisClusterException)) or (
            isinstance(exc, (AttributeError, KeyError, IndexError, TypeError))
            and _inside_redis_py(exc.__traceback__)
        ):
            refused = acl_refusal(self.op, exc)
            if refused is not None:
                raise BackendError(refused) from exc
            raise BackendError(f"redis {self.op} failed: {type(exc).__name__}: {exc}") from exc
