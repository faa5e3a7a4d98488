"""The reference pages cannot drift from the code: the configuration tables against the
signatures and the URL parser, the CLI page against the argument parser, the API reference
against ``__all__``, and every public name has a docstring of its own."""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import itertools
import re
from pathlib import Path
from typing import Any

import pytest

import tta_cache as tc
from helpers.docs_pages import DOCS, ROOT, first_column, section, table_rows
from tta_cache.cli import build_parser
from tta_cache.cli import common as cli_common
from tta_cache.tiers.redis.config import RedisConfig
from tta_cache.tiers.redis.tls import TLS_OPTIONS

SRC = ROOT / "src" / "tta_cache"
PUBLIC_MODULES = ("tta_cache", "tta_cache.sqlalchemy", "tta_cache.asgi")


def _literal(cell: str) -> tuple[bool, Any]:
    """``(True, value)`` when the cell is one backticked Python literal (or bare word)."""
    m = re.fullmatch(r"`([^`]+)`", cell.strip())
    if not m:
        return False, None
    try:
        return True, ast.literal_eval(m.group(1))
    except (ValueError, SyntaxError):
        return True, m.group(1)


def _parameters(func: Any, *skip: str) -> dict[str, inspect.Parameter]:
    params = inspect.signature(func).parameters
    return {n: p for n, p in params.items() if n not in ("self", *skip)}


# --- Cache(...) and cached(...) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "func", "skip"),
    [
        ("`Cache(...)` options", tc.Cache.__init__, ()),
        ("`cached(...)` options", tc.Cache.cached, ("func",)),
        ("`cached_many(...)` options", tc.Cache.cached_many, ()),
    ],
)
def test_every_option_is_documented_with_its_default(
    heading: str, func: Any, skip: tuple[str, ...]
) -> None:
    documented = first_column("configuration.md", heading)
    params = _parameters(func, *skip)
    assert set(documented) == set(params), (
        f"undocumented: {sorted(set(params) - set(documented))}; "
        f"documented but not parameters: {sorted(set(documented) - set(params))}"
    )
    for name, (default_cell, meaning) in documented.items():
        assert meaning, f"{name} has no meaning"
        is_literal, value = _literal(default_cell)
        if is_literal:
            assert value == params[name].default, (name, default_cell, params[name].default)


def test_the_url_query_options_are_the_ones_the_parser_reads() -> None:
    documented = set(first_column("configuration.md", "URL query options"))
    read: set[str] = set(TLS_OPTIONS)
    for path in (SRC / "tiers/redis/config.py", SRC / "tiers/redis/tls.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # `"name" in query`: the query options the parser looks for
            if (
                isinstance(node, ast.Compare)
                and isinstance(node.left, ast.Constant)
                and isinstance(node.ops[0], ast.In)
                and isinstance(node.comparators[0], ast.Name)
                and node.comparators[0].id == "query"
            ):
                read.add(node.left.value)
    assert documented == read, (sorted(read - documented), sorted(documented - read))


def test_each_documented_url_query_option_changes_the_configuration(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("not read when parsing")
    checks: dict[str, tuple[str, Any]] = {
        "db": ("redis://h:1/0?db=3", lambda c: c.db == 3),
        "pool_timeout": ("redis://h:1/0?pool_timeout=2.5", lambda c: c.pool_timeout == 2.5),
        "bump_replicas": ("redis://h:1/0?bump_replicas=2", lambda c: c.bump_replicas == 2),
        "ssl": ("redis://h:1/0?ssl=true", lambda c: c.ssl),
        "ssl_ca_certs": (
            f"rediss://h:1/0?ssl_ca_certs={pem}",
            lambda c: c.tls.ca_certs == str(pem),
        ),
        "ssl_certfile": (
            f"rediss://h:1/0?ssl_certfile={pem}",
            lambda c: c.tls.certfile == str(pem),
        ),
        "ssl_keyfile": (
            f"rediss://h:1/0?ssl_certfile={pem}&ssl_keyfile={pem}",
            lambda c: c.tls.keyfile == str(pem),
        ),
        "ssl_cert_reqs": ("rediss://h:1/0?ssl_cert_reqs=none", lambda c: c.tls.cert_reqs == "none"),
        "ssl_check_hostname": (
            "rediss://h:1/0?ssl_check_hostname=false",
            lambda c: c.tls.check_hostname is False,
        ),
    }
    assert set(checks) == set(first_column("configuration.md", "URL query options"))
    for name, (url, check) in checks.items():
        assert check(RedisConfig.from_url(url)), name


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    documented = set(first_column("configuration.md", "Environment"))
    in_code = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                in_code.update(
                    (re.fullmatch(r"TTA_CACHE_[A-Z_]+", node.value) and [node.value]) or []
                )
    assert documented == in_code


# --- the CLI --------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def _options(parser: argparse.ArgumentParser, *, skip: set[str]) -> dict[str, argparse.Action]:
    out = {}
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        names = [s for s in action.option_strings if s.startswith("--")] or [action.dest]
        if names[0] not in skip:
            out[names[0]] = action
    return out


def _by_primary(
    documented: dict[str, list[str]], actions: dict[str, argparse.Action]
) -> dict[str, list[str]]:
    """The documented names with short aliases (``-v`` beside ``--verbose``) folded into the
    option they belong to."""
    alias = {s: name for name, a in actions.items() for s in a.option_strings}
    return {alias.get(name, name): cells for name, cells in documented.items()}


def _check_defaults(documented: dict[str, list[str]], actions: dict[str, argparse.Action]) -> None:
    for name, cells in documented.items():
        if len(cells) < 2:  # no default column
            continue
        is_literal, value = _literal(cells[0])
        if is_literal and actions[name].default is not argparse.SUPPRESS:
            default = actions[name].default
            assert value == default or str(default) == str(value), (name, cells[0], default)


def test_the_cli_page_has_every_command_and_option() -> None:
    parser = build_parser()
    common = _options(parser, skip=set())
    documented_common = _by_primary(first_column("cli.md", "Options every command takes"), common)
    assert set(documented_common) == set(common)
    _check_defaults(documented_common, common)
    commands = _subcommands(parser)
    headings = set(re.findall(r"^### `([^`]+)`$", section("cli.md", "Commands"), re.M))
    assert headings == set(commands)
    for name, sub in commands.items():
        own = _options(sub, skip=set(common))
        text = section("cli.md", f"`{name}`")
        documented = first_column("cli.md", f"`{name}`") if "|" in text else {}
        documented = _by_primary(documented, own)
        assert set(documented) == set(own), (name, set(own) ^ set(documented))
        _check_defaults(documented, own)


def test_the_cli_page_has_every_exit_code() -> None:
    rows = table_rows(section("cli.md", "Exit codes"))
    codes = {int(row[0]) for row in rows}
    in_code = {v for k, v in vars(cli_common).items() if k.startswith("EXIT_")}
    assert codes == in_code


# --- the API reference ------------------------------------------------------------------------


def _reference_directives() -> set[str]:
    names = set()
    for page in (DOCS / "reference").glob("*.md"):
        names.update(re.findall(r"^::: ([\w.]+)$", page.read_text(encoding="utf-8"), re.M))
    return names


def test_the_api_reference_renders_every_public_name() -> None:
    expected = {
        f"{mod}.{name}" for mod in PUBLIC_MODULES for name in importlib.import_module(mod).__all__
    }
    assert _reference_directives() == expected


def _documented_data(module: Any, name: str) -> bool:
    """Whether a module-level constant has an attribute docstring where it is assigned."""
    for path in SRC.rglob("*.py"):
        body = ast.parse(path.read_text(encoding="utf-8")).body
        for node, after in itertools.pairwise(body):
            target = node.target if isinstance(node, ast.AnnAssign) else None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            if (
                isinstance(target, ast.Name)
                and target.id == name
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
            ):
                return True
    return False


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__doc__, module_name
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj):
            if not obj.__dict__.get("__doc__"):
                missing.append(name)
            for klass in obj.__mro__:
                if not klass.__module__.startswith("tta_cache"):
                    continue
                for attr, value in vars(klass).items():
                    func = getattr(value, "__func__", value)
                    func = func.fget if isinstance(func, property) else func
                    if not attr.startswith("_") and callable(func) and not func.__doc__:
                        missing.append(f"{name}.{attr}")
        elif callable(obj):
            if not obj.__doc__:
                missing.append(name)
        elif not _documented_data(module, name):
            missing.append(name)
    assert not missing, missing
