"""The public API: :class:`Cache` (``cache.py``), the decorators' wrappers (``wrappers.py``) and
what they know of a function (``spec.py``), raw access (``raw_calls.py``), checked options
(``options.py``) and the default cache behind the module-level decorators (``default.py``)."""

from __future__ import annotations

from .cache import Cache
from .default import (
    configure,
    default_cache,
    module_cached,
    module_cached_many,
    module_cached_session,
    module_invalidates,
)
from .options import DEFAULT_TTL
from .wrappers import AsyncCachedFunction, CachedFunction

__all__ = [
    "DEFAULT_TTL",
    "AsyncCachedFunction",
    "Cache",
    "CachedFunction",
    "configure",
    "default_cache",
    "module_cached",
    "module_cached_many",
    "module_cached_session",
    "module_invalidates",
]
