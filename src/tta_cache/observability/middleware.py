"""Middleware: an ordered chain of callables around every tier operation and every computation.

The engine's flows yield *steps* (``read``, ``write``, ``get_many``, ``set_many``, ``versions``,
``bump``, ``delete``, ``compute`` ...); with middleware configured, the drivers run each step
through the chain. A middleware is a plain callable, like a structlog processor::

    def middleware(op: Operation, call_next: Callable[[], Any]) -> Any:
        ...                     # before
        result = call_next()    # the next middleware, and at the end the step itself
        ...                     # after
        return result

``op`` (:class:`Operation`) says what the step is, never with which key or value. For a step of
an ``async`` operation (``op.is_async``) ``call_next()`` returns an awaitable and the middleware
must return one. A middleware that only passes ``call_next()``'s result on works for both as is;
one that needs the result of an async step gives itself an ``acall`` method, which the chain uses
for async steps instead of ``__call__`` (:class:`AsyncMiddleware`; :class:`BaseMiddleware` is a
pass-through base with both)::

    class Timing(BaseMiddleware):
        def __call__(self, op, call_next):
            started = time.perf_counter()
            try:
                return call_next()
            finally:
                record(op, time.perf_counter() - started)

        async def acall(self, op, call_next):
            started = time.perf_counter()
            try:
                return await call_next()
            finally:
                record(op, time.perf_counter() - started)

    cache = Cache(redis_url, middleware=[Timing()])

The first middleware is the outermost. An exception a middleware raises is the step's failure:
the flow applies the fail-open policy to it as to a Redis error (a :class:`BackendError` is served
around, anything else reaches the caller). L1 hits never run the chain, and with no middleware the
drivers do not run one at all (they are chosen when the cache is built).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..engine import Call

__all__ = [
    "FLOW_STATE",
    "AsyncMiddleware",
    "BaseMiddleware",
    "Chain",
    "LoggingMiddleware",
    "Middleware",
    "Operation",
    "error_type",
    "flow_state",
    "redact",
]

Next = Callable[[], Any]
Handler = Callable[["Operation", Next], Any]

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_COMMANDS = {
    "write": "SET",
    "get_many": "MGET",
    "versions": "EVALSHA",
    "bump": "EVALSHA",
    "announce": "PUBLISH",
    "fill": "EVALSHA",  # write + lease release + fill notice
}


@dataclass(frozen=True, slots=True)
class Operation:
    """One step of a cache operation, as middleware sees it: what, never with which key or value.

    ``name``: the step (``read``, ``lease_read``, ``write``, ``fill``, ``get_many``,
    ``set_many``, ``versions``, ``bump``, ``delete``, ``announce``, ``compute``). ``tier``:
    ``"redis"``, or
    ``"compute"`` for the decorated function. ``kind``: the cached function's kind
    (``"session"``, ``"character"`` ...), ``"raw"`` for raw ``get``/``set``, ``"tag"`` for tag
    versions, ``"*"`` if unknown. ``function``: the cached function's ``module.qualname`` (``""``
    for raw access). ``key_template``: the key's shape without argument values
    (``tta:character:mod.f:…``, ``tta:session:{…}:mod.f:…``, ``tta:raw:…``). ``command``: the
    Redis command the step sends (``GET``, ``SET``, ``MGET``, ``EVALSHA``, ``PIPELINE`` for
    different commands in one round trip, ``PIPELINE SET`` for many SETs; the standalone shape,
    Cluster splits some by slot), ``""`` for a computation. ``batch_size``: commands in that
    round trip (1 unless a pipeline; an MGET of many keys is one command), 0 for a computation.
    ``is_async``: the step runs in an event loop and ``call_next()`` returns an awaitable.
    """

    name: str
    tier: str
    kind: str
    function: str
    key_template: str
    command: str
    batch_size: int
    is_async: bool

    @classmethod
    def of(
        cls,
        method: str,
        args: tuple[Any, ...],
        call: Call | None,
        *,
        namespace: str,
        is_async: bool,
    ) -> Operation:
        """Describe the flow step ``(method, args)``, made for ``call`` if known."""
        key = call.key if call is not None else _first_key(args)
        function = call.function if call is not None else ""
        segment, template = _template(namespace, key, function)
        kind = call.kind if call is not None else segment
        if method == "compute":
            return _operation(method, "compute", kind, function, template, "", 0, is_async)
        command, batch_size = _shape(method, args)
        return _operation(method, "redis", kind, function, template, command, batch_size, is_async)


# Operations repeat (a few per cached function): share the instances rather than build each.
_operation = functools.lru_cache(maxsize=4096)(Operation)


def _first_key(args: tuple[Any, ...]) -> str:
    # read/write: a key; get_many/delete/versions/bump: keys; set_many: (key, payload, px) items.
    first: Any = args[0] if args else None
    for _ in range(2):
        if isinstance(first, (list, tuple)):
            first = first[0] if first else None
    return first if isinstance(first, str) else ""


def _shape(method: str, args: tuple[Any, ...]) -> tuple[str, int]:
    if method in {"read", "lease_read"}:  # + the versions script in one pipeline
        if args[1]:
            return "PIPELINE", 2
        return ("GET" if method == "read" else "EVALSHA"), 1
    if method == "set_many":
        n = len(args[0])
        return ("SET", 1) if n == 1 else ("PIPELINE SET", n)
    if method == "read_many":  # a batch loader's read: MGET (or the lease script) + versions
        return "PIPELINE MGET", len(args[0])
    if method == "fill_many":  # its fill: the SETs + the lease release and fill notice
        return "PIPELINE SET", len(args[0]) + bool(args[1])
    if method == "delete":  # DEL + PUBLISH
        return ("PIPELINE", 2) if len(args) > 1 and args[1] else ("DEL", 1)
    return _COMMANDS.get(method, method.upper()), 1


def _template(namespace: str, key: str, function: str) -> tuple[str, str]:
    """The kind segment and the template of ``key``; nothing of its arguments survives."""
    prefix = namespace + ":"
    if not key.startswith(prefix):
        return "*", f"{namespace}:…"
    segment, _, rest = key[len(prefix) :].partition(":")
    return _template_of(namespace, segment, function, rest.startswith("{"))


@functools.lru_cache(maxsize=1024)
def _template_of(namespace: str, segment: str, function: str, hashed: bool) -> tuple[str, str]:
    if not _NAME.fullmatch(segment):  # not a kind: could be anything, so it is not shown
        return "*", f"{namespace}:…"
    if not function:
        return segment, f"{namespace}:{segment}:…"
    session = "{…}:" if hashed else ""
    return segment, f"{namespace}:{segment}:{session}{function}:…"


class Middleware(Protocol):
    """A callable ``(op, call_next) -> result`` run around a step (see the module docstring).

    For async steps (``op.is_async``) ``call_next()`` returns an awaitable and so must the
    middleware, unless it also has ``acall`` (:class:`AsyncMiddleware`).
    """

    def __call__(self, op: Operation, call_next: Next, /) -> Any: ...


class AsyncMiddleware(Middleware, Protocol):
    """A middleware with an ``async`` twin, used for the steps of async operations."""

    def acall(
        self, op: Operation, call_next: Callable[[], Awaitable[Any]], /
    ) -> Awaitable[Any]: ...


class BaseMiddleware:
    """A pass-through middleware: override ``__call__`` (sync steps) and ``acall`` (async)."""

    def __call__(self, op: Operation, call_next: Next, /) -> Any:
        return call_next()

    async def acall(self, op: Operation, call_next: Callable[[], Awaitable[Any]], /) -> Any:
        return await call_next()


def _terminal(op: Operation, call_next: Next) -> Any:
    return call_next()


def _layer(middleware: Handler, inner: Handler) -> Handler:
    if inner is _terminal:
        return middleware  # the innermost one calls the step itself: no extra frame

    def run(op: Operation, call_next: Next) -> Any:
        return middleware(op, functools.partial(inner, op, call_next))

    return run


class Chain:
    """Middleware composed once, at construction: ``call(op, step)`` for sync steps,
    ``acall(op, step)`` for async ones (returns an awaitable); the first middleware is outermost.
    """

    __slots__ = ("acall", "call", "middleware")

    def __init__(self, middleware: Iterable[Middleware]) -> None:
        self.middleware = tuple(middleware)
        call: Handler = _terminal
        acall: Handler = _terminal
        for mw in reversed(self.middleware):
            call = _layer(mw, call)
            acall = _layer(getattr(mw, "acall", mw), acall)
        self.call = call
        self.acall = acall

    def __bool__(self) -> bool:
        return bool(self.middleware)

    def __repr__(self) -> str:
        return f"Chain({list(self.middleware)!r})"


FLOW_STATE: ContextVar[dict[str, Any] | None] = ContextVar("tta_cache_flow_state", default=None)
"""Set by the drivers to a fresh dict for each flow they run with middleware."""


def flow_state() -> dict[str, Any] | None:
    """Scratch space shared by the middleware calls of the running cache operation, or None.

    The steps of one operation (a read-through: read, compute, fill) see the same dict, so a
    middleware can carry something from one step to the next; the telemetry keeps the
    computation's span there to be the parent of the fill. Nested operations (a computation
    that calls another cached function) get their own.
    """
    return FLOW_STATE.get()


def error_type(exc: BaseException) -> str:
    """The class name of the error a step failed with, the wrapped Redis error if any (the same
    names ``stats()["errors_by_type"]`` counts)."""
    return type(exc.__cause__ or exc).__name__


_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]*@")
_SECRET = re.compile(r"(?i)\b(password|passwd|pwd|secret|token|auth)\b(\s*[=:]\s*)\S+")


def redact(text: str, namespace: str | None = None) -> str:
    """``text`` without URL credentials, ``password=...``-style secrets and, given the namespace,
    cache keys (``tta:...`` becomes ``<key>``)."""
    text = _CREDENTIALS.sub("***@", text)
    text = _SECRET.sub(r"\1\2***", text)
    if namespace:
        text = re.sub(rf"(?<![\w.-]){re.escape(namespace)}:\S+", "<key>", text)
    return text


class LoggingMiddleware(BaseMiddleware):
    """Logs one line per failed step with stdlib :mod:`logging`; successful steps are silent.

    The line names the step, tier, kind and key template, and the error's type; for Redis
    failures also its message, redacted (:func:`redact`). A computation's error message is not
    logged: it is the caller's exception and reaches the caller intact.
    """

    def __init__(self, logger: logging.Logger | None = None, *, level: int = logging.WARNING):
        self.logger = logger or logging.getLogger("tta_cache.middleware")
        self.level = level

    def __call__(self, op: Operation, call_next: Next, /) -> Any:
        try:
            return call_next()
        except Exception as exc:
            self._log(op, exc)
            raise

    async def acall(self, op: Operation, call_next: Callable[[], Awaitable[Any]], /) -> Any:
        try:
            return await call_next()
        except Exception as exc:
            self._log(op, exc)
            raise

    def _log(self, op: Operation, exc: Exception) -> None:
        what = "compute" if op.tier == "compute" else f"{op.tier} {op.name} {op.command}"
        detail = ""
        if op.tier != "compute":
            namespace = op.key_template.partition(":")[0]
            detail = ": " + redact(str(exc), namespace)
        self.logger.log(
            self.level,
            "tta-cache %s failed (kind=%s key=%s): %s%s",
            what,
            op.kind,
            op.key_template,
            error_type(exc),
            detail,
        )
