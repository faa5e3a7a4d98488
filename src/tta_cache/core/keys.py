"""Keys and tags: escaping, typed argument encoding, hashing, namespaces, cluster hash tags.

A key is ``<namespace>:<kind>:<function>:<arguments>``; a session-scoped key carries a Redis
Cluster hash tag right after the namespace (``tta:{s9}:session:...``) so one session's keys share
a slot. Arguments are encoded with their types (``f(1)``, ``f("1")``, ``f(True)`` and ``f(None)``
differ) and every piece of user text is percent-escaped, so no argument can forge a separator, a
brace (a cluster hash tag) or a glob character (a ``SCAN MATCH`` pattern), and two different calls
never share a key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import re
import string
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from ..exceptions import ConfigurationError, KeyEncodingError, TemplateError

__all__ = [
    "MAX_ARGS_LEN",
    "MAX_KEY_LENGTH",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "NAMESPACE_TAG",
    "Template",
    "args_around",
    "check_entry",
    "encode_args",
    "escape",
    "function_id",
    "hash_tag",
    "tag",
]

MAX_ARGS_LEN = 160
"""Encoded arguments longer than this are replaced by a BLAKE2b digest (keys stay short)."""

NAMESPACE_TAG = "*"
"""The tag every entry carries: bumping it invalidates the whole namespace (the epoch)."""

MAX_KEY_LENGTH = 1024
"""The longest Redis key an entry may have, in characters (keys are ASCII: text is escaped)."""
MAX_TAG_LENGTH = 256
"""The longest tag (``user:<escaped id>``) an entry may carry."""
MAX_TAGS = 32
"""Tags per entry, not counting the namespace's own (every envelope carries its stamp)."""

_SAFE = re.compile(r"[A-Za-z0-9_.\-@+/|~!$^&;]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-@+/|~!$^&;]")
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_FORMATTER = string.Formatter()


def escape(text: str) -> str:
    """Percent-escape all but a conservative safe set (``:{}*?[],'%`` and spaces are escaped)."""
    if _SAFE.fullmatch(text):
        return text
    return _UNSAFE.sub(_percent, text)


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in match.group().encode("utf-8", "surrogatepass"))


def check_name(what: str, value: str) -> str:
    """Validate a namespace or kind: plain identifier-like text, no separators or braces."""
    if not _NAME.fullmatch(value):
        raise ConfigurationError(f"{what} {value!r} must match [A-Za-z0-9_.-]+")
    return value


def check_entry(key: str, tags: Sequence[str], where: str) -> None:
    """Raise :class:`KeyEncodingError` when ``key`` or a tag is too long or there are too many
    tags (:data:`MAX_KEY_LENGTH`, :data:`MAX_TAG_LENGTH`, :data:`MAX_TAGS`). ``where`` names the
    function or raw key family in the message; keys and tag values (user ids) are not quoted."""
    if len(key) > MAX_KEY_LENGTH:
        raise KeyEncodingError(
            f"{where}: the key would be {len(key)} characters, over {MAX_KEY_LENGTH}; shorten "
            "the arguments or give the decorator key= (long arguments are hashed, ids in "
            "session_id and key= templates are not)"
        )
    if len(tags) > MAX_TAGS + (NAMESPACE_TAG in tags):
        raise KeyEncodingError(f"{where}: {len(tags)} tags, over {MAX_TAGS} per entry")
    for t in tags:
        if len(t) > MAX_TAG_LENGTH:
            name = t.partition(":")[0]
            raise KeyEncodingError(
                f"{where}: a {name!r} tag would be {len(t)} characters, over {MAX_TAG_LENGTH}"
            )


def function_id(func: Callable[..., Any]) -> str:
    """``module.qualname`` of a function, escaped (``<locals>`` and friends included)."""
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", "?")
    return escape(f"{module}.{qualname}")


def tag(name: str, value: object) -> str:
    """The tag ``name:value``; the value is compared as text (``user=1`` and ``user="1"`` agree)."""
    return f"{name}:{escape(str(value))}"


def hash_tag(value: object) -> str:
    """A Redis Cluster hash tag for a session id: ``{<escaped id>}``."""
    return "{" + escape(str(value)) + "}"


def _enc(value: Any, out: list[str]) -> None:
    # One letter says the type; containers are bracketed; text is escaped, so the encoding is
    # injective: different argument tuples never produce the same string.
    t = type(value)
    if t is str:
        out.append("'" + escape(value))
    elif t is int:
        out.append(f"i{value}")
    elif t is bool:
        out.append("T" if value else "F")
    elif value is None:
        out.append("N")
    elif t is float:
        out.append(f"f{value!r}")
    elif t is bytes or t is bytearray:
        out.append("b" + bytes(value).hex())
    elif t is tuple or t is list:
        out.append("(" if t is tuple else "[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _enc(item, out)
        out.append(")" if t is tuple else "]")
    elif t is dict:
        parts = []
        for k, v in value.items():
            kv: list[str] = []
            _enc(k, kv)
            kv.append("=")
            _enc(v, kv)
            parts.append("".join(kv))
        out.append("<" + ",".join(sorted(parts)) + ">")
    elif t is set or t is frozenset:
        items = []
        for item in value:
            one: list[str] = []
            _enc(item, one)
            items.append("".join(one))
        out.append("s<" + ",".join(sorted(items)) + ">")
    elif isinstance(value, enum.Enum):
        out.append("e" + escape(f"{t.__qualname__}.{value.name}"))
    elif isinstance(value, uuid.UUID):
        out.append("u" + value.hex)
    elif isinstance(value, dt.datetime):
        out.append("t" + escape(value.isoformat()))
    elif isinstance(value, dt.date):
        out.append("d" + value.isoformat())
    elif isinstance(value, decimal.Decimal):
        out.append("D" + escape(str(value)))
    elif isinstance(value, int):  # int subclasses (IntFlag handled above as Enum)
        out.append(f"i{int(value)}")
    elif isinstance(value, str):
        out.append("'" + escape(str(value)))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        out.append("c" + escape(t.__qualname__) + "(")
        for i, field in enumerate(dataclasses.fields(value)):
            if i:
                out.append(",")
            _enc(getattr(value, field.name), out)
        out.append(")")
    else:
        hook = getattr(value, "__cache_key__", None)
        if hook is None:
            raise KeyEncodingError(
                f"cannot use a {t.__qualname__} in a cache key; give the type a "
                "__cache_key__() method or pass key= to the decorator"
            )
        out.append("k" + escape(str(hook())))


def encode_args(values: tuple[Any, ...] | list[Any], names: tuple[str, ...] = ()) -> str:
    """Encode bound argument values (in parameter order) into the argument part of a key.

    ``names`` only improves the error message when a value cannot be encoded.
    """
    out: list[str] = []
    _encode_into(values, names, 0, out)
    return _finish("".join(out))


def args_around(
    values: tuple[Any, ...], at: int, names: tuple[str, ...] = ()
) -> Callable[[Any], str]:
    """``item -> encode_args(values with item in place of values[at])``, the other arguments
    encoded once: the ids of a batch share them."""
    head: list[str] = []
    _encode_into(values[:at], names, 0, head)
    tail: list[str] = []
    _encode_into(values[at + 1 :], names, at + 1, tail)
    lead = "".join(head) + ("," if at else "")
    trail = ("," if at + 1 < len(values) else "") + "".join(tail)

    def encode(item: Any) -> str:
        out = [lead]
        _encode_into((item,), names, at, out)
        out.append(trail)
        return _finish("".join(out))

    return encode


def _encode_into(
    values: tuple[Any, ...] | list[Any], names: tuple[str, ...], first: int, out: list[str]
) -> None:
    """Append the encodings of ``values`` (the arguments from position ``first`` on), comma
    separated, to ``out``."""
    for i, value in enumerate(values, first):
        if i > first:
            out.append(",")
        try:
            _enc(value, out)
        except KeyEncodingError as exc:
            name = names[i] if i < len(names) else f"#{i}"
            raise KeyEncodingError(f"argument {name!r}: {exc}") from None
        except RecursionError:
            raise KeyEncodingError("argument is too deeply nested to be a key") from None


def _finish(text: str) -> str:
    """The argument part itself, or its hash when it is over :data:`MAX_ARGS_LEN`."""
    if len(text) > MAX_ARGS_LEN:
        return "#" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    return text


class Template:
    """A compiled template (``"session:{session_id}"``, ``"{session.user_id}"``) or a callable.

    Fields are checked against the function's parameters when decorating (``where`` names the
    decorator argument in the error); field values are rendered as escaped text. A callable receives
    the mapping of parameter name to bound value and returns the rendered text itself.
    """

    __slots__ = ("_func", "_parts", "fields", "source")

    def __init__(
        self,
        spec: str | Callable[[Mapping[str, Any]], object],
        params: Collection[str],
        *,
        where: str,
        func_name: str,
        accepts_any: bool = False,
    ) -> None:
        self.source = spec
        self._func: Callable[[Mapping[str, Any]], object] | None = None
        self._parts: tuple[tuple[str, str | None], ...] = ()
        if callable(spec):
            self._func = spec
            self.fields: tuple[str, ...] = ()
            return
        if not isinstance(spec, str):
            raise TemplateError(f"{where} of {func_name}: expected a str or callable, not {spec!r}")
        parts: list[tuple[str, str | None]] = []
        fields: list[str] = []
        try:
            parsed = list(_FORMATTER.parse(spec))
        except ValueError as exc:
            raise TemplateError(f"{where} of {func_name}: bad template {spec!r}: {exc}") from None
        for literal, field, fmt, conv in parsed:
            if literal:
                parts.append((literal, None))
            if field is None:
                continue
            root = re.split(r"[.\[]", field, maxsplit=1)[0]
            if not root or root.isdigit():
                raise TemplateError(
                    f"{where} of {func_name}: template {spec!r} must name parameters, not positions"
                )
            if fmt or conv:
                raise TemplateError(
                    f"{where} of {func_name}: template {spec!r}: format specs are not supported"
                )
            if root not in params and not accepts_any:
                raise TemplateError(
                    f"{where} of {func_name}: template {spec!r} names {root!r}, which is not a "
                    f"parameter of {func_name}{tuple(params)!r}"
                )
            parts.append(("", field))
            fields.append(root)
        self._parts = tuple(parts)
        self.fields = tuple(fields)

    def by_position(self, names: Sequence[str]) -> Callable[[Sequence[Any]], str] | None:
        """A faster renderer over argument values in ``names`` order, when every field is a
        plain parameter name (no attribute, index or callable); else None."""
        if self._func is not None:
            return None
        parts: list[tuple[str, int]] = []
        for literal, field in self._parts:
            if field is None:
                parts.append((literal, -1))
            elif field in names:
                parts.append(("", names.index(field)))
            else:
                return None
        frozen = tuple(parts)

        def render(vals: Sequence[Any]) -> str:
            return "".join(text if i < 0 else escape(str(vals[i])) for text, i in frozen)

        return render

    def render(self, arguments: Mapping[str, Any]) -> str:
        """The template's text for one call; callable templates are returned as ``str(result)``."""
        if self._func is not None:
            return str(self._func(arguments))
        out = []
        for literal, field in self._parts:
            if field is None:
                out.append(literal)
            elif field in arguments:  # a plain parameter name: no attribute or index to follow
                out.append(escape(str(arguments[field])))
            else:
                value, _ = _FORMATTER.get_field(field, (), arguments)
                out.append(escape(str(value)))
        return "".join(out)
