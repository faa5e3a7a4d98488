"""The one exception tree of tta-cache.

::

    CacheError
    ├── ConfigurationError (ValueError)      bad settings (no signing key, unknown serializer, ...)
    │   └── TemplateError                    a key/tag template names a parameter the function lacks
    ├── KeyEncodingError (TypeError)         an argument cannot be part of a key
    ├── SerializationError (TypeError)       a value cannot be encoded by the configured serializer
    ├── DecodeError                          a payload is corrupt, foreign, truncated or unsigned
    ├── BackendError                         Redis failed (down, slow, refused); wraps redis-py's
    │   ├── BackendTimeout (TimeoutError)    an operation exceeded ``op_timeout``
    │   ├── PoolTimeout (TimeoutError)       no pooled connection came free within ``pool_timeout``
    │   └── NotReplicated                    fewer replicas than ``bump_replicas`` took a tag bump
    ├── LeaseTimeout (TimeoutError)          waited ``lock_timeout`` for another holder's fill
    └── ComputeTimeout (TimeoutError)        the decorated function exceeded its ``hard_timeout``

Redis errors are translated into :class:`BackendError` in one place (``tiers.redis.errors``);
callers of a decorated function only see one when ``on_error="raise"``.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendTimeout",
    "CacheError",
    "ComputeTimeout",
    "ConfigurationError",
    "DecodeError",
    "KeyEncodingError",
    "LeaseTimeout",
    "NotReplicated",
    "PoolTimeout",
    "SerializationError",
    "TemplateError",
]


class CacheError(Exception):
    """Root of every error tta-cache raises."""


class ConfigurationError(CacheError, ValueError):
    """The cache or a decorator was configured with settings that cannot work."""


class TemplateError(ConfigurationError):
    """A key or tag template does not fit the decorated function's signature."""


class KeyEncodingError(CacheError, TypeError):
    """An argument of a cached call cannot be encoded into a key."""


class SerializationError(CacheError, TypeError):
    """A value cannot be encoded by the configured serializer."""


class DecodeError(CacheError):
    """A stored payload cannot be decoded: corrupt, foreign, truncated, unsigned or tampered."""


class BackendError(CacheError):
    """The Redis tier failed; ``__cause__`` is the redis-py or socket error."""


class BackendTimeout(BackendError, TimeoutError):
    """A Redis operation did not answer within ``op_timeout``."""


class PoolTimeout(BackendError, TimeoutError):
    """No pooled connection came free within ``pool_timeout``: this process's own load (every one
    of ``max_connections`` busy), not a Redis fault, so the circuit breaker does not count it."""


class NotReplicated(BackendError):
    """The master took a tag bump but fewer than ``bump_replicas`` replicas acknowledged it
    within ``op_timeout``, so a failover may lose it: the invalidation is queued as undelivered
    (I8) and sent again. ``versions`` are the versions the master returned."""

    def __init__(self, message: str, versions: tuple[int, ...]) -> None:
        super().__init__(message)
        self.versions = versions


class LeaseTimeout(CacheError, TimeoutError):
    """A waiter gave up on another process's lease after ``lock_timeout``."""


class ComputeTimeout(CacheError, TimeoutError):
    """The decorated function did not return within its hard timeout."""
