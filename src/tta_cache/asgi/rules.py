"""Which requests the middleware caches: :class:`Rule` (a path template and the tags its
responses carry) and :class:`Rules` (the first rule whose path matches).

A path template is Starlette's syntax without Starlette: ``/sessions/{session_id}`` (one path
segment per parameter) or ``/files/{rest:path}`` (the rest of the path). Tags are templates over
the path parameters (``"session:{session_id}"``), checked when the rule is made: a tag naming a
parameter the path does not have is a :class:`~tta_cache.exceptions.TemplateError` then, not at
the first request. Values are escaped as the decorators escape them, so
``cache.invalidate(session="s1")`` reaches the responses tagged ``session:{session_id}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..core.keys import Template
from ..exceptions import ConfigurationError

__all__ = ["Rule", "Rules"]

_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::(str|path))?}")


@dataclass(frozen=True)
class Rule:
    """Cache the GET and HEAD responses of ``path``, tagged ``tags``, for ``ttl`` seconds (None:
    the cache's TTL for ``kind``)."""

    path: str
    tags: Sequence[str] = ()
    ttl: float | None = None
    kind: str = "http"
    params: tuple[str, ...] = field(init=False, default=())
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _tags: tuple[Template, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ConfigurationError(f"a rule's path must start with '/': {self.path!r}")
        regex, params, last = "", [], 0
        for m in _PARAM.finditer(self.path):
            regex += re.escape(self.path[last : m.start()])
            name, kind = m.group(1), m.group(2) or "str"
            if name in params:
                raise ConfigurationError(f"rule {self.path!r} names {name!r} twice")
            params.append(name)
            regex += f"(?P<{name}>.+)" if kind == "path" else f"(?P<{name}>[^/]+)"
            last = m.end()
        regex += re.escape(self.path[last:])
        where = f"CacheMiddleware rule {self.path!r}"
        tags = tuple(
            Template(t, params, where="tags", func_name=where) for t in _as_tuple(self.tags)
        )
        object.__setattr__(self, "params", tuple(params))
        object.__setattr__(self, "_pattern", re.compile(f"^{regex}$"))
        object.__setattr__(self, "_tags", tags)

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if ``path`` is this rule's, else None."""
        m = self._pattern.match(path)
        return None if m is None else m.groupdict()

    def render_tags(self, params: Mapping[str, str]) -> tuple[str, ...]:
        """The rule's tags for a request whose path parameters are ``params``."""
        return tuple(t.render(params) for t in self._tags)


def _as_tuple(tags: Sequence[str] | str) -> tuple[str, ...]:
    return (tags,) if isinstance(tags, str) else tuple(tags)


class Rules:
    """An ordered list of rules; ``match`` returns the first that matches."""

    def __init__(self, rules: Iterable[Rule | str]) -> None:
        self.rules = tuple(r if isinstance(r, Rule) else Rule(r) for r in rules)
        if not self.rules:
            raise ConfigurationError("CacheMiddleware needs at least one rule")

    def match(self, path: str) -> tuple[Rule, dict[str, str]] | None:
        for rule in self.rules:
            params = rule.match(path)
            if params is not None:
                return rule, params
        return None
