"""dashboards/grafana-tta-cache.json: Grafana's dashboard JSON shape, and every query names
metrics and labels the code emits (in their Prometheus form, see helpers.otel_names)."""

from __future__ import annotations

import json
import re
from typing import Any

import promql_parser

from helpers.docs_pages import ROOT, first_column
from helpers.otel_names import instruments, prometheus_label, prometheus_series

DASHBOARD = ROOT / "dashboards" / "grafana-tta-cache.json"
GRID_WIDTH = 24
PANEL_TYPES = {
    "timeseries",
    "stat",
    "gauge",
    "bargauge",
    "table",
    "state-timeline",
    "heatmap",
    "text",
}
# Labels Prometheus adds to every series scraped or received (the target's), and histogram `le`.
SERIES_LABELS = {"le", "instance", "job"}
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$namespace": ".*"}


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _types(obj: dict[str, Any], where: str, **fields: type | tuple[type, ...]) -> None:
    for name, kind in fields.items():
        assert name in obj, f"{where}: no {name!r}"
        assert isinstance(obj[name], kind), f"{where}: {name!r} is {type(obj[name]).__name__}"


def _targets() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _dashboard()["panels"]
        for target in panel["targets"]
    ]


def test_the_dashboard_has_grafanas_shape() -> None:
    dash = _dashboard()
    _types(
        dash,
        "dashboard",
        title=str,
        uid=str,
        schemaVersion=int,
        version=int,
        panels=list,
        templating=dict,
        time=dict,
        tags=list,
        editable=bool,
    )
    assert dash["schemaVersion"] >= 36  # Grafana 9+; datasource references are objects
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash["uid"])
    assert {"from", "to"} <= set(dash["time"])
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel.get("id") for panel in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are not unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in dash["panels"]:
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        _types(
            panel, where, id=int, type=str, title=str, gridPos=dict, datasource=dict, targets=list
        )
        assert panel["type"] in PANEL_TYPES, where
        assert panel["title"].strip(), where
        grid = panel["gridPos"]
        _types(grid, where, h=int, w=int, x=int, y=int)
        assert min(grid["w"], grid["h"]) >= 1, where
        assert min(grid["x"], grid["y"]) >= 0, where
        assert grid["x"] + grid["w"] <= GRID_WIDTH, where
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{where} overlaps {cells[(x, y)]}"
                cells[(x, y)] = where
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["targets"], f"{where}: no query"
        ref_ids = [t.get("refId") for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), where
        for target in panel["targets"]:
            _types(target, where, refId=str, expr=str, datasource=dict)
            assert target["expr"].strip(), where
        if "fieldConfig" in panel:
            _types(panel["fieldConfig"], where, defaults=dict, overrides=list)


def _expanded(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def _names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) of a PromQL expression."""
    ast = promql_parser.parse(_expanded(expr))  # raises on a syntax error
    metrics: set[str] = set()
    labels: set[str] = set()

    def walk(node: Any) -> None:
        kind = type(node).__name__
        if kind in ("VectorSelector", "MatrixSelector"):
            selector = node if kind == "VectorSelector" else node.vector_selector
            if selector.name:
                metrics.add(selector.name)
            labels.update(m.name for m in selector.matchers.matchers)
        if kind == "AggregateExpr" and node.modifier is not None:
            labels.update(node.modifier.labels)
        for attr in ("expr", "lhs", "rhs", "param"):
            child = getattr(node, attr, None)
            if child is not None:
                walk(child)
        for child in getattr(node, "args", None) or ():
            walk(child)

    walk(ast)
    return metrics, labels


def test_every_query_parses_and_names_metrics_and_labels_the_code_emits() -> None:
    emitted = set().union(*(prometheus_series(i) for i in instruments()))
    attributes = set(first_column("observability.md", "Span attributes"))
    known_labels = {prometheus_label(a) for a in attributes} | SERIES_LABELS
    used: set[str] = set()
    for title, expr in _targets():
        metrics, labels = _names(expr)
        assert metrics, (title, expr)
        assert metrics <= emitted, (title, metrics - emitted)
        assert labels <= known_labels, (title, labels - known_labels)
        used |= metrics
    variable = _dashboard()["templating"]["list"][1]["definition"]
    assert re.fullmatch(r"label_values\((\w+), (\w+)\)", variable)
    # every instrument is on the dashboard
    for instrument in instruments():
        assert prometheus_series(instrument) & used, instrument.name


def test_the_panels_cover_what_an_operator_watches() -> None:
    titles = " / ".join(panel["title"].lower() for panel in _dashboard()["panels"])
    for topic in ("hit rate", "latency", "invalidation lag", "errors", "breaker", "l1 size"):
        assert topic in titles, topic
    quantiles = {
        float(q) for _, e in _targets() for q in re.findall(r"histogram_quantile\(([\d.]+)", e)
    }
    assert {0.5, 0.99} <= quantiles
