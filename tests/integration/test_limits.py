"""Limits: values over ``max_value_bytes`` are returned and cached nowhere (counted); keys, tags
and tag counts are bounded, with errors at decoration time where the bound is known then."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import tta_cache as tc
from tta_cache.core.keys import MAX_KEY_LENGTH, MAX_TAG_LENGTH, MAX_TAGS


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def make(redis_url: str) -> Iterator[Callable[..., tc.Cache]]:
    made: list[tc.Cache] = []

    def factory(**options: Any) -> tc.Cache:
        cache = tc.Cache(redis_url, **options)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        cache.close()


def test_a_value_over_max_value_bytes_is_returned_and_cached_nowhere(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    cache = make(max_value_bytes=2_000, compress_min_bytes=None)
    calls: list[int] = []

    @cache.cached(kind="narrative")
    def scene(size: int) -> str:
        calls.append(size)
        return "x" * size

    assert scene(5_000) == "x" * 5_000
    assert scene(5_000) == "x" * 5_000  # neither L1 nor Redis kept it
    assert scene(100) == "x" * 100
    assert scene(100) == "x" * 100
    assert calls == [5_000, 5_000, 100]
    assert client.get(scene.cache_key(5_000)) is None
    assert client.get(scene.cache_key(100)) is not None
    assert cache.stats()["oversized_values"] == 2
    assert cache.stats()["errors"] == 0


def test_the_limit_is_on_the_envelope_so_compression_counts(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    cache = make(max_value_bytes=2_000)  # zlib above 1 KiB

    @cache.cached
    def text(size: int) -> str:
        return "a" * size

    text(50_000)
    assert client.get(text.cache_key(50_000)) is not None
    assert cache.stats()["oversized_values"] == 0


def test_raw_sets_over_the_limit_are_skipped_and_counted(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    cache = make(max_value_bytes=1_000, compress_min_bytes=None)
    cache.set_many({"small": "s", "big": "b" * 5_000})
    assert cache.get("small") == "s"
    assert cache.get("big") is None
    assert cache.stats()["oversized_values"] == 1
    assert client.exists(cache.engine.raw_key("big")) == 0


def test_max_value_bytes_none_is_no_limit_and_below_one_is_refused(
    make: Callable[..., tc.Cache],
) -> None:
    cache = make(max_value_bytes=None, compress_min_bytes=None)
    cache.set("big", "b" * 2_000_000)
    assert cache.get("big") == "b" * 2_000_000
    with pytest.raises(tc.ConfigurationError, match="max_value_bytes"):
        make(max_value_bytes=0)


def test_too_many_tags_fail_at_decoration_time() -> None:
    cache = tc.Cache(None)
    tags = tuple(f"t{i}:{{x}}" for i in range(MAX_TAGS + 1))
    with pytest.raises(tc.ConfigurationError, match=f"over {MAX_TAGS} per entry"):

        @cache.cached(tags=tags)
        def f(x: str) -> str:
            return x

    @cache.cached(tags=tags[:MAX_TAGS])
    def g(x: str) -> str:
        return x

    assert g("a") == "a"


def test_a_function_name_too_long_for_any_key_fails_at_decoration_time() -> None:
    def f(x: str) -> str:
        return x

    f.__qualname__ = "f" * MAX_KEY_LENGTH
    with pytest.raises(tc.ConfigurationError, match="leaving too little for arguments"):
        tc.Cache(None).cached(f)


def test_long_plain_arguments_are_hashed_into_a_short_key() -> None:
    cache = tc.Cache(None)

    @cache.cached
    def f(x: str) -> str:
        return x

    assert f("y" * 100_000) == "y" * 100_000
    assert len(f.cache_key("y" * 100_000)) < 200


def test_a_session_id_too_long_for_a_key_is_a_clear_error_that_does_not_quote_it() -> None:
    cache = tc.Cache(None)

    @cache.cached_session
    def load(session_id: str) -> str:
        return session_id

    with pytest.raises(tc.KeyEncodingError, match=f"over {MAX_KEY_LENGTH}") as caught:
        load("s" * 2_000)
    assert "sss" not in str(caught.value)


def test_a_tag_too_long_is_a_clear_error_naming_the_tag_not_its_value() -> None:
    cache = tc.Cache(None)

    @cache.cached(tags=("user:{user_id}",))
    def load(user_id: str) -> str:
        return user_id

    with pytest.raises(tc.KeyEncodingError, match=f"'user' tag .* over {MAX_TAG_LENGTH}") as e:
        load("u" * 1_000)
    assert "uuu" not in str(e.value)
    assert load("u1") == "u1"


def test_raw_keys_and_tags_are_bounded_too() -> None:
    cache = tc.Cache(None)
    with pytest.raises(tc.KeyEncodingError, match="raw key: the key would be"):
        cache.set("k" * 2_000, 1)
    with pytest.raises(tc.KeyEncodingError, match="tags, over"):
        cache.set("k", 1, tags=[f"t:{i}" for i in range(MAX_TAGS + 1)])
    cache.set("k", 1, tags=[f"t:{i}" for i in range(MAX_TAGS)])
    assert cache.get("k") == 1
