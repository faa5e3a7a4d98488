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
import itertools
import os
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as ARetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from .exceptions import BackendError, BackendTimeout, ConfigurationError

__all__ = [
    "FILL_LUA",
    "LEASE_READ_LUA",
    "AsyncRedisTier",
    "Lease",
    "Read",
    "RedisConfig",
    "RedisTier",
    "mask_url",
]

T = TypeVar("T")

# Tag versions start at the server's clock in microseconds, so a version recreated after data loss
# (restart, eviction, FLUSHDB, failover to an empty replica) is larger than any it replaces: stamps
# taken before the loss can never match again, and "merge by max" stays right.
_INIT = """
local init = nil
local function version(k, ttl)
  local v = redis.call('GET', k)
  if not v then
    if not init then
      local t = redis.call('TIME')
      init = t[1] .. string.format('%06d', tonumber(t[2]))
    end
    redis.call('SET', k, init, 'EX', ttl)
    return init
  end
  if redis.call('TTL', k) < ttl then redis.call('EXPIRE', k, ttl) end
  return v
end
"""

# KEYS: tag version keys. ARGV[1]: seconds a version must outlive. Returns the versions.
VERSIONS_LUA = (
    _INIT
    + """
local ttl = tonumber(ARGV[1])
local out = {}
for i, k in ipairs(KEYS) do out[i] = version(k, ttl) end
return out
"""
)

# KEYS: tag version keys. ARGV[1]: ttl; ARGV[2]: channel; ARGV[3]: message head (JSON object without
# its closing brace); ARGV[4..]: the tags, one per key. Bumps every version and publishes the tags
# and their new versions in the same atomic step, so subscribers see versions of one tag in
# increasing order. In a cluster it runs once per tag key, each run publishing its own tag.
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
return out
"""
)


# KEYS: the entry key, its lease key. ARGV: token, lease ms, force ("1": the caller cannot use the
# entry it finds, so take the lease even though the key exists). One round trip for a miss under
# ``lock=True``: returns {entry or false, 1 if the lease was granted else 0, the holder or false}.
LEASE_READ_LUA = """
local v = redis.call('GET', KEYS[1])
if v and ARGV[3] ~= '1' then return {v, 0, false} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {v, 1, ARGV[1]} end
return {v, 0, redis.call('GET', KEYS[2])}
"""

# KEYS: the lease key[, the entry key]. ARGV: token, channel, fill notice[, payload, px]. Writes the
# entry (if given), releases the lease only if it still holds our token, and tells the waiters of
# every process at once: a fill, a release and a wake-up in one round trip.
FILL_LUA = """
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""


def _same_slot(a: str, b: str) -> bool:
    from redis.crc import key_slot

    return bool(key_slot(a.encode()) == key_slot(b.encode()))


def _lease_reply(reply: Sequence[Any]) -> tuple[bytes | None, bool, str | None]:
    raw, granted, holder = reply
    return raw or None, bool(granted), holder.decode() if isinstance(holder, bytes) else holder


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


def _secret_name(name: str) -> bool:
    """Whether an option or URL query parameter named ``name`` holds a secret."""
    name = name.lower()
    return "password" in name or "secret" in name or name in ("auth", "token")


def mask_url(url: str) -> str:
    """The URL with any password (in the authority or the query) replaced by ``***`` (for
    reprs, logs, health output and the CLI)."""
    parts = urlsplit(url)
    if parts.password is not None:
        user = parts.username or ""
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{user}:***@{host}")
    if parts.query:
        query = "&".join(
            f"{name}=***" if _secret_name(name) else f"{name}{sep}{value}"
            for name, sep, value in (p.partition("=") for p in parts.query.split("&"))
        )
        parts = parts._replace(query=query)
    return parts.geturl()


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
    pool_timeout: float = 1.0
    health_check_interval: float = 30.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Never the password: not in the URL, the field, or a password-like extra option.
        shown = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("url", "password", "extra")
        }
        extra = {k: "***" if _secret_name(k) else v for k, v in self.extra.items()}
        password = None if self.password is None else "***"
        items = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return (
            f"RedisConfig(url={mask_url(self.url)!r}, password={password!r}, {items}, "
            f"extra={extra!r})"
        )

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


def _blocking_pool(flavour: Any, cfg: RedisConfig, common: dict[str, Any]) -> Any:
    """A standalone blocking pool from ``flavour`` (``redis`` or ``redis.asyncio``): callers wait
    up to ``pool_timeout`` for one of ``max_connections`` rather than fail at once."""
    bounds = {"max_connections": cfg.max_connections, "timeout": cfg.pool_timeout}
    if cfg.url.startswith("unix://"):
        return flavour.BlockingConnectionPool.from_url(cfg.url, **bounds, **common)
    host, port = cfg.address
    return flavour.BlockingConnectionPool(
        host=host,
        port=port,
        db=cfg.db,
        connection_class=flavour.SSLConnection if cfg.ssl else flavour.Connection,
        **bounds,
        **common,
    )


def make_sync_client(cfg: RedisConfig, *, op_timeout: float | None = None) -> Any:
    """A redis-py client for ``cfg`` (``op_timeout`` overrides the socket timeout, for pub/sub)."""
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
    return redis.Redis(connection_pool=_blocking_pool(redis, cfg, common), retry=_retry())


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


def make_async_client(cfg: RedisConfig) -> Any:
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
    return aredis.Redis(connection_pool=_blocking_pool(aredis, cfg, common), retry=_aretry())


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
        if exc is None:
            return
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


class _Base(Generic[T]):
    def __init__(self, cfg: RedisConfig, tag_ttl: Callable[[], int]) -> None:
        self.cfg = cfg
        self.cluster = cfg.mode == "cluster"
        self._tag_ttl = tag_ttl


class RedisTier(_Base[Any]):
    """Synchronous Redis operations of the engine (one round trip each unless said)."""

    def __init__(self, cfg: RedisConfig, tag_ttl: Callable[[], int]) -> None:
        super().__init__(cfg, tag_ttl)
        self.client = make_sync_client(cfg)
        lane = min(8, cfg.max_connections // 4)  # never enough to starve the pool's other users
        self.lane = None if self.cluster or not lane else Lane(self.client.connection_pool, lane)
        self._versions = self.client.register_script(VERSIONS_LUA)
        self._bump = self.client.register_script(BUMP_LUA)
        self._lease = self.client.register_script(LEASE_READ_LUA)
        self._fill = self.client.register_script(FILL_LUA)

    def get(self, key: str) -> bytes | None:
        """One GET (the engine's fast path for an L2 hit)."""
        with translated("GET"):
            if self.lane is not None:
                return self.lane.call("GET", key)  # type: ignore[no-any-return]
            return self.client.get(key)  # type: ignore[no-any-return]

    def read(self, key: str, tag_keys: Sequence[str]) -> Read:
        if not tag_keys:
            return Read(self.get(key), None)
        with translated("GET"):
            if self.cluster:
                raw = self.client.get(key)
                return Read(raw, self.versions(tag_keys))
            ttl = self._tag_ttl()
            if self.lane is not None:
                return self._lane_read(key, tag_keys, ttl)

            def build(pipe: Any) -> None:
                pipe.get(key)
                pipe.evalsha(self._versions.sha, len(tag_keys), *tag_keys, ttl)

            raw, versions = self._pipeline(build)
            return Read(raw, tuple(map(int, versions)))

    def _lane_read(self, key: str, tag_keys: Sequence[str], ttl: int) -> Read:
        assert self.lane is not None
        versions = ("EVALSHA", self._versions.sha, len(tag_keys), *tag_keys, ttl)
        raw, found = self.lane.pipeline(("GET", key), versions)
        if isinstance(found, redis.exceptions.NoScriptError):  # Redis lost it: load, ask again
            self.client.script_load(self._versions.script)
            found = self.lane.call(*versions)
        _raise_first((raw, found))
        return Read(raw, tuple(map(int, found)))

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
                    reply = self._lease_apart(key, lease, force)
                return Read(reply[0], self.versions(tag_keys) if tag_keys else None, *reply[1:])
            if not tag_keys:
                raw, granted, holder = _lease_reply(self._lease(keys=keys, args=args))
                return Read(raw, None, granted, holder)
            ttl = self._tag_ttl()

            def build(pipe: Any) -> None:
                pipe.evalsha(self._lease.sha, len(keys), *keys, *args)
                pipe.evalsha(self._versions.sha, len(tag_keys), *tag_keys, ttl)

            reply, versions = self._pipeline(build)
            raw, granted, holder = _lease_reply(reply)
            return Read(raw, tuple(map(int, versions)), granted, holder)

    def _pipeline(self, build: Callable[[Any], None]) -> list[Any]:
        """Run a pipeline that calls scripts by EVALSHA. redis-py's own script objects would send
        SCRIPT EXISTS first, a round trip more on every call; a script Redis lost (restart,
        SCRIPT FLUSH) is loaded and the pipeline run again."""
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            build(pipe)
            try:
                return list(pipe.execute())
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                for script in (self._versions, self._lease):
                    self.client.script_load(script.script)
        raise AssertionError("unreachable")  # pragma: no cover

    def _lease_apart(
        self, key: str, lease: Lease, force: bool
    ) -> tuple[bytes | None, bool, str | None]:
        raw = self.client.get(key)
        if raw is not None and not force:
            return raw, False, None
        if self.client.set(lease.key, lease.token, nx=True, px=lease.ms):
            return raw, True, lease.token
        return _lease_reply((raw, 0, self.client.get(lease.key)))

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
                return tuple(int(self._versions(keys=[k], args=[ttl])[0]) for k in tag_keys)
            return tuple(map(int, self._versions(keys=list(tag_keys), args=[ttl])))

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
                    int(self._bump(keys=[k], args=[ttl, channel, head, t])[0])
                    for k, t in zip(tag_keys, tags, strict=True)
                )
            return tuple(
                map(int, self._bump(keys=list(tag_keys), args=[ttl, channel, head, *tags]))
            )

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
            client = make_async_client(self.cfg)
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
            if client._tta_lane is not None:
                return await client._tta_lane.call("GET", key)  # type: ignore[no-any-return]
            return await client.get(key)  # type: ignore[no-any-return]

    async def read(self, key: str, tag_keys: Sequence[str]) -> Read:
        if not tag_keys:
            return Read(await self.get(key), None)
        client = self.client
        with translated("GET"):
            if self.cluster:
                raw = await client.get(key)
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
                _raise_first((raw, found))
                return Read(raw, tuple(map(int, found)))

            def build(pipe: Any) -> None:
                pipe.get(key)
                pipe.evalsha(script.sha, len(tag_keys), *tag_keys, ttl)

            raw, found = await self._pipeline(client, build)
            return Read(raw, tuple(map(int, found)))

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
                    reply = await self._lease_apart(client, key, lease, force)
                versions = await self.versions(tag_keys) if tag_keys else None
                return Read(reply[0], versions, *reply[1:])
            if not tag_keys:
                raw, granted, holder = _lease_reply(await client._tta_lease(keys=keys, args=args))
                return Read(raw, None, granted, holder)
            ttl = self._tag_ttl()

            def build(pipe: Any) -> None:
                pipe.evalsha(client._tta_lease.sha, len(keys), *keys, *args)
                pipe.evalsha(client._tta_versions.sha, len(tag_keys), *tag_keys, ttl)

            reply, versions = await self._pipeline(client, build)
            raw, granted, holder = _lease_reply(reply)
            return Read(raw, tuple(map(int, versions)), granted, holder)

    @staticmethod
    async def _lease_apart(
        client: Any, key: str, lease: Lease, force: bool
    ) -> tuple[bytes | None, bool, str | None]:
        raw = await client.get(key)
        if raw is not None and not force:
            return raw, False, None
        if await client.set(lease.key, lease.token, nx=True, px=lease.ms):
            return raw, True, lease.token
        return _lease_reply((raw, 0, await client.get(lease.key)))

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
                try:
                    return list(await pipe.execute())
                except redis.exceptions.NoScriptError:
                    if attempt == 2:
                        raise
            for script in (client._tta_versions, client._tta_lease):
                await client.script_load(script.script)
        raise AssertionError("unreachable")  # pragma: no cover

    async def versions(self, tag_keys: Sequence[str]) -> tuple[int, ...]:
        client = self.client
        with translated("EVALSHA versions"):
            ttl = self._tag_ttl()
            if self.cluster:
                return tuple(
                    [int((await client._tta_versions(keys=[k], args=[ttl]))[0]) for k in tag_keys]
                )
            return tuple(map(int, await client._tta_versions(keys=list(tag_keys), args=[ttl])))

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
                    out.append(int(got[0]))
                return tuple(out)
            args = [ttl, channel, head, *tags]
            return tuple(map(int, await client._tta_bump(keys=list(tag_keys), args=args)))

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
