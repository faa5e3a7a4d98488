"""What the middleware stores and sends: the stored response, its ETag, whether a response may
be cached, the ``Server-Timing`` and ``304`` headers, and the capture of an app's response.

Headers are kept as ``(name, value)`` text pairs (ASGI's bytes, decoded as latin-1, as HTTP
allows); names are lower case, as ASGI servers give them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Capture",
    "StoredResponse",
    "cacheable",
    "decode",
    "encode",
    "etag_of",
    "not_modified_headers",
    "timing",
    "vary_names",
    "wanted",
]

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

_NOT_MODIFIED_KEEPS = frozenset(
    {"etag", "cache-control", "vary", "expires", "content-location", "date"}
)


@dataclass
class StoredResponse:
    """A cached 200 response: its headers (ETag included) and its whole body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    etag: str


def etag_of(headers: Sequence[tuple[str, str]], body: bytes) -> str:
    """The response's own ETag, else a strong one from its body."""
    for name, value in headers:
        if name == "etag":
            return value
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def cacheable(status: int, headers: Sequence[tuple[str, str]]) -> bool:
    """200, no ``Set-Cookie``, no ``Vary: *``, no ``Cache-Control: no-store`` or ``private``."""
    if status != 200:
        return False
    for name, value in headers:
        if name == "set-cookie":
            return False
        if name == "vary" and "*" in value:
            return False
        if name == "cache-control":
            directives = {d.strip().split("=", 1)[0].lower() for d in value.split(",")}
            if directives & {"no-store", "private"}:
                return False
    return True


def vary_names(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The request headers the response varies on (lower case, sorted, once each)."""
    names = {
        n.strip().lower()
        for name, v in headers
        if name == "vary"
        for n in v.split(",")
        if n.strip()
    }
    return tuple(sorted(names))


def wanted(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak comparison, ``*`` matches any)."""
    if not if_none_match:
        return False
    mine = etag.removeprefix("W/")
    for given in if_none_match.split(","):
        tag = given.strip()
        if tag == "*" or tag.removeprefix("W/") == mine:
            return True
    return False


def not_modified_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers a 304 repeats (RFC 9110 15.4.5)."""
    return [(n, v) for n, v in headers if n in _NOT_MODIFIED_KEEPS]


def timing(seconds: float, desc: str) -> tuple[str, str]:
    """The ``Server-Timing`` header: the cache's share of the request."""
    return ("server-timing", f'cache;dur={seconds * 1000:.3f};desc="{desc}"')


def encode(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]


def decode(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(bytes(n).decode("latin-1").lower(), bytes(v).decode("latin-1")) for n, v in headers]


class Capture:
    """The ``send`` an app gets on a miss: holds a cacheable response until it is complete (up to
    ``max_body`` bytes), passes anything else through at once.

    ``on_complete(status, headers, body)`` is awaited once a held response is complete and
    returns the messages to send instead; ``on_pass(headers)`` returns the headers to send a
    response passed through with (the middleware adds ``Server-Timing``). ``outcome`` says what
    happened: ``"miss"`` (held and complete), ``"not cached"`` or ``"too large"``.
    """

    def __init__(
        self,
        send: Send,
        max_body: int,
        on_complete: Callable[[int, list[tuple[str, str]], bytes], Awaitable[list[Message]]],
        on_pass: Callable[[list[tuple[str, str]]], list[tuple[str, str]]],
    ) -> None:
        self._send = send
        self._max_body = max_body
        self._on_complete = on_complete
        self._on_pass = on_pass
        self._start: Message | None = None
        self._headers: list[tuple[str, str]] = []
        self._chunks: list[bytes] = []
        self._size = 0
        self.holding = False
        self.outcome = "miss"  # or "not cached" / "too large"

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = decode(message.get("headers", ()))
            if cacheable(int(message["status"]), headers):
                self._start, self._headers, self.holding = message, headers, True
                return
            self.outcome = "not cached"
            await self._send({**message, "headers": encode(self._on_pass(headers))})
            return
        if not self.holding:
            await self._send(message)
            return
        if kind != "http.response.body":  # trailers, pathsend...: stop holding, pass it all
            await self._flush("not cached")
            await self._send(message)
            return
        chunk = bytes(message.get("body", b""))
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > self._max_body:
            await self._flush("too large", more=bool(message.get("more_body", False)))
            return
        if message.get("more_body", False):
            return
        self.holding = False
        body = b"".join(self._chunks)
        assert self._start is not None
        for reply in await self._on_complete(int(self._start["status"]), self._headers, body):
            await self._send(reply)

    async def _flush(self, outcome: str, more: bool = True) -> None:
        self.holding = False
        self.outcome = outcome
        assert self._start is not None
        await self._send({**self._start, "headers": encode(self._on_pass(self._headers))})
        body = b"".join(self._chunks)
        self._chunks = []
        await self._send({"type": "http.response.body", "body": body, "more_body": more})
