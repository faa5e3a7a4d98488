""":class:`CacheMiddleware`: GET and HEAD responses of the routes a rule names, cached in a
:class:`~tta_cache.Cache` as tagged entries (pure ASGI: no framework is imported).

A request's key is its method, path and query string, and the values of the request headers the
response's ``Vary`` names; so a response is looked up in two steps, both raw cache entries with
the rule's tags: ``http-vary:<method> <path>?<query>`` holds the ``Vary`` names last seen for
that resource, ``http:<method> <path>?<query>#<hash of those header values>`` the response.
A hit is served without running the app, with its ``ETag``; an ``If-None-Match`` naming it gets a
``304``. Invalidating a tag (``cache.invalidate(session="s1")``) invalidates the responses
tagged with it, in every process, as it does any entry.

Never cached: methods other than GET and HEAD, statuses other than 200, responses with
``Set-Cookie``, ``Vary: *``, ``Cache-Control: no-store`` or ``private``, and bodies larger than
``max_body`` (streamed through as they come once past it; below it, a streaming body is held
until complete). Every response gets ``Server-Timing: cache;dur=<ms>;desc="hit|miss|bypass"``:
the time spent in the cache (looking up, and storing on a miss), not in the app.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from ..exceptions import CacheError
from .responses import (
    Capture,
    Message,
    StoredResponse,
    decode,
    encode,
    etag_of,
    not_modified_headers,
    timing,
    vary_names,
    wanted,
)
from .rules import Rule, Rules

if TYPE_CHECKING:
    from ..api import Cache

__all__ = ["CacheMiddleware"]

log = logging.getLogger("tta_cache.asgi")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CACHED_METHODS = frozenset({"GET", "HEAD"})


class CacheMiddleware:
    """Cache the GET/HEAD responses of the routes ``rules`` name (see the module docstring).

    ``rules`` are :class:`Rule` objects or plain path templates (no tags). ``max_body`` bounds
    what is held and stored (bytes). ``counts`` has how many requests were served each way.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        cache: Cache,
        rules: Iterable[Rule | str],
        max_body: int = 1 << 20,
    ) -> None:
        self.app = app
        self.cache = cache
        self.rules = Rules(rules)
        self.max_body = max_body
        self.counts = {"hit": 0, "not_modified": 0, "miss": 0, "not_cached": 0, "bypass": 0}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        found = self.rules.match(scope["path"]) if method in CACHED_METHODS else None
        if found is None:
            self.counts["bypass"] += 1
            await self.app(scope, receive, _adding(send, [timing(0.0, "bypass")]))
            return
        started = time.perf_counter()
        rule, params = found
        request = decode(scope.get("headers", ()))
        resource = (
            f"{method} {scope['path']}?{bytes(scope.get('query_string', b'')).decode('latin-1')}"
        )
        stored = await self._lookup(resource, request)
        if stored is not None:
            await self._serve(stored, request, send, time.perf_counter() - started)
            return
        looked = time.perf_counter() - started

        async def complete(
            status: int, headers: list[tuple[str, str]], body: bytes
        ) -> list[Message]:
            storing = time.perf_counter()
            etag = etag_of(headers, body)
            if not any(n == "etag" for n, _ in headers):
                headers = [*headers, ("etag", etag)]
            await self._store(
                rule, params, resource, request, StoredResponse(status, headers, body, etag)
            )
            spent = looked + time.perf_counter() - storing
            self.counts["miss"] += 1
            if wanted(_header(request, "if-none-match"), etag):
                return _not_modified(headers, spent, "miss")
            return [
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": encode([*headers, timing(spent, "miss")]),
                },
                {"type": "http.response.body", "body": body, "more_body": False},
            ]

        def passed(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
            return [*headers, timing(looked, "miss")]

        capture = Capture(send, self.max_body, complete, passed)
        await self.app(scope, receive, capture.send)
        if capture.outcome != "miss":
            self.counts["not_cached"] += 1

    async def _lookup(self, resource: str, request: list[tuple[str, str]]) -> StoredResponse | None:
        try:
            names = await self.cache.aget(f"http-vary:{resource}", type_hint=list[str])
            if names is None:
                return None
            found = await self.cache.aget(
                _response_key(resource, names, request), type_hint=StoredResponse
            )
        except CacheError as exc:  # on_error="raise": still no reason to fail the request
            log.warning("tta-cache asgi: lookup failed, running the route: %s", exc)
            return None
        return found if isinstance(found, StoredResponse) else None

    async def _store(
        self,
        rule: Rule,
        params: dict[str, str],
        resource: str,
        request: list[tuple[str, str]],
        response: StoredResponse,
    ) -> None:
        names = list(vary_names(response.headers))
        tags = rule.render_tags(params)
        try:
            await self.cache.aset(
                f"http-vary:{resource}", names, ttl=rule.ttl, kind=rule.kind, tags=tags
            )
            await self.cache.aset(
                _response_key(resource, names, request),
                response,
                ttl=rule.ttl,
                kind=rule.kind,
                tags=tags,
            )
        except CacheError as exc:
            log.warning("tta-cache asgi: storing a response failed: %s", exc)

    async def _serve(
        self, stored: StoredResponse, request: list[tuple[str, str]], send: Send, spent: float
    ) -> None:
        if wanted(_header(request, "if-none-match"), stored.etag):
            self.counts["not_modified"] += 1
            for message in _not_modified(stored.headers, spent, "hit"):
                await send(message)
            return
        self.counts["hit"] += 1
        await send(
            {
                "type": "http.response.start",
                "status": stored.status,
                "headers": encode([*stored.headers, timing(spent, "hit")]),
            }
        )
        await send({"type": "http.response.body", "body": stored.body, "more_body": False})


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    values = [v for n, v in headers if n == name]
    return ", ".join(values) if values else None


def _response_key(resource: str, names: list[str], request: list[tuple[str, str]]) -> str:
    if not names:
        return f"http:{resource}"
    values = "\n".join(f"{n}={_header(request, n) or ''}" for n in names)
    return f"http:{resource}#{hashlib.blake2b(values.encode(), digest_size=12).hexdigest()}"


def _not_modified(headers: list[tuple[str, str]], spent: float, desc: str) -> list[Message]:
    return [
        {
            "type": "http.response.start",
            "status": 304,
            "headers": encode([*not_modified_headers(headers), timing(spent, desc)]),
        },
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]


def _adding(send: Send, extra: list[tuple[str, str]]) -> Send:
    """``send`` with ``extra`` headers added to the response start."""

    async def adding(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *encode(extra)]}
        await send(message)

    return adding
