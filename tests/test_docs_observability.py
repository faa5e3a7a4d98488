"""docs/observability.md against the code: every instrument (name, type, unit, Prometheus name)
and every span and metric attribute is in its tables, and nothing else is."""

from __future__ import annotations

import ast
import re

from helpers.docs_pages import ROOT, code_names, first_column
from helpers.otel_names import instruments, prometheus_name

OBSERVABILITY = ROOT / "src" / "tta_cache" / "observability"


def test_the_metrics_table_is_every_instrument_the_code_creates() -> None:
    documented = first_column("observability.md", "Metrics")
    created = {i.name: i for i in instruments()}
    assert set(documented) == set(created), set(documented) ^ set(created)
    for name, (kind, unit, _attributes, prometheus) in documented.items():
        instrument = created[name]
        assert kind == instrument.kind, name
        assert code_names(unit) == [instrument.unit], name
        assert code_names(prometheus) == [prometheus_name(instrument)], name


def _attribute_literals() -> set[str]:
    """The attribute names the telemetry code writes: keys of its attribute dicts, first items
    of its attribute pairs, and ``set_attribute`` names."""
    found: set[str] = set()
    for path in (OBSERVABILITY / "telemetry.py", OBSERVABILITY / "instruments.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            keys: list[ast.expr | None] = []
            if isinstance(node, ast.Dict):
                keys = list(node.keys)
            elif isinstance(node, ast.Tuple) and len(node.elts) == 2:
                keys = [node.elts[0]]
            elif isinstance(node, ast.Subscript):
                keys = [node.slice]
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "set_attribute"
            ):
                keys = [node.args[0]]
            for key in keys:
                if (
                    isinstance(key, ast.Constant)
                    and isinstance(key.value, str)
                    and re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", key.value)
                ):
                    found.add(key.value)
    return {name for name in found if not name.startswith("tta_cache.")}


def test_the_attribute_table_is_every_attribute_the_code_writes() -> None:
    documented = set(first_column("observability.md", "Span attributes"))
    written = _attribute_literals()
    assert documented == written, (sorted(written - documented), sorted(documented - written))


def test_the_metric_attributes_are_documented_attributes() -> None:
    attributes = set(first_column("observability.md", "Span attributes"))
    for name, (_kind, _unit, cell, _prometheus) in first_column(
        "observability.md", "Metrics"
    ).items():
        used = set(code_names(cell))
        assert used <= attributes, (name, used - attributes)
