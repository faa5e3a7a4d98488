"""Response caching for ASGI apps (extra ``[asgi]``): :class:`CacheMiddleware` and :class:`Rule`.

Pure ASGI: works with Starlette, FastAPI or any ASGI app, and imports none of them::

    from tta_cache.asgi import CacheMiddleware, Rule

    app.add_middleware(
        CacheMiddleware,
        cache=cache,
        rules=[Rule("/sessions/{session_id}", tags=("session:{session_id}",), ttl=60)],
    )

``middleware.py`` serves and stores; ``responses.py`` decides what may be cached and holds a
response while it streams; ``rules.py`` matches paths and renders tags.
"""

from __future__ import annotations

from .middleware import CacheMiddleware
from .responses import StoredResponse
from .rules import Rule

__all__ = ["CacheMiddleware", "Rule", "StoredResponse"]
