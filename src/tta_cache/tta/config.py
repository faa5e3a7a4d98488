"""The seed's configuration dict, read into :class:`~tta_cache.Cache` keyword arguments."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from tta_cache.api.options import keys_from_environment
from tta_cache.core.policy import CircuitBreaker
from tta_cache.exceptions import ConfigurationError

__all__ = ["DEFAULT_REDIS_URL", "cache_options_from_config"]

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
"""Used when neither the config nor ``TTA_CACHE_REDIS_URL`` names a Redis."""

# The seed's connection keys; the rest of the config dict passes to Cache as is.
_CONNECTION_KEYS = frozenset(
    {"host", "port", "db", "password", "username", "ssl", "redis_url", "url"}
)
_CACHE_KEYS = frozenset(
    {
        "namespace",
        "local_maxsize",
        "ttl",
        "default_ttl",
        "serializer",
        "compress_min_bytes",
        "signing_key",
        "encryption_keys",
        "encrypt_kinds",
        "max_value_bytes",
        "on_error",
        "op_timeout",
        "lock_timeout",
    }
)
# Accepted for compatibility and deliberately not applied: payloads are binary envelopes, and a
# timeout is not retried so that op_timeout bounds every operation (the breaker and fail-open
# cover a slow Redis instead).
_IGNORED_KEYS = frozenset({"decode_responses", "retry_on_timeout"})
_TLS_KEYS = frozenset(
    {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"}
)
_MAPPED_KEYS = frozenset(
    {"socket_timeout", "socket_connect_timeout", "max_connections", "health_check_interval"}
    | {"max_connection_failures"}
    | _TLS_KEYS
)


def cache_options_from_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """:class:`~tta_cache.Cache` keyword arguments for the seed's configuration dict.

    ``redis_url`` wins; else ``host``/``port``/``db`` (with ``password``, ``username``, ``ssl``)
    form the URL; else ``$TTA_CACHE_REDIS_URL``; else :data:`DEFAULT_REDIS_URL`.
    ``encryption_keys`` and ``signing_key``, when not given, come from
    ``$TTA_CACHE_ENCRYPTION_KEYS`` and ``$TTA_CACHE_SIGNING_KEYS``.
    ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` and
    ``ssl_check_hostname`` configure TLS (with ``ssl`` or a ``rediss://`` URL).
    ``socket_timeout`` becomes ``op_timeout``, ``max_connection_failures`` the circuit breaker's
    ``failure_threshold``. ``decode_responses`` and ``retry_on_timeout`` are accepted and ignored.
    Unknown keys are a :class:`ConfigurationError` (a typo must not pass silently).
    """
    config = dict(config or {})
    unknown = set(config) - _CONNECTION_KEYS - _CACHE_KEYS - _IGNORED_KEYS - _MAPPED_KEYS
    if unknown:
        raise ConfigurationError(f"unknown cache configuration keys: {sorted(unknown)}")
    url = config.get("redis_url") or config.get("url")
    if not url and {"host", "port", "db"} & set(config):
        scheme = "rediss" if config.get("ssl") else "redis"
        auth = ""
        if config.get("password") is not None:
            user = quote(str(config.get("username") or ""), safe="")
            auth = f"{user}:{quote(str(config['password']), safe='')}@"
        host = config.get("host", "localhost")
        url = f"{scheme}://{auth}{host}:{int(config.get('port', 6379))}/{int(config.get('db', 0))}"
    if not url:
        url = os.environ.get("TTA_CACHE_REDIS_URL") or DEFAULT_REDIS_URL
    options = keys_from_environment({k: config[k] for k in _CACHE_KEYS if k in config})
    options["redis_url"] = url
    if "socket_timeout" in config:
        options.setdefault("op_timeout", float(config["socket_timeout"]))
    if "max_connections" in config:
        options["max_connections"] = int(config["max_connections"])
    if "health_check_interval" in config:
        options["health_check_interval"] = float(config["health_check_interval"])
    redis_options = {k: config[k] for k in _TLS_KEYS if k in config}
    if "socket_connect_timeout" in config:
        redis_options["socket_connect_timeout"] = float(config["socket_connect_timeout"])
    if redis_options:
        options["redis_options"] = redis_options
    if "max_connection_failures" in config:
        options["breaker"] = CircuitBreaker(
            failure_threshold=int(config["max_connection_failures"])
        )
    return options
