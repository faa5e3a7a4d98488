"""The cache's options that are checked in one place: the seed's TTL per kind, ``on_error``,
timeouts, what ``cached_session`` adds to ``cached``, and the keys taken from the environment."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

from ..codec import keys_from_env, signing_keys_from_env
from ..exceptions import ConfigurationError, TemplateError

__all__ = ["DEFAULT_TTL", "check_on_error", "keys_from_environment", "session_options", "timeouts"]

DEFAULT_TTL: dict[str, float] = {
    "session": 86_400,  # 24 hours
    "character": 7_200,  # 2 hours
    "narrative": 1_800,  # 30 minutes
    "emotional": 3_600,  # 1 hour
    "therapeutic": 604_800,  # 1 week
    "user_preferences": 2_592_000,  # 30 days
}
"""The seed's TTL per kind of TTA state, in seconds."""

ON_ERROR = ("ignore", "raise")


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise ConfigurationError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    return on_error


def timeouts(soft: float, hard: float | None) -> tuple[float, float | None]:
    if not (math.isfinite(soft) and soft >= 0):
        raise ConfigurationError(f"soft_timeout must be >= 0 seconds, not {soft!r}")
    if hard is not None and not (math.isfinite(hard) and hard > 0):
        raise ConfigurationError(f"hard_timeout must be > 0 seconds or None, not {hard!r}")
    return soft, hard


def session_options(func: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """``cached_session``'s options for ``func``: kind and the session (and user) tags."""
    params = inspect.signature(func).parameters
    if "session_id" not in params:
        raise TemplateError(
            f"cached_session needs a 'session_id' parameter; {func.__qualname__} has "
            f"{tuple(params)}"
        )
    tags = ["session:{session_id}"] + (["user:{user_id}"] if "user_id" in params else [])
    return {"kind": "session", **options, "tags": (*tags, *options.get("tags", ()))}


def keys_from_environment(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with ``encryption_keys`` from ``$TTA_CACHE_ENCRYPTION_KEYS`` and
    ``signing_key`` from ``$TTA_CACHE_SIGNING_KEYS`` where they are not given (for the default
    cache, the TTA facade and the CLI; :class:`~tta_cache.Cache` itself reads no environment)."""
    out = dict(options)
    if out.get("encryption_keys") is None and (keys := keys_from_env()) is not None:
        out["encryption_keys"] = keys
    if out.get("signing_key") is None and (signing := signing_keys_from_env()) is not None:
        out["signing_key"] = signing
    return out
