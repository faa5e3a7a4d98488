"""Connection pools: redis-py's blocking pools, with the checkouts that had to wait counted.

A caller waits up to ``pool_timeout`` for one of ``max_connections`` connections (this process's
own load, not Redis being slow); a wait that runs out raises :class:`~.errors.PoolExhausted`.
:func:`pool_usage` counts what a client's pools and lanes hold.
"""

from __future__ import annotations

import asyncio
import functools
import queue
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import redis
import redis.asyncio as aredis

from .config import RedisConfig
from .errors import PoolExhausted
from .figures import TierFigures

if TYPE_CHECKING:
    from .lane import AsyncLane, Lane

__all__ = ["blocking_pool", "pool_usage"]


class _WaitQueue(queue.LifoQueue[Any]):
    """The sync blocking pool's queue of connections; times the checkouts that find it empty."""

    def __init__(self, maxsize: int, figures: TierFigures) -> None:
        super().__init__(maxsize)
        self.figures = figures

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return super().get(block=False)
        except queue.Empty:
            if not block:
                raise
        started = self.figures.wait_started()
        try:
            conn = super().get(True, timeout)
        except queue.Empty:
            self.figures.wait_ended(started, timed_out=True)
            raise PoolExhausted(_exhausted(timeout)) from None
        except BaseException:
            self.figures.wait_ended(started)
            raise
        self.figures.wait_ended(started)
        return conn


class _AsyncWaitPool(aredis.BlockingConnectionPool):
    """The asyncio blocking pool; times the checkouts that find every connection in use."""

    figures: TierFigures

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.can_get_connection():
            return await super().get_connection()  # type: ignore[no-untyped-call]
        started = self.figures.wait_started()
        try:
            conn = await super().get_connection()  # type: ignore[no-untyped-call]
        except redis.ConnectionError as exc:
            timed_out = isinstance(exc.__cause__, asyncio.TimeoutError)
            self.figures.wait_ended(started, timed_out=timed_out)
            if timed_out:
                raise PoolExhausted(_exhausted(self.timeout)) from exc
            raise
        except BaseException:
            self.figures.wait_ended(started)
            raise
        self.figures.wait_ended(started)
        return conn


_OUR_QUERY = frozenset({"pool_timeout"})  # URL query options read by RedisConfig.from_url


def _exhausted(timeout: float | None) -> str:
    return f"no pooled connection came free within pool_timeout ({timeout} s)"


def blocking_pool(
    flavour: Any, cfg: RedisConfig, common: dict[str, Any], figures: TierFigures
) -> Any:
    """A standalone blocking pool from ``flavour`` (``redis`` or ``redis.asyncio``): callers wait
    up to ``pool_timeout`` for one of ``max_connections`` rather than fail at once, and the
    waits are counted in ``figures``."""
    bounds: dict[str, Any] = {"max_connections": cfg.max_connections, "timeout": cfg.pool_timeout}
    if flavour is redis:
        cls: Any = redis.BlockingConnectionPool
        bounds["queue_class"] = functools.partial(_WaitQueue, figures=figures)
    else:
        cls = _AsyncWaitPool
    if cfg.url.startswith("unix://"):  # redis-py parses the socket path and db; not our options
        path, _, query = cfg.url.partition("?")
        theirs = urlencode([(k, v) for k, v in parse_qsl(query) if k not in _OUR_QUERY])
        pool = cls.from_url(f"{path}?{theirs}" if theirs else path, **bounds, **common)
    else:
        host, port = cfg.address
        pool = cls(
            host=host,
            port=port,
            db=cfg.db,
            connection_class=flavour.SSLConnection if cfg.ssl else flavour.Connection,
            **bounds,
            **common,
        )
    pool.figures = figures
    return pool


def pool_usage(
    pools: Iterable[Any], lanes: Iterable[Lane | AsyncLane | None] = ()
) -> dict[str, int]:
    in_use = idle = most = 0
    for pool in pools:
        counts = pool.get_connection_count()  # [(idle, attributes), (in use, attributes)]
        idle += counts[0][0]
        in_use += counts[1][0]
        most += pool.max_connections
    resting = sum(len(lane.idle) for lane in lanes if lane is not None)  # borrowed, idle here
    idle, in_use = idle + resting, max(0, in_use - resting)
    return {"in_use": in_use, "idle": idle, "available": max(0, most - in_use), "max": most}
