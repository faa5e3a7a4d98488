"""What the Redis tier turns into BackendError (fail-open), and what it lets through.

redis-py's Cluster client raises exceptions that are not RedisError while its topology is in
flux: AttributeError from inside redis-py (up to 8.1), RedisClusterException (8.2: "no default
node", "All slots are not covered"). Both are Redis failing, so they fail open; the same
exception types raised by the caller's own code are not.
"""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import RedisClusterException

import tta_cache as tc
from tta_cache.tiers.redis.errors import translated


def _redis_py_attribute_error() -> None:
    # An AttributeError raised in a redis-py frame: a method of a client whose pool is gone.
    client = redis.Redis()
    client.connection_pool = None  # type: ignore[assignment]
    client.get("k")


@pytest.mark.parametrize(
    "exc",
    [
        RedisClusterException("The cluster has no default node"),
        redis.ConnectionError("refused"),
        OSError("reset"),
    ],
    ids=["cluster-exception", "connection-error", "os-error"],
)
def test_a_redis_failure_becomes_a_backend_error(exc: Exception) -> None:
    with pytest.raises(tc.BackendError) as info, translated("GET"):
        raise exc
    assert info.value.__cause__ is exc
    assert "redis GET failed" in str(info.value)


def test_an_attribute_error_inside_redis_py_is_a_backend_error() -> None:
    with pytest.raises(tc.BackendError) as info, translated("GET"):
        _redis_py_attribute_error()
    assert isinstance(info.value.__cause__, AttributeError)


def test_an_attribute_error_of_the_callers_own_code_passes_through() -> None:
    with pytest.raises(AttributeError), translated("GET"):
        None.missing  # type: ignore[attr-defined]


def test_a_timeout_is_a_backend_timeout() -> None:
    with pytest.raises(tc.BackendTimeout), translated("GET"):
        raise redis.TimeoutError("slow")
