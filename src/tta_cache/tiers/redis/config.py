"""Connection settings: :class:`RedisConfig`, parsed from a URL plus keyword overrides.

Standalone, Sentinel and Cluster are chosen by URL::

    redis://[:password@]host:port/db          rediss:// for TLS, unix:///path.sock?db=0
    redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]
    redis+cluster://[:password@]host:port[,host:port...]

``rediss+sentinel://`` and ``rediss+cluster://`` (or ``?ssl=true``) are the TLS forms of the last
two. ``?db=``, ``?pool_timeout=`` and the TLS options of :mod:`.tls` (``?ssl_ca_certs=...``) are
read from the query of any of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ...exceptions import ConfigurationError
from .tls import TLS_OPTIONS, TlsOptions, tls_from

__all__ = ["RedisConfig", "mask_url"]

_SCHEMES = {
    "redis": "standalone",
    "rediss": "standalone",
    "unix": "standalone",
    "redis+sentinel": "sentinel",
    "rediss+sentinel": "sentinel",
    "redis+cluster": "cluster",
    "rediss+cluster": "cluster",
}


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
    # Seconds a caller waits for one of max_connections (a wait is this process's load, not Redis
    # being slow, so not op_timeout). redis-py's pool is not fair: 64 threads on 4 connections on
    # a busy 2-core machine saw single waits of up to a second; a slow Redis opens the breaker,
    # which frees the pool. Only a pool that stopped turning over (a leak, a wedged loop) waits
    # this long, and then a counted fail-open miss beats hanging. See docs/operations.md.
    pool_timeout: float = 10.0
    health_check_interval: float = 30.0
    # asyncio: concurrent hot commands of one event loop go out as one pipeline (.autopipe)
    pipelining: bool = True
    # Replicas that must acknowledge a tag bump (WAIT) before the invalidation counts as landed:
    # an acknowledged INCR the master had not replicated is lost in a failover (docs/reliability.md)
    bump_replicas: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    tls: TlsOptions = field(default_factory=TlsOptions)
    """CA, client certificate and checks of TLS connections (used when ``ssl``)."""

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

    def __post_init__(self) -> None:
        timeout = self.pool_timeout
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise ConfigurationError(f"pool_timeout must be > 0 seconds, not {timeout!r}")
        replicas = self.bump_replicas
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise ConfigurationError(f"bump_replicas must be an int >= 0, not {replicas!r}")
        if replicas and self.mode == "cluster":
            # WAIT counts the writes of the connection it is sent on; a Cluster client spreads one
            # invalidation's bumps over the masters' pools, with no connection to send it on.
            raise ConfigurationError("bump_replicas is not supported on Redis Cluster yet")

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> RedisConfig:
        """The configuration for ``url``; ``overrides`` are fields, or TLS options (``ssl_*``,
        also accepted inside ``extra``, where ``Cache(redis_options=...)`` puts them)."""
        parts = urlsplit(url)
        scheme = parts.scheme
        if scheme not in _SCHEMES:
            raise ConfigurationError(f"unsupported Redis URL scheme {scheme!r} in {mask_url(url)}")
        mode = _SCHEMES[scheme]
        extra = dict(overrides.pop("extra", None) or {})
        tls_given = {k: extra.pop(k) for k in TLS_OPTIONS if k in extra}
        tls_given.update({k: overrides.pop(k) for k in TLS_OPTIONS if k in overrides})
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
        ssl, tls = tls_from(
            query, tls_given, scheme_tls=scheme.startswith("rediss"), unix=scheme == "unix"
        )
        if "db" in query:
            db = int(query["db"][0])
        if "pool_timeout" in query and "pool_timeout" not in overrides:
            given = query["pool_timeout"][0]
            try:
                overrides["pool_timeout"] = float(given)
            except ValueError:
                raise ConfigurationError(f"pool_timeout must be seconds, not {given!r}") from None
        if "bump_replicas" in query and not overrides.get("bump_replicas"):
            given = query["bump_replicas"][0]
            try:
                overrides["bump_replicas"] = int(given)
            except ValueError:
                raise ConfigurationError(f"bump_replicas must be an int, not {given!r}") from None
        return cls(
            url=url,
            mode=mode,
            hosts=tuple(hosts),
            service_name=service,
            db=db,
            password=unquote(parts.password) if parts.password else None,
            username=unquote(parts.username) if parts.username else None,
            ssl=ssl,
            tls=tls,
            extra=extra,
            **overrides,
        )

    @property
    def address(self) -> tuple[str, int]:
        return self.hosts[0] if self.hosts else ("127.0.0.1", 6379)

    def tls_kwargs(self) -> dict[str, Any]:
        """redis-py's ``ssl_*`` keyword arguments when TLS is on, else none."""
        return self.tls.kwargs() if self.ssl else {}

    def _common(self) -> dict[str, Any]:
        return {
            "socket_timeout": self.op_timeout,
            "socket_connect_timeout": self.connect_timeout or self.op_timeout,
            "health_check_interval": self.health_check_interval,
            "password": self.password,
            "username": self.username,
            **self.tls_kwargs(),
            **self.extra,
            "decode_responses": False,  # payloads are binary envelopes
        }
