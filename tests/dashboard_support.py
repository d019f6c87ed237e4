"""The dashboards' PromQL with Grafana's variables filled in: shared by the dashboard
tests and the full-loop test that runs every query against a real Prometheus."""

from __future__ import annotations

import json
from typing import Any

from tests.support import REPO

DASHBOARDS = REPO / "dashboards"


FILES = ("brainycp-mail-fleet.json", "brainycp-mail-panel.json", "brainycp-mail-capacity.json")


# What the Grafana variables become when a test runs the queries itself.
SUBSTITUTIONS = {
    "remediator_job": "brainycp-mail-remediator",
    "job": "brainycp-mail-exporter",
    "panel": "web01",
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "1h",
}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows excluded, nested row panels included)."""
    out = []
    for item in dashboard["panels"]:
        if item["type"] == "row":
            out.extend(item.get("panels", []))
        else:
            out.append(item)
    return out


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """``expr`` with ``$name`` and ``${name}`` replaced (longest names first)."""
    values = {**SUBSTITUTIONS, **(values or {})}
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    return expr


def raw_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expression as written) for every target and annotation."""
    out = []
    for name in FILES:
        dash = load(name)
        for p in panels(dash):
            for t in p["targets"]:
                out.append((name, p["title"], t["expr"]))
        for a in dash["annotations"]["list"]:
            if "expr" in a:
                out.append((name, f"annotation: {a['name']}", a["expr"]))
    return out


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL) with the variables substituted for
    job="brainycp-mail-exporter", remediator_job="brainycp-mail-remediator", panel="web01",
    $__rate_interval=1m, $__interval=30s, $__range=1h."""
    return [(name, title, substitute(expr)) for name, title, expr in raw_queries()]
