"""The Redis tier: redis-py clients (sync, and asyncio per event loop), scripts, error translation.

Standalone, Sentinel and Cluster are chosen by URL::

    redis://[:password@]host:port/db          rediss:// for TLS, unix:///path.sock?db=0
    redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]
    redis+cluster://[:password@]host:port[,host:port...]

Every redis-py or socket error is translated into :class:`~tta_cache.exceptions.BackendError` here
and nowhere else. Each operation is bounded by ``op_timeout`` (socket timeouts; no retry on a
timeout, one immediate retry on a broken pooled connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import os
import queue
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as ARetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from .exceptions import BackendError, BackendTimeout, CacheError, ConfigurationError, PoolTimeout

__all__ = [
    "FILL_LUA",
    "LEASE_READ_LUA",
    "MAX_VERSION",
    "NOT_AN_ENTRY",
    "TOKEN",
    "AsyncRedisTier",
    "Lease",
    "Read",
    "RedisConfig",
    "RedisTier",
    "TierFigures",
    "mask_url",
    "parse_version",
    "tier_figures",
]

T = TypeVar("T")

# Tag versions start at the server's clock in microseconds, so a version recreated after data loss
# (restart, eviction, FLUSHDB, failover to an empty replica) is larger than any it replaces: stamps
# taken before the loss can never match again, and "merge by max" stays right. A key that holds no
# valid version is corrupt and replaced the same way, and counted (the last element of the reply):
# garbage, a sign, a leading zero, more than an int64 less one carries (one INCR more must still
# fit the envelope's stamp), or another Redis type (GET fails with WRONGTYPE, hence pcall).
_INIT = """
local fresh = nil
local replaced = 0
local function valid(v)
  if type(v) ~= 'string' then return false end
  if v == '0' then return true end
  if #v > 19 or not string.find(v, '^[1-9]%d*$') then return false end
  return #v < 19 or v < '9223372036854775807'
end
local function version(k, ttl)
  local v = redis.pcall('GET', k)
  if valid(v) then
    if redis.call('TTL', k) < ttl then redis.call('EXPIRE', k, ttl) end
    return v
  end
  if v then replaced = replaced + 1 end
  if not fresh then
    local t = redis.call('TIME')
    fresh = t[1] .. string.format('%06d', tonumber(t[2]))
  end
  redis.call('SET', k, fresh, 'EX', ttl)
  return fresh
end
"""

# KEYS: tag version keys. ARGV[1]: seconds a version must outlive. Returns the versions, then the
# number of corrupt keys replaced.
VERSIONS_LUA = (
    _INIT
    + """
local ttl = tonumber(ARGV[1])
local out = {}
for i, k in ipairs(KEYS) do out[i] = version(k, ttl) end
out[#KEYS + 1] = replaced
return out
"""
)

# KEYS: tag version keys. ARGV[1]: ttl; ARGV[2]: channel; ARGV[3]: message head (JSON object without
# its closing brace); ARGV[4..]: the tags, one per key. Bumps every version and publishes the tags
# and their new versions in the same atomic step, so subscribers see versions of one tag in
# increasing order. In a cluster it runs once per tag key, each run publishing its own tag.
# Returns the new versions, then the number of corrupt keys replaced.
BUMP_LUA = (
    _INIT
    + """
local ttl = tonumber(ARGV[1])
local out = {}
local names = {}
for i, k in ipairs(KEYS) do
  version(k, ttl)
  redis.call('INCR', k)
  out[i] = redis.call('GET', k)
  names[i] = ARGV[i + 3]
end
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ',"tags":' .. cjson.encode(names)
  .. ',"v":[' .. table.concat(out, ',') .. ']}')
out[#KEYS + 1] = replaced
return out
"""
)


# KEYS: the entry key, its lease key. ARGV: token, lease ms, force ("1": the caller cannot use the
# entry it finds, so take the lease even though the key exists). One round trip for a miss under
# ``lock=True``: returns {entry or false, 1 if the lease was granted else 0, the holder or false,
# 1 if a corrupt lease was replaced else 0}. An entry key of another type reads as '' (no envelope
# is empty: an undecodable miss, which the fill's SET overwrites). A lease key that holds no token
# (see ``TOKEN``) with an expiry, or another type, was not taken by a caller: it is taken over.
LEASE_READ_LUA = """
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'table' then v = '' end
if v and ARGV[3] ~= '1' then return {v, 0, false, 0} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {v, 1, ARGV[1], 0} end
local holder = redis.pcall('GET', KEYS[2])
if type(holder) == 'string' and #holder <= 128 and string.find(holder, '^[%w%.:_%-]+$')
    and redis.call('PTTL', KEYS[2]) > 0 then
  return {v, 0, holder, 0}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {v, 1, ARGV[1], 1}
"""

# KEYS: the lease key[, the entry key]. ARGV: token, channel, fill notice[, payload, px]. Writes the
# entry (if given; SET overwrites a key of any type), releases the lease only if it still holds our
# token, and tells the waiters of every process at once: a fill, a release and a wake-up in one
# round trip.
FILL_LUA = """
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5]) end
if redis.pcall('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""

MAX_VERSION = 2**63 - 1
"""The largest tag version an envelope's stamp carries (an int64)."""

TOKEN = re.compile(rb"[A-Za-z0-9.:_\-]{1,128}")
"""What a lease token is (as ``LEASE_READ_LUA`` checks it): a lease key holding anything else
was not taken by a caller and is taken over."""

NOT_AN_ENTRY = b""
"""What an entry read returns for a key of another Redis type: no envelope is empty, so the engine
counts it undecodable (a miss, ``decode_errors``) and the fill's SET overwrites it."""

_VERSION = re.compile(rb"0|[1-9][0-9]{0,18}")

log = logging.getLogger("tta_cache")


def parse_version(raw: object) -> int | None:
    """The tag version ``raw`` (a reply, or a version key's value) holds; None when it holds
    none: absent, or corrupt (not a plain decimal integer, negative, beyond :data:`MAX_VERSION`)."""
    if not isinstance(raw, bytes) or _VERSION.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if value <= MAX_VERSION else None


def _versions_reply(reply: Any, count: int) -> tuple[tuple[int, ...], int]:
    """The ``count`` versions of a :data:`VERSIONS_LUA` / :data:`BUMP_LUA` reply, and how many
    corrupt keys the script replaced. A reply that holds anything else (it cannot, from these
    scripts) is a BackendError: a fail-open miss, never a ValueError."""
    if isinstance(reply, Exception):
        raise reply
    if not isinstance(reply, list) or len(reply) != count + 1:
        raise BackendError(f"redis answered the versions script with {type(reply).__name__}")
    versions = tuple(map(parse_version, reply[:count]))
    if None in versions:
        raise BackendError("redis answered the versions script with a value that is not one")
    return versions, int(reply[count])  # type: ignore[return-value]


def _entry_reply(reply: Any) -> bytes | None:
    """An entry GET's reply: a key of another type (WRONGTYPE) reads as :data:`NOT_AN_ENTRY`."""
    if isinstance(reply, redis.ResponseError):
        if str(reply).startswith("WRONGTYPE"):
            return NOT_AN_ENTRY
        raise reply
    return reply  # type: ignore[no-any-return]


def _same_slot(a: str, b: str) -> bool:
    from redis.crc import key_slot

    return bool(key_slot(a.encode()) == key_slot(b.encode()))


LeaseReply = tuple[bytes | None, bool, str | None, int]  # entry, granted, holder, leases replaced


def _lease_reply(reply: Any) -> LeaseReply:
    if isinstance(reply, Exception):
        raise reply
    raw, granted, holder, replaced = reply
    if isinstance(holder, bytes):
        holder = holder.decode("utf-8", "replace")
    return raw, bool(granted), holder, int(replaced)


def _lease_apart(
    key: str, lease: Lease, force: bool
) -> Generator[tuple[Any, ...], Any, LeaseReply]:
    """:data:`LEASE_READ_LUA` as separate commands, for a Cluster whose entry and lease keys lie
    in different slots. Sans-IO: it yields commands and is sent their replies (an error reply as
    the exception), so the sync and asyncio tiers run the same decisions."""
    raw = _entry_reply((yield ("GET", key)))
    if raw is not None and not force:
        return raw, False, None, 0
    if (yield ("SET", lease.key, lease.token, "NX", "PX", lease.ms)):
        return raw, True, lease.token, 0
    holder = yield ("GET", lease.key)
    if isinstance(holder, bytes) and TOKEN.fullmatch(holder) and (yield ("PTTL", lease.key)) > 0:
        return raw, False, holder.decode(), 0
    yield ("SET", lease.key, lease.token, "PX", lease.ms)
    return raw, True, lease.token, 1


def _raise_first(replies: Iterable[Any]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


def _pool_usage(
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


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs, health output and the CLI)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


@dataclass(frozen=True)
class RedisConfig:
    """Connection settings, parsed from a URL plus keyword overrides."""

    url: str
    mode: str = "standalone"  # "standalone" | "sentinel" | "cluster"
    hosts: tuple[tuple[str, int], ...] = ()
    service_name: str = ""
    db: int = 0
    password: str | None = None
    username: str | None = None
    ssl: bool = False
    op_timeout: float = 0.25
    connect_timeout: float | None = None
    max_connections: int = 50
    # Seconds a caller waits for one of max_connections (a wait is this process's load, not Redis
    # being slow, so not op_timeout): a healthy pool turns over in well under a millisecond, and a
    # slow Redis opens the breaker, which frees the pool; only a pool that stopped turning over (a
    # leak, a wedged loop) waits this long, and then a counted fail-open miss beats hanging.
    pool_timeout: float = 10.0
    health_check_interval: float = 30.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        timeout = self.pool_timeout
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise ConfigurationError(f"pool_timeout must be > 0 seconds, not {timeout!r}")

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> RedisConfig:
        parts = urlsplit(url)
        scheme = parts.scheme
        mode = {"redis+sentinel": "sentinel", "redis+cluster": "cluster"}.get(scheme, "standalone")
        if scheme not in ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster"):
            raise ConfigurationError(f"unsupported Redis URL scheme {scheme!r} in {mask_url(url)}")
        hosts: list[tuple[str, int]] = []
        netloc = parts.netloc.rsplit("@", 1)[-1]
        default_port = 26379 if mode == "sentinel" else 6379
        for hp in filter(None, netloc.split(",")):
            host, _, port = hp.rpartition(":") if hp.count(":") == 1 or "]" in hp else (hp, "", "")
            hosts.append((host.strip("[]") or "127.0.0.1", int(port or default_port)))
        path = [p for p in parts.path.split("/") if p]
        service, db = "", 0
        if mode == "sentinel":
            if not path:
                raise ConfigurationError("a redis+sentinel:// URL needs /service_name[/db]")
            service = path[0]
            db = int(path[1]) if len(path) > 1 else 0
        elif mode == "standalone" and scheme != "unix" and path:
            db = int(path[0])
        query = parse_qs(parts.query)
        if "db" in query:
            db = int(query["db"][0])
        if "pool_timeout" in query and "pool_timeout" not in overrides:
            given = query["pool_timeout"][0]
            try:
                overrides["pool_timeout"] = float(given)
            except ValueError:
                raise ConfigurationError(f"pool_timeout must be seconds, not {given!r}") from None
        return cls(
            url=url,
            mode=mode,
            hosts=tuple(hosts),
            service_name=service,
            db=db,
            password=unquote(parts.password) if parts.password else None,
            username=unquote(parts.username) if parts.username else None,
            ssl=scheme == "rediss",
            **overrides,
        )

    @property
    def address(self) -> tuple[str, int]:
        return self.hosts[0] if self.hosts else ("127.0.0.1", 6379)

    def _common(self) -> dict[str, Any]:
        return {
            "socket_timeout": self.op_timeout,
            "socket_connect_timeout": self.connect_timeout or self.op_timeout,
            "health_check_interval": self.health_check_interval,
            "password": self.password,
            "username": self.username,
            **self.extra,
            "decode_responses": False,  # payloads are binary envelopes
        }


def _retry() -> Retry:
    # One immediate retry heals a pooled connection that Redis closed (restart, CLIENT KILL);
    # timeouts are not retried, so no operation takes longer than op_timeout (plus connect).
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


def _aretry() -> ARetry:
    return ARetry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


class _PoolExhausted(redis.ConnectionError):
    """No connection came free within ``pool_timeout`` (translated into PoolTimeout). A redis-py
    ConnectionError, so code that catches those (the channel thread's) still does."""


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
            raise _PoolExhausted(_exhausted(timeout)) from None
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
                raise _PoolExhausted(_exhausted(self.timeout)) from exc
            raise
        except BaseException:
            self.figures.wait_ended(started)
            raise
        self.figures.wait_ended(started)
        return conn


_OUR_QUERY = frozenset({"pool_timeout"})  # URL query options read by RedisConfig.from_url


def _exhausted(timeout: float | None) -> str:
    return f"no pooled connection came free within pool_timeout ({timeout} s)"


def _blocking_pool(
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


def make_sync_client(
    cfg: RedisConfig, *, op_timeout: float | None = None, figures: TierFigures | None = None
) -> Any:
    """A redis-py client for ``cfg`` (``op_timeout`` overrides the socket timeout, for pub/sub;
    ``figures`` counts its pool waits)."""
    common = cfg._common()
    if op_timeout is not None:
        common["socket_timeout"] = op_timeout
    if cfg.mode == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(h, p) for h, p in cfg.hosts]  # type: ignore[no-untyped-call]
        common.pop("health_check_interval", None)
        return RedisCluster(
            startup_nodes=nodes,
            ssl=cfg.ssl,
            max_connections=cfg.max_connections,
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.005), 2),
            **common,
        )
    if cfg.mode == "sentinel":
        from redis.sentinel import Sentinel

        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(cfg.hosts),
            socket_timeout=cfg.op_timeout,
            sentinel_kwargs={"socket_timeout": cfg.op_timeout},
        )
        return sentinel.master_for(  # type: ignore[no-untyped-call]
            cfg.service_name, db=cfg.db, ssl=cfg.ssl, retry=_retry(), **common
        )
    pool = _blocking_pool(redis, cfg, common, figures or TierFigures())
    return redis.Redis(connection_pool=pool, retry=_retry())


def make_sentinel_clients(cfg: RedisConfig) -> Callable[[], Any]:
    """For Sentinel URLs: a factory of clients to the Sentinels themselves, one after the other
    on each call (to hear their announcements, see :class:`~tta_cache.coherence.FailoverWatch`)."""
    hosts = itertools.cycle(cfg.hosts)

    def make() -> Any:
        host, port = next(hosts)
        return redis.Redis(
            host=host,
            port=port,
            socket_timeout=max(5.0, cfg.op_timeout),
            socket_connect_timeout=cfg.connect_timeout or cfg.op_timeout,
        )

    return make


def make_async_client(cfg: RedisConfig, *, figures: TierFigures | None = None) -> Any:
    """A ``redis.asyncio`` client for ``cfg``; bound to the running event loop by its user."""
    common = cfg._common()
    if cfg.mode == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        common.pop("health_check_interval", None)
        nodes = [ClusterNode(h, p) for h, p in cfg.hosts]
        return RedisCluster(
            startup_nodes=nodes, ssl=cfg.ssl, max_connections=cfg.max_connections, **common
        )
    if cfg.mode == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(cfg.hosts),
            socket_timeout=cfg.op_timeout,
            sentinel_kwargs={"socket_timeout": cfg.op_timeout},
        )
        return sentinel.master_for(cfg.service_name, db=cfg.db, ssl=cfg.ssl, **common)
    pool = _blocking_pool(aredis, cfg, common, figures or TierFigures())
    return aredis.Redis(connection_pool=pool, retry=_aretry())


def _packed(conn: Any, commands: tuple[tuple[Any, ...], ...]) -> Any:
    return conn.pack_command(*commands[0]) if len(commands) == 1 else conn.pack_commands(commands)


class Lane:
    """Single commands and short pipelines on connections kept between uses, outside redis-py's
    checkout path.

    A pooled redis-py command pays for a blocking queue, the pool's observability counters, a
    readiness poll (a syscall) and the retry wrapper: ~35 us a command on a 2-core VM, a quarter
    of a loopback GET. The engine's hot commands (GET, SET, MGET and the read pipeline) take a
    connection from this short list instead. Its connections are borrowed from the pool, so the
    pool's ``max_connections`` still bounds them; at most ``size`` stay here idle, the rest go back.
    An error reply leaves the connection clean and kept; any other failure disconnects it and
    hands it back, except that a broken one (Redis restarted, CLIENT KILL, a failover) is
    reconnected and the command sent once more, as the client's own retry would. A forked child
    starts with an empty lane (it must not share its parent's sockets).
    """

    __slots__ = ("__weakref__", "idle", "owns", "pool", "size")

    def __init__(self, pool: Any, size: int) -> None:
        self.pool = pool
        self.size = size
        self.idle: list[Any] = []
        # Sentinel: a connection to a master that is no longer the master goes back to the pool
        self.owns: Callable[[Any], bool] = getattr(pool, "owns_connection", bool)
        _LANES.add(self)

    def _take(self) -> Any:
        try:
            return self.idle.pop()
        except IndexError:
            return self.pool.get_connection()

    def _give(self, conn: Any) -> None:
        if len(self.idle) < self.size and self.owns(conn):
            self.idle.append(conn)
        else:
            self.pool.release(conn)

    def call(self, *args: Any) -> Any:
        """One command's reply (redis-py's reply, without its response callbacks)."""
        (reply,) = self.pipeline(args)
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    def pipeline(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Replies of ``commands`` sent together; an error reply is returned in its place (every
        reply is read, so the connection stays clean)."""
        conn = self._take()
        for attempt in (1, 2):
            try:
                if attempt == 2:  # connect() by name: Sentinel asks where the master is now
                    conn.connect()
                conn.send_packed_command(_packed(conn, commands))
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except redis.ResponseError as exc:
                        replies.append(exc)
            except BaseException as exc:
                if self._retry(conn, exc, attempt):
                    continue
                raise
            self._give(conn)
            return replies
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry(self, conn: Any, exc: BaseException, attempt: int) -> bool:
        """After a failed command: whether to send it again on ``conn``, reconnected (a broken
        connection, the first time), as redis-py's own retry does. Else ``conn`` goes back to the
        pool. The kept connections beside it broke too, most likely (a restart, a CLIENT KILL,
        a failover): they are handed back disconnected, so the next calls connect afresh."""
        conn.disconnect()
        if not isinstance(exc, redis.ConnectionError):
            self.pool.release(conn)
            return False
        self.drain()
        if attempt == 1:
            return True
        self.pool.release(conn)
        return False

    def drain(self) -> None:
        """Hand every kept connection back to the pool, disconnected."""
        idle, self.idle = self.idle, []
        for other in idle:
            other.disconnect()
            self.pool.release(other)

    def close(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                self.pool.release(conn)

    def forget(self) -> None:
        """In a forked child: drop the parent's connections without touching their sockets."""
        self.idle = []


class AsyncLane:
    """:class:`Lane` for one event loop's ``redis.asyncio`` client (its connections are bound to
    that loop). A task cancelled mid-command leaves its connection disconnected by redis-py and
    handed back to the pool."""

    __slots__ = ("idle", "owns", "pool", "size")

    def __init__(self, pool: Any, size: int) -> None:
        self.pool = pool
        self.size = size
        self.idle: list[Any] = []
        self.owns: Callable[[Any], bool] = bool
        if hasattr(pool, "is_master"):  # Sentinel (its own owns_connection fails in redis.asyncio)

            def owns(conn: Any) -> bool:
                return not pool.is_master or pool.master_address == (conn.host, conn.port)

            self.owns = owns

    async def _take(self) -> Any:
        try:
            return self.idle.pop()
        except IndexError:
            return await self.pool.get_connection()

    async def _give(self, conn: Any) -> None:
        if len(self.idle) < self.size and self.owns(conn):
            self.idle.append(conn)
        else:
            await self.pool.release(conn)

    async def call(self, *args: Any) -> Any:
        """One command's reply (see :meth:`Lane.call`)."""
        (reply,) = await self.pipeline(args)
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    async def pipeline(self, *commands: tuple[Any, ...]) -> list[Any]:
        """See :meth:`Lane.pipeline`."""
        conn = await self._take()
        for attempt in (1, 2):
            try:
                if attempt == 2:
                    await conn.connect()
                await conn.send_packed_command(_packed(conn, commands))
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(await conn.read_response())
                    except redis.ResponseError as exc:
                        replies.append(exc)
            except BaseException as exc:
                if await self._retry(conn, exc, attempt):
                    continue
                raise
            await self._give(conn)
            return replies
        raise AssertionError("unreachable")  # pragma: no cover

    async def _retry(self, conn: Any, exc: BaseException, attempt: int) -> bool:
        """See :meth:`Lane._retry`."""
        await conn.disconnect()
        if not isinstance(exc, redis.ConnectionError):
            await self.pool.release(conn)
            return False
        await self.drain()
        if attempt == 1:
            return True
        await self.pool.release(conn)
        return False

    async def drain(self) -> None:
        """See :meth:`Lane.drain`."""
        idle, self.idle = self.idle, []
        for other in idle:
            await other.disconnect()
            await self.pool.release(other)

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)


_LANES: weakref.WeakSet[Lane] = weakref.WeakSet()
if hasattr(os, "register_at_fork"):

    def _forget_lanes() -> None:
        for lane in list(_LANES):
            lane.forget()

    os.register_at_fork(after_in_child=_forget_lanes)


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
        if isinstance(exc, _PoolExhausted):
            raise PoolTimeout(str(exc)) from None
        if isinstance(exc, (redis.TimeoutError, TimeoutError, asyncio.TimeoutError)):
            raise BackendTimeout(f"redis {self.op} timed out") from exc
        if isinstance(exc, (redis.RedisError, OSError)):
            raise BackendError(f"redis {self.op} failed: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Lease:
    """A caller's claim on computing one entry across processes (``lock=True``)."""

    key: str  # the lease key: the entry key + ":lease"
    token: str  # who holds it; only its holder's token releases it
    ms: int  # how long it lives unless released (``lock_timeout``): a dead holder frees it so
    channel: str  # where the fill notice that wakes the waiters is published


@dataclass(frozen=True, slots=True)
class Read:
    """What one L2 read returned: the raw entry and, if asked, the current tag versions."""

    raw: bytes | None
    versions: tuple[int, ...] | None
    granted: bool | None = None  # lease reads: whether this caller got the lease
    holder: str | None = None  # lease reads: the token of whoever holds it


class TierFigures:
    """Counters of one Redis tier for ``stats()``: the corrupt version and lease keys its scripts
    replaced (each logged), and the checkouts that waited for a pooled connection: how many
    (``pool_waits``), how long, how many ran out of ``pool_timeout``, how many wait now."""

    __slots__ = (
        "_lock",
        "corrupt_replaced",
        "pool_timeouts",
        "pool_wait_max",
        "pool_wait_seconds",
        "pool_waiting",
        "pool_waits",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.corrupt_replaced = 0
        self.pool_waits = 0
        self.pool_timeouts = 0
        self.pool_waiting = 0
        self.pool_wait_seconds = 0.0
        self.pool_wait_max = 0.0

    def replaced(self, count: int) -> None:
        if count:
            with self._lock:
                self.corrupt_replaced += count
            log.warning(
                "tta-cache: %d Redis key(s) held neither a tag version nor a lease (corrupt);"
                " replaced by fresh ones",
                count,
            )

    def wait_started(self) -> float:
        with self._lock:
            self.pool_waiting += 1
        return time.perf_counter()

    def wait_ended(self, started: float, *, timed_out: bool = False) -> None:
        took = time.perf_counter() - started
        with self._lock:
            self.pool_waiting -= 1
            self.pool_waits += 1
            self.pool_timeouts += timed_out
            self.pool_wait_seconds += took
            self.pool_wait_max = max(self.pool_wait_max, took)


def tier_figures(*tiers: RedisTier | AsyncRedisTier | None) -> dict[str, Any]:
    """``corrupt_keys_replaced`` and ``pool`` (waits, timeouts, waiting, wait_seconds,
    max_wait_seconds) of the sync and asyncio tiers together, for ``stats()``."""
    figures = [t.figures for t in tiers if t is not None]
    return {
        "corrupt_keys_replaced": sum(f.corrupt_replaced for f in figures),
        "pool": {
            "waits": sum(f.pool_waits for f in figures),
            "timeouts": sum(f.pool_timeouts for f in figures),
            "waiting": sum(f.pool_waiting for f in figures),
            "wait_seconds": sum(f.pool_wait_seconds for f in figures),
            "max_wait_seconds": max((f.pool_wait_max for f in figures), default=0.0),
        },
    }


class _Base(Generic[T]):
    def __init__(self, cfg: RedisConfig, tag_ttl: Callable[[], int]) -> None:
        self.cfg = cfg
        self.cluster = cfg.mode == "cluster"
        self._tag_ttl = tag_ttl
        self.figures = TierFigures()

    def _versions_of(self, reply: Any, count: int) -> tuple[int, ...]:
        versions, replaced = _versions_reply(reply, count)
        if replaced:
            self.figures.replaced(replaced)
        return versions

    def _lease_of(self, reply: LeaseReply) -> LeaseReply:
        if reply[3]:
            self.figures.replaced(reply[3])
        return reply


class RedisTier(_Base[Any]):
    """Synchronous Redis operations of the engine (one round trip each unless said)."""

    def __init__(self, cfg: RedisConfig, tag_ttl: Callable[[], int]) -> None:
        super().__init__(cfg, tag_ttl)
        self.client = make_sync_client(cfg, figures=self.figures)
        lane = min(8, cfg.max_connections // 4)  # never enough to starve the pool's other users
        self.lane = None if self.cluster or not lane else Lane(self.client.connection_pool, lane)
        self._versions = self.client.register_script(VERSIONS_LUA)
        self._bump = self.client.register_script(BUMP_LUA)
        self._lease = self.client.register_script(LEASE_READ_LUA)
        self._fill = self.client.register_script(FILL_LUA)

    def get(self, key: str) -> bytes | None:
        """One GET (the engine's fast path for an L2 hit)."""
        with translated("GET"):
            try:
                if self.lane is not None:
                    return self.lane.call("GET", key)  # type: ignore[no-any-return]
                return self.client.get(key)  # type: ignore[no-any-return]
            except redis.ResponseError as exc:
                return _entry_reply(exc)

    def read(self, key: str, tag_keys: Sequence[str]) -> Read:
        if not tag_keys:
            return Read(self.get(key), None)
        with translated("GET"):
            if self.cluster:
                raw = self.get(key)
                return Read(raw, self.versions(tag_keys))
            ttl = self._tag_ttl()
            if self.lane is not None:
                return self._lane_read(key, tag_keys, ttl)

            def build(pipe: Any) -> None:
                pipe.get(key)
                pipe.evalsha(self._versions.sha, len(tag_keys), *tag_keys, ttl)

            raw, versions = self._pipeline(build)
            return Read(_entry_reply(raw), self._versions_of(versions, len(tag_keys)))

    def _lane_read(self, key: str, tag_keys: Sequence[str], ttl: int) -> Read:
        assert self.lane is not None
        versions = ("EVALSHA", self._versions.sha, len(tag_keys), *tag_keys, ttl)
        raw, found = self.lane.pipeline(("GET", key), versions)
        if isinstance(found, redis.exceptions.NoScriptError):  # Redis lost it: load, ask again
            self.client.script_load(self._versions.script)
            found = self.lane.call(*versions)
        return Read(_entry_reply(raw), self._versions_of(found, len(tag_keys)))

    def lease_read(self, key: str, tag_keys: Sequence[str], lease: Lease, force: bool) -> Read:
        """:meth:`read`, taking the key's lease if the key is absent (or ``force``), in one round
        trip. In Cluster with the key and its lease in different slots it is not atomic: a fill
        landing between the GET and the SET NX costs one extra computation, never a wrong value."""
        keys, args = [key, lease.key], [lease.token, lease.ms, "1" if force else "0"]
        with translated("EVALSHA lease"):
            if self.cluster:
                if _same_slot(key, lease.key):
                    reply = _lease_reply(self._lease(keys=keys, args=args))
                else:
                    reply = self._run(_lease_apart(key, lease, force))
                raw, granted, holder, _ = self._lease_of(reply)
                return Read(raw, self.versions(tag_keys) if tag_keys else None, granted, holder)
            if not tag_keys:
                raw, granted, holder, _ = self._lease_of(
                    _lease_reply(self._lease(keys=keys, args=args))
                )
                return Read(raw, None, granted, holder)
            ttl = self._tag_ttl()

            def build(pipe: Any) -> None:
                pipe.evalsha(self._lease.sha, len(keys), *keys, *args)
                pipe.evalsha(self._versions.sha, len(tag_keys), *tag_keys, ttl)

            reply, versions = self._pipeline(build)
            raw, granted, holder, _ = self._lease_of(_lease_reply(reply))
            return Read(raw, self._versions_of(versions, len(tag_keys)), granted, holder)

    def _pipeline(self, build: Callable[[Any], None]) -> list[Any]:
        """Run a pipeline that calls scripts by EVALSHA; error replies come back in place.
        redis-py's own script objects would send SCRIPT EXISTS first, a round trip more on every
        call; a script Redis lost (restart, SCRIPT FLUSH) is loaded and the pipeline run again."""
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            build(pipe)
            replies = list(pipe.execute(raise_on_error=False))
            if attempt == 2 or not any(
                isinstance(r, redis.exceptions.NoScriptError) for r in replies
            ):
                return replies
            for script in (self._versions, self._lease):
                self.client.script_load(script.script)
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, steps: Generator[tuple[Any, ...], Any, T]) -> T:
        """Run a sans-IO step generator (such as :func:`_lease_apart`) command by command."""
        reply: Any = None
        while True:
            try:
                command = steps.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                reply = self.client.execute_command(*command)
            except redis.ResponseError as exc:
                reply = exc

    def fill(self, key: str, payload: bytes | None, px: int, lease: Lease, notice: bytes) -> None:
        """Write the entry (unless ``payload`` is None), release the lease if it is still ours, and
        publish the fill ``notice`` that wakes the waiters of every process: one round trip."""
        release = [lease.token, lease.channel, notice]
        with translated("EVALSHA fill"):
            if payload is None:
                self._fill(keys=[lease.key], args=release)
            elif self.cluster and not _same_slot(key, lease.key):
                self.client.set(key, payload, px=px)
                self._fill(keys=[lease.key], args=release)
            else:
                self._fill(keys=[lease.key, key], args=[*release, payload, px])

    def versions(self, tag_keys: Sequence[str]) -> tuple[int, ...]:
        with translated("EVALSHA versions"):
            ttl = self._tag_ttl()
            if self.cluster:
                return tuple(
                    self._versions_of(self._versions(keys=[k], args=[ttl]), 1)[0] for k in tag_keys
                )
            return self._versions_of(self._versions(keys=list(tag_keys), args=[ttl]), len(tag_keys))

    def write(self, key: str, payload: bytes, px: int) -> None:
        with translated("SET"):
            if self.lane is not None:
                self.lane.call("SET", key, payload, "PX", px)
            else:
                self.client.set(key, payload, px=px)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        with translated("MGET"):
            if self.cluster:
                return list(self.client.mget_nonatomic(keys))
            if self.lane is not None:
                return self.lane.call("MGET", *keys)  # type: ignore[no-any-return]
            return list(self.client.mget(keys))

    def set_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        with translated("SET"):
            if self.lane is not None:
                _raise_first(self.lane.pipeline(*(("SET", k, p, "PX", px) for k, p, px in items)))
                return
            pipe = self.client.pipeline(transaction=False)
            for key, payload, px in items:
                pipe.set(key, payload, px=px)
            pipe.execute()

    def delete(self, keys: Sequence[str], channel: str | None = None, message: bytes = b"") -> int:
        with translated("DEL"):
            if self.cluster:
                n = sum(int(self.client.delete(k)) for k in keys)
                if channel:
                    self.client.publish(channel, message)
                return n
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(*keys)
            if channel:
                pipe.publish(channel, message)
            return int(pipe.execute()[0])

    def bump(
        self, tag_keys: Sequence[str], tags: Sequence[str], channel: str, head: str
    ) -> tuple[int, ...]:
        """INCR the versions of ``tags`` (kept at ``tag_keys``) and publish them on ``channel``."""
        with translated("EVALSHA bump"):
            ttl = self._tag_ttl()
            if self.cluster:  # one slot per script: each run publishes its own tag
                return tuple(
                    self._versions_of(self._bump(keys=[k], args=[ttl, channel, head, t]), 1)[0]
                    for k, t in zip(tag_keys, tags, strict=True)
                )
            reply = self._bump(keys=list(tag_keys), args=[ttl, channel, head, *tags])
            return self._versions_of(reply, len(tag_keys))

    def ping(self) -> bool:
        with translated("PING"):
            return bool(self.client.ping())

    def pool_usage(self) -> dict[str, int]:
        """This client's connections: ``in_use``, ``idle``, ``available`` (to open), ``max``."""
        if self.cluster:
            nodes = self.client.get_nodes()
            pools = [n.redis_connection.connection_pool for n in nodes if n.redis_connection]
        else:
            pools = [self.client.connection_pool]
        return _pool_usage(pools, [self.lane])

    def failed_over(self) -> None:
        """The master moved: drop the kept and idle connections, so that the next commands
        connect to the new one (in-flight ones finish where they are)."""
        if self.lane is not None:
            self.lane.drain()
        with contextlib.suppress(Exception):
            self.client.connection_pool.disconnect(inuse_connections=False)

    def execute(self, op: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(client)`` with errors translated (maintenance and tooling)."""
        with translated(op):
            return fn(self.client)

    def close(self) -> None:
        if self.lane is not None:
            self.lane.close()
        with contextlib.suppress(Exception):
            self.client.close()
            pool = getattr(self.client, "connection_pool", None)
            if pool is not None:  # made here and handed over: the client leaves it open
                pool.disconnect()


class AsyncRedisTier(_Base[Any]):
    """The asyncio twin, one client per running event loop (redis.asyncio clients are loop-bound).

    Only I/O differs from :class:`RedisTier`; every decision lives in the engine's flow.
    """

    def __init__(self, cfg: RedisConfig, tag_ttl: Callable[[], int]) -> None:
        super().__init__(cfg, tag_ttl)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = make_async_client(self.cfg, figures=self.figures)
            client._tta_versions = client.register_script(VERSIONS_LUA)
            client._tta_bump = client.register_script(BUMP_LUA)
            client._tta_lease = client.register_script(LEASE_READ_LUA)
            client._tta_fill = client.register_script(FILL_LUA)
            size = min(8, self.cfg.max_connections // 4)
            lane = None if self.cluster or not size else AsyncLane(client.connection_pool, size)
            client._tta_lane = lane
            self._clients[loop] = client
        return client

    async def get(self, key: str) -> bytes | None:
        client = self.client
        with translated("GET"):
            try:
                if client._tta_lane is not None:
                    return await client._tta_lane.call("GET", key)  # type: ignore[no-any-return]
                return await client.get(key)  # type: ignore[no-any-return]
            except redis.ResponseError as exc:
                return _entry_reply(exc)

    async def read(self, key: str, tag_keys: Sequence[str]) -> Read:
        if not tag_keys:
            return Read(await self.get(key), None)
        client = self.client
        with translated("GET"):
            if self.cluster:
                raw = await self.get(key)
                return Read(raw, await self.versions(tag_keys))
            ttl = self._tag_ttl()
            script = client._tta_versions
            lane = client._tta_lane
            if lane is not None:
                versions = ("EVALSHA", script.sha, len(tag_keys), *tag_keys, ttl)
                raw, found = await lane.pipeline(("GET", key), versions)
                if isinstance(found, redis.exceptions.NoScriptError):  # lost: load, ask again
                    await client.script_load(script.script)
                    found = await lane.call(*versions)
                return Read(_entry_reply(raw), self._versions_of(found, len(tag_keys)))

            def build(pipe: Any) -> None:
                pipe.get(key)
                pipe.evalsha(script.sha, len(tag_keys), *tag_keys, ttl)

            raw, found = await self._pipeline(client, build)
            return Read(_entry_reply(raw), self._versions_of(found, len(tag_keys)))

    async def lease_read(
        self, key: str, tag_keys: Sequence[str], lease: Lease, force: bool
    ) -> Read:
        client = self.client
        keys, args = [key, lease.key], [lease.token, lease.ms, "1" if force else "0"]
        with translated("EVALSHA lease"):
            if self.cluster:
                if _same_slot(key, lease.key):
                    reply = _lease_reply(await client._tta_lease(keys=keys, args=args))
                else:
                    reply = await self._run(client, _lease_apart(key, lease, force))
                raw, granted, holder, _ = self._lease_of(reply)
                versions = await self.versions(tag_keys) if tag_keys else None
                return Read(raw, versions, granted, holder)
            if not tag_keys:
                reply = _lease_reply(await client._tta_lease(keys=keys, args=args))
                raw, granted, holder, _ = self._lease_of(reply)
                return Read(raw, None, granted, holder)
            ttl = self._tag_ttl()

            def build(pipe: Any) -> None:
                pipe.evalsha(client._tta_lease.sha, len(keys), *keys, *args)
                pipe.evalsha(client._tta_versions.sha, len(tag_keys), *tag_keys, ttl)

            reply, versions = await self._pipeline(client, build)
            raw, granted, holder, _ = self._lease_of(_lease_reply(reply))
            return Read(raw, self._versions_of(versions, len(tag_keys)), granted, holder)

    @staticmethod
    async def _run(client: Any, steps: Generator[tuple[Any, ...], Any, T]) -> T:
        """:meth:`RedisTier._run` with the asyncio client."""
        reply: Any = None
        while True:
            try:
                command = steps.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                reply = await client.execute_command(*command)
            except redis.ResponseError as exc:
                reply = exc

    async def fill(
        self, key: str, payload: bytes | None, px: int, lease: Lease, notice: bytes
    ) -> None:
        client = self.client
        release = [lease.token, lease.channel, notice]
        with translated("EVALSHA fill"):
            if payload is None:
                await client._tta_fill(keys=[lease.key], args=release)
            elif self.cluster and not _same_slot(key, lease.key):
                await client.set(key, payload, px=px)
                await client._tta_fill(keys=[lease.key], args=release)
            else:
                await client._tta_fill(keys=[lease.key, key], args=[*release, payload, px])

    @staticmethod
    async def _pipeline(client: Any, build: Callable[[Any], None]) -> list[Any]:
        """:meth:`RedisTier._pipeline`; ``async with`` resets a failed pipeline, so its
        connection goes back to the pool."""
        for attempt in (1, 2):
            async with client.pipeline(transaction=False) as pipe:
                build(pipe)
                replies = list(await pipe.execute(raise_on_error=False))
            if attempt == 2 or not any(
                isinstance(r, redis.exceptions.NoScriptError) for r in replies
            ):
                return replies
            for script in (client._tta_versions, client._tta_lease):
                await client.script_load(script.script)
        raise AssertionError("unreachable")  # pragma: no cover

    async def versions(self, tag_keys: Sequence[str]) -> tuple[int, ...]:
        client = self.client
        with translated("EVALSHA versions"):
            ttl = self._tag_ttl()
            if self.cluster:
                out: list[int] = []
                for k in tag_keys:
                    reply = await client._tta_versions(keys=[k], args=[ttl])
                    out.extend(self._versions_of(reply, 1))
                return tuple(out)
            reply = await client._tta_versions(keys=list(tag_keys), args=[ttl])
            return self._versions_of(reply, len(tag_keys))

    async def write(self, key: str, payload: bytes, px: int) -> None:
        client = self.client
        with translated("SET"):
            if client._tta_lane is not None:
                await client._tta_lane.call("SET", key, payload, "PX", px)
            else:
                await client.set(key, payload, px=px)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        client = self.client
        with translated("MGET"):
            if self.cluster:
                return list(await client.mget_nonatomic(keys))
            if client._tta_lane is not None:
                return await client._tta_lane.call("MGET", *keys)  # type: ignore[no-any-return]
            return list(await client.mget(keys))

    async def set_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        with translated("SET"):
            async with self.client.pipeline(transaction=False) as pipe:
                for key, payload, px in items:
                    pipe.set(key, payload, px=px)
                await pipe.execute()

    async def delete(
        self, keys: Sequence[str], channel: str | None = None, message: bytes = b""
    ) -> int:
        client = self.client
        with translated("DEL"):
            if self.cluster:
                n = 0
                for k in keys:
                    n += int(await client.delete(k))
                if channel:
                    await client.publish(channel, message)
                return n
            async with client.pipeline(transaction=False) as pipe:
                pipe.delete(*keys)
                if channel:
                    pipe.publish(channel, message)
                return int((await pipe.execute())[0])

    async def bump(
        self, tag_keys: Sequence[str], tags: Sequence[str], channel: str, head: str
    ) -> tuple[int, ...]:
        client = self.client
        with translated("EVALSHA bump"):
            ttl = self._tag_ttl()
            if self.cluster:
                out: list[int] = []
                for k, t in zip(tag_keys, tags, strict=True):
                    got = await client._tta_bump(keys=[k], args=[ttl, channel, head, t])
                    out.extend(self._versions_of(got, 1))
                return tuple(out)
            args = [ttl, channel, head, *tags]
            reply = await client._tta_bump(keys=list(tag_keys), args=args)
            return self._versions_of(reply, len(tag_keys))

    async def ping(self) -> bool:
        with translated("PING"):
            return bool(await self.client.ping())

    def pool_usage(self) -> dict[str, int]:
        """Connections of the clients of every live event loop (see :meth:`RedisTier.pool_usage`);
        Cluster clients are not counted."""
        clients = [] if self.cluster else list(self._clients.values())
        return _pool_usage((c.connection_pool for c in clients), (c._tta_lane for c in clients))

    def failed_over(self) -> None:
        """:meth:`RedisTier.failed_over` for the client of every live event loop; callable from
        any thread (each loop drops its own connections)."""
        for loop, client in list(self._clients.items()):
            if not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    asyncio.run_coroutine_threadsafe(self._reconnect(client), loop)

    @staticmethod
    async def _reconnect(client: Any) -> None:
        with contextlib.suppress(Exception):
            if client._tta_lane is not None:
                await client._tta_lane.drain()
            await client.connection_pool.disconnect(inuse_connections=False)

    async def execute(self, op: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        with translated(op):
            return await fn(self.client)

    async def aclose(self) -> None:
        """Close the client of the running loop (others are closed with their loops)."""
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            client = self._clients.pop(loop, None)
            if client is not None:
                with contextlib.suppress(Exception):
                    if client._tta_lane is not None:
                        await client._tta_lane.close()
                    if self.cluster:  # a cluster client owns its node pools
                        await client.aclose()
                    else:  # the pool was made here and handed over: the client leaves it open
                        await client.aclose(close_connection_pool=True)
                    manager = getattr(client.connection_pool, "sentinel_manager", None)
                    for sentinel in getattr(manager, "sentinels", ()):  # the discovery clients
                        await sentinel.aclose()
