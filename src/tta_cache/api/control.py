"""A cached function's ``.refresh(*args)`` and ``.set(value, *args)``, specialised once (sync or
async) like the wrapper itself; the decisions are the engine's (``engine/control.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..engine import refresh_flow, store_flow
from .spec import Spec

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["controls"]


def controls(
    engine: Engine, spec: Spec[Any], token: object
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``(refresh, set)`` for the function of ``spec``; ``token`` is its identity in L1.

    ``refresh`` takes the call's own arguments (on a method, the instance first: it calls the
    function); ``set`` takes the value, then the arguments as ``.invalidate`` does (no instance).
    """
    func = spec.func
    tag_key = engine.tag_key

    def call_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return spec.call(spec.values(args, kwargs), token, tag_key)

    def keyed(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return spec.call(spec.key_values(args, kwargs), token, tag_key)

    if spec.is_async:

        async def arefresh(*args: Any, **kwargs: Any) -> Any:
            call = call_of(args, kwargs)
            compute = engine.bounds.abounded(call, lambda: func(*args, **kwargs))
            return await engine.arun(refresh_flow(engine, call), compute)

        async def aset(value: Any, /, *args: Any, **kwargs: Any) -> None:
            await engine.arun(store_flow(engine, keyed(args, kwargs), value))

        return arefresh, aset

    def refresh(*args: Any, **kwargs: Any) -> Any:
        call = call_of(args, kwargs)
        compute = engine.bounds.bounded(call, lambda: func(*args, **kwargs))
        return engine.run(refresh_flow(engine, call), compute)

    def set_(value: Any, /, *args: Any, **kwargs: Any) -> None:
        engine.run(store_flow(engine, keyed(args, kwargs), value))

    return refresh, set_
