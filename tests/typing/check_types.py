"""Type-checked, never run: ``cache.cached`` keeps ParamSpec signatures, sync and async.

``mypy --strict tests/typing/check_types.py`` must pass; each ``assert_type`` fails the check if
a decorator loses the parameters or the return type. The ``# type: ignore[...]`` lines must stay
errors (``warn_unused_ignores`` under ``--strict`` reports them if they stop being errors).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import tta_cache as tc

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type

cache = tc.Cache()


@cache.cached
def load_user(user_id: str, depth: int = 1) -> dict[str, int]:
    return {user_id: depth}


@cache.cached(kind="character", tags=("user:{user_id}",))
def load_character(session_id: str, user_id: str) -> list[str]:
    return [session_id, user_id]


@cache.cached
async def aload_user(user_id: str, *, depth: int = 1) -> dict[str, int]:
    return {user_id: depth}


@cache.cached(kind="narrative", ttl=60)
async def aload_context(session_id: str) -> tuple[str, ...]:
    return (session_id,)


@cache.cached_session
def load_session(session_id: str) -> bytes:
    return session_id.encode()


@cache.cached_session
async def aload_session(session_id: str, user_id: str) -> float:
    return 1.0


@cache.invalidates(user="{user_id}")
def save_user(user_id: str, value: int) -> bool:
    return True


@cache.invalidates(user="{user_id}")
async def asave_user(user_id: str, value: int) -> bool:
    return True


as_plain: Callable[[str, int], dict[str, int]] = load_user
wrong: Callable[[int], dict[str, int]] = load_user  # type: ignore[assignment]


def check_sync() -> None:
    assert_type(load_user("u1"), dict[str, int])
    assert_type(load_user("u1", depth=2), dict[str, int])
    assert_type(load_user.cache_key("u1", 2), str)
    assert_type(load_user.invalidate("u1"), None)
    assert_type(load_character("s1", "u1"), list[str])
    assert_type(load_session("s1"), bytes)
    assert_type(save_user("u1", 1), bool)
    load_user(1)  # type: ignore[arg-type]
    load_user("u1", nope=1)  # type: ignore[call-arg]
    load_character("s1")  # type: ignore[call-arg]
    load_user.invalidate(user_id=3)  # type: ignore[arg-type]
    assert_type(load_user.refresh("u1"), dict[str, int])
    assert_type(load_user.set({"a": 1}, "u1", depth=2), None)
    load_user.refresh(1)  # type: ignore[arg-type]
    load_user.set({}, 1)  # type: ignore[arg-type]
    entry = tc.current_entry()
    if entry is not None:
        entry.ttl = 5
        entry.add_tags("doc:1")
        entry.skip()


async def check_async() -> None:
    pending = assert_type(aload_user("u1"), Coroutine[Any, Any, dict[str, int]])
    await pending
    assert_type(await aload_user("u1", depth=2), dict[str, int])
    assert_type(await aload_context("s1"), tuple[str, ...])
    assert_type(await aload_session("s1", "u1"), float)
    assert_type(aload_user.invalidate("u1"), Awaitable[None])
    await aload_user.invalidate("u1")
    assert_type(aload_user.cache_key("u1", depth=3), str)
    assert_type(await aload_user.refresh("u1"), dict[str, int])
    assert_type(aload_user.set({"a": 1}, "u1"), Awaitable[None])
    entry = tc.current_entry()
    if entry is not None:
        await entry.aadd_tags("doc:1")
    assert_type(await asave_user("u1", 1), bool)
    await aload_user("u1", 2)  # type: ignore[call-arg]
    await aload_context(1)  # type: ignore[arg-type]


@cache.cached_many(kind="character", over="ids", tags=("character:{item}",))
def load_many(user_id: str, ids: list[str]) -> dict[str, int]:
    return dict.fromkeys(ids, 1)


@cache.cached_many(over="ids")
async def aload_many(ids: list[str]) -> dict[str, int]:
    return dict.fromkeys(ids, 2)


def check_many() -> None:
    assert_type(load_many("u1", ["a", "b"]), dict[str, int])
    load_many.invalidate("u1", ["a"])
    load_many("u1", 3)  # type: ignore[arg-type]


async def acheck_many() -> None:
    assert_type(await aload_many(["a"]), dict[str, int])
    await aload_many.invalidate(["a"])
