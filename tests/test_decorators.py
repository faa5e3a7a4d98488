"""Decorators: templates checked at decoration, signatures kept, methods, binding, module level."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tta_cache as tc
from tta_cache.api import default as cache_module


@pytest.fixture
def cache() -> Iterator[tc.Cache]:
    with tc.Cache() as cache:
        yield cache


@pytest.fixture
def fresh_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No default cache yet and no configuration: as a fresh process sees the module level."""
    monkeypatch.delenv("TTA_CACHE_REDIS_URL", raising=False)
    monkeypatch.setattr(cache_module, "_default", None)
    monkeypatch.setattr(cache_module, "_default_options", {})
    yield
    made = cache_module._default
    if made is not None:
        made.close()


# --- templates are checked when decorating ----------------------------------------------------


def load_user(user_id: str, x: int) -> str:
    return user_id


BAD_DECORATIONS: dict[str, Callable[[tc.Cache], Callable[[Callable[..., Any]], Any]]] = {
    "tags": lambda c: c.cached(tags=("user:{nope}",)),
    "invalidates": lambda c: c.invalidates(user="{nope}"),
    "invalidates-tags": lambda c: c.invalidates(tags=["user:{nope}"]),
    "key": lambda c: c.cached(key="{nope}"),
    "nested": lambda c: c.cached(tags=("user:{nope.id}",)),
    "module-tags": lambda c: tc.cached(tags=("user:{nope}",)),
    "module-invalidates": lambda c: tc.invalidates(user="{nope}"),
}


@pytest.mark.parametrize("make", BAD_DECORATIONS.values(), ids=BAD_DECORATIONS.keys())
def test_bad_template_fails_at_decoration_naming_field_and_function(
    cache: tc.Cache, make: Callable[[tc.Cache], Callable[[Callable[..., Any]], Any]]
) -> None:
    decorator = make(cache)
    with pytest.raises(tc.TemplateError) as info:
        decorator(load_user)
    assert "'nope'" in str(info.value)
    assert "load_user" in str(info.value)


def test_positional_template_fields_are_refused(cache: tc.Cache) -> None:
    with pytest.raises(tc.TemplateError, match="parameters, not positions"):
        cache.cached(tags=("user:{0}",))(load_user)


@pytest.mark.parametrize(
    "decorate",
    [
        lambda c, f: c.cached_session(f),
        lambda c, f: c.cached_session()(f),
        lambda c, f: tc.cached_session(f),
    ],
    ids=["cache", "cache-called", "module"],
)
def test_cached_session_without_session_id_fails_at_decoration(
    cache: tc.Cache, decorate: Callable[[tc.Cache, Callable[..., Any]], Any]
) -> None:
    def load(user_id: str) -> str:
        return user_id

    with pytest.raises(tc.TemplateError, match="session_id") as info:
        decorate(cache, load)
    assert "load" in str(info.value)


def test_callable_templates_are_accepted(cache: tc.Cache) -> None:
    calls: list[str] = []

    @cache.cached(tags=(lambda a: f"user:{a['user_id'].lower()}",))
    def load(user_id: str) -> int:
        calls.append(user_id)
        return len(calls)

    @cache.invalidates(user=lambda a: a["uid"].lower())
    def save(uid: str) -> None:
        pass

    assert load("U1") == load("U1") == 1
    save("u1")
    assert load("U1") == 2


# --- the decorated function keeps what it was -------------------------------------------------


def test_sync_function_keeps_signature_wrapped_and_metadata(cache: tc.Cache) -> None:
    def load(session_id: str, *, depth: int = 2) -> str:
        """Load a thing."""
        return session_id

    wrapped = cache.cached(load)
    assert wrapped.__wrapped__ is load
    assert inspect.signature(wrapped) == inspect.signature(load)
    assert (wrapped.__name__, wrapped.__doc__) == ("load", "Load a thing.")
    assert not inspect.iscoroutinefunction(wrapped)


@pytest.mark.parametrize(
    "decorate",
    [
        lambda c, f: c.cached(f),
        lambda c, f: c.cached(kind="narrative")(f),
        lambda c, f: c.cached_session(f),
        lambda c, f: c.invalidates(session="{session_id}")(f),
        lambda c, f: tc.cached(f),
        lambda c, f: tc.cached_session(f),
        lambda c, f: tc.invalidates(session="{session_id}")(f),
    ],
    ids=["cached", "cached-kind", "session", "invalidates", "tc", "tc-session", "tc-invalidates"],
)
def test_async_function_stays_a_coroutine_function(
    cache: tc.Cache, decorate: Callable[[tc.Cache, Callable[..., Any]], Any]
) -> None:
    async def load(session_id: str, depth: int = 2) -> str:
        return session_id

    wrapped = decorate(cache, load)
    assert inspect.iscoroutinefunction(wrapped)
    assert inspect.signature(wrapped) == inspect.signature(load)
    assert wrapped.__wrapped__ is load


async def test_async_invalidate_is_awaitable(cache: tc.Cache) -> None:
    calls: list[str] = []

    @cache.cached
    async def load(name: str) -> int:
        calls.append(name)
        return len(calls)

    assert await load("a") == await load("a") == 1
    pending = load.invalidate("a")
    assert inspect.isawaitable(pending)
    await pending
    assert await load("a") == 2


# --- arguments --------------------------------------------------------------------------------


def test_keyword_and_positional_calls_share_an_entry_and_defaults_apply(cache: tc.Cache) -> None:
    calls: list[tuple[str, int]] = []

    @cache.cached
    def load(name: str, depth: int = 2) -> str:
        calls.append((name, depth))
        return f"{name}/{depth}"

    assert load("a") == load("a", 2) == load(name="a") == load("a", depth=2) == "a/2"
    assert load(depth=2, name="a") == "a/2"
    assert calls == [("a", 2)]
    assert load.cache_key("a") == load.cache_key(name="a", depth=2)
    assert load("a", 3) == "a/3"
    assert calls == [("a", 2), ("a", 3)]


def test_unhashable_arguments_still_cache(cache: tc.Cache) -> None:
    calls: list[Any] = []

    @cache.cached
    def load(items: list[int], options: dict[str, Any]) -> int:
        calls.append((items, options))
        return len(calls)

    assert load([1, 2], {"a": [1]}) == 1
    assert load([1, 2], {"a": [1]}) == 1
    assert load(items=[1, 2], options={"a": [1]}) == 1
    assert load([1, 3], {"a": [1]}) == 2
    assert load([1, 2], {"a": [2]}) == 3
    assert load([1, 3], {"a": [1]}) == 2
    assert len(calls) == 3
    assert cache.stats()["local"]["hits"] == 3


def test_unencodable_argument_raises_naming_the_parameter(cache: tc.Cache) -> None:
    calls: list[object] = []

    @cache.cached
    def load(name: str, thing: object) -> str:
        calls.append(thing)
        return name

    with pytest.raises(tc.KeyEncodingError, match="'thing'"):
        load("a", object())
    with pytest.raises(tc.KeyEncodingError, match="'thing'"):
        load.cache_key(name="a", thing=object())
    assert calls == []


def test_cache_key_hook_makes_an_object_usable(cache: tc.Cache) -> None:
    class Player:
        def __init__(self, pid: str) -> None:
            self.pid = pid

        def __cache_key__(self) -> str:
            return self.pid

    calls: list[str] = []

    @cache.cached
    def load(player: Player) -> int:
        calls.append(player.pid)
        return len(calls)

    assert load(Player("p1")) == load(Player("p1")) == 1
    assert load(Player("p2")) == 2


# --- methods ----------------------------------------------------------------------------------


def test_methods_do_not_put_self_in_the_key(cache: tc.Cache) -> None:
    calls: list[tuple[str, str]] = []

    class Repo:
        def __init__(self, name: str) -> None:
            self.name = name

        @cache.cached(tags=("user:{user_id}",))
        def load(self, user_id: str) -> str:
            calls.append((self.name, user_id))
            return f"{self.name}:{user_id}"

    a, b = Repo("a"), Repo("b")
    assert a.load("u1") == "a:u1"
    assert b.load("u1") == "a:u1"  # shared: self is not part of the key
    assert b.load(user_id="u1") == "a:u1"
    assert calls == [("a", "u1")]
    assert Repo.load.cache_key("u1") == Repo.load.cache_key(user_id="u1")
    Repo.load.invalidate("u1")
    assert b.load("u1") == "b:u1"
    cache.invalidate(user="u1")
    assert a.load("u1") == "a:u1"
    assert calls == [("a", "u1"), ("b", "u1"), ("a", "u1")]


def test_include_self_keeps_instances_apart(cache: tc.Cache) -> None:
    calls: list[str] = []

    class Repo:
        def __init__(self, name: str) -> None:
            self.name = name

        def __cache_key__(self) -> str:
            return self.name

        @cache.cached(include_self=True)
        def load(self, user_id: str) -> str:
            calls.append(self.name)
            return f"{self.name}:{user_id}"

    a, b = Repo("a"), Repo("b")
    assert (a.load("u1"), b.load("u1"), a.load("u1"), b.load("u1")) == (
        "a:u1",
        "b:u1",
        "a:u1",
        "b:u1",
    )
    assert calls == ["a", "b"]


def test_staticmethod_and_classmethod_outside_cached(cache: tc.Cache) -> None:
    calls: list[str] = []

    class Repo:
        prefix = "r"

        @staticmethod
        @cache.cached
        def plain(x: int) -> int:
            calls.append("static")
            return x * 2

        @classmethod
        @cache.cached
        def scoped(cls, x: int) -> str:
            calls.append("class")
            return f"{cls.prefix}{x}"

        @classmethod
        @cache.cached
        async def ascoped(cls, x: int) -> str:
            calls.append("aclass")
            return f"{cls.prefix}{x}"

    assert Repo.plain(2) == Repo().plain(2) == 4
    assert Repo.scoped(3) == Repo().scoped(3) == "r3"
    assert asyncio.run(Repo.ascoped(4)) == "r4"
    assert asyncio.run(Repo().ascoped(4)) == "r4"
    assert calls == ["static", "class", "aclass"]
    assert inspect.iscoroutinefunction(Repo.ascoped)


# --- module-level decorators bind to the configured cache at first call -----------------------


@pytest.mark.usefixtures("fresh_default")
def test_module_decorators_bind_to_the_configured_cache_at_first_call() -> None:
    calls: list[str] = []

    @tc.cached(tags=("user:{user_id}",))
    def load(user_id: str) -> int:
        calls.append(user_id)
        return len(calls)

    @tc.cached_session
    def load_session(session_id: str, user_id: str) -> int:
        calls.append(session_id)
        return len(calls)

    @tc.invalidates(user="{user_id}")
    def save(user_id: str) -> None:
        pass

    assert cache_module._default is None  # decorating made no cache
    configured = tc.configure(None, namespace="early", local_maxsize=10)
    assert load("u1") == load("u1") == 1
    assert load_session("s1", "u1") == load_session("s1", "u1") == 2
    assert load.cache_key("u1").startswith("early:default:")
    assert load_session.cache_key("s1", "u1").startswith("early:session:{s1}:")
    assert len(configured.engine.local) == 2
    assert configured.stats()["hits"] == 2
    save("u1")  # invalidates user:u1 in the configured cache: both entries carry the tag
    assert load("u1") == 3
    assert load_session("s1", "u1") == 4
    assert tc.default_cache() is configured


@pytest.mark.usefixtures("fresh_default")
async def test_module_decorators_bind_for_async_functions() -> None:
    calls: list[str] = []

    @tc.cached_session
    async def load_session(session_id: str) -> int:
        calls.append(session_id)
        return len(calls)

    configured = tc.configure(namespace="early")
    assert await load_session("s1") == await load_session("s1") == 1
    await load_session.invalidate("s1")
    assert await load_session("s1") == 2
    assert configured.stats()["misses"] == 2


@pytest.mark.usefixtures("fresh_default")
def test_module_decorators_without_configure_use_a_local_default() -> None:
    @tc.cached
    def load(x: int) -> list[int]:
        return [x]

    first = load(1)
    assert load(1) is first  # served from the default cache's L1
    assert tc.default_cache().redis_url is None
