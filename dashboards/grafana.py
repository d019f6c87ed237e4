"""Grafana JSON building blocks of the brainycp-mail dashboards: queries, panels with the
fields every panel here carries, a left-to-right layout, the variables, the dashboard."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
EXPORTER = 'job=~"$job"'
PANEL = 'job=~"$job", panel=~"$panel"'
REMEDIATOR = 'job=~"$remediator_job"'
REMEDIATOR_PANEL = 'job=~"$remediator_job", panel=~"$panel"'
TAGS = ["brainycp-mail"]
ACTIONS = "brainycp_remediator_actions_total"
# The queue's counts (brainycp_mail_queue_*) and their legends.
QUEUE_COUNTS = (
    ("messages", "queued"),
    ("frozen_messages", "frozen"),
    ("bounce_messages", "bounces"),
    ("held_messages", "held"),
)
DAEMON_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "stopped", "color": "red", "index": 0},
            "1": {"text": "running", "color": "green", "index": 1},
        },
    }
]

Json = dict[str, Any]
# A table of series: the time and the metric name are not worth a column.
ORGANIZE_TABLE: Json = {
    "id": "organize",
    "options": {"excludeByName": {"Time": True, "__name__": True}},
}


def value_map(texts: dict[str, tuple[str, str]]) -> Json:
    """A value mapping: each value shown as its text, in its colour."""
    options = {
        value: {"text": text, "color": color, "index": i}
        for i, (value, (text, color)) in enumerate(texts.items())
    }
    return {"type": "value", "options": options}


def target(expr: str, legend: str = "", *, instant: bool = False, fmt: str = "") -> Json:
    """A Prometheus query of a panel."""
    out: Json = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend or "__auto"}
    if instant:
        out["instant"] = True
        out["range"] = False
    if fmt:
        out["format"] = fmt
    return out


class Layout:
    """Assigns ids and grid positions left to right, top to bottom (24 columns)."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1
        self.panels: list[Json] = []

    def add(self, panel: Json, width: int, height: int) -> None:
        if self.x + width > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel["id"] = self.next_id
        panel["gridPos"] = {"h": height, "w": width, "x": self.x, "y": self.y}
        self.next_id += 1
        self.x += width
        self.row_height = max(self.row_height, height)
        self.panels.append(panel)

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "id": self.next_id,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.next_id += 1
        self.y += 1


# The options of each kind of panel here, unless a panel brings its own.
_REDUCE_LAST = {"calcs": ["lastNotNull"], "fields": "", "values": False}
KIND_OPTIONS: dict[str, Json] = {
    "timeseries": {
        "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    },
    "stat": {
        "reduceOptions": _REDUCE_LAST,
        "colorMode": "value",
        "graphMode": "area",
        "textMode": "auto",
    },
    "bargauge": {
        "reduceOptions": _REDUCE_LAST,
        "orientation": "horizontal",
        "displayMode": "gradient",
        "showUnfilled": True,
    },
    "table": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
    "state-timeline": {
        "mergeValues": True,
        "showValue": "auto",
        "alignValue": "left",
        "rowHeight": 0.9,
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
    },
}


def layout(*sections: Callable[[Layout], None]) -> Layout:
    """A layout holding each section's rows and panels, in order."""
    out = Layout()
    for section in sections:
        section(out)
    return out


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[Json],
    unit: str,
    *,
    options: Json | None = None,
    custom: Json | None = None,
    mappings: list[Json] | None = None,
    thresholds: list[Json] | None = None,
    transformations: list[Json] | None = None,
    extra: Json | None = None,
) -> Json:
    """A Grafana panel with the fields every panel here carries; ``options`` default to
    the kind's (:data:`KIND_OPTIONS`)."""
    defaults: Json = {"unit": unit}
    if custom:
        defaults["custom"] = custom
    if mappings:
        defaults["mappings"] = mappings
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
    out: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": KIND_OPTIONS.get(kind, {}) if options is None else options,
    }
    if transformations:
        out["transformations"] = transformations
    if extra:
        out.update(extra)
    return out


GREEN_RED = [{"color": "green", "value": None}, {"color": "red", "value": 1}]
timeseries = functools.partial(panel, "timeseries")
stat = functools.partial(panel, "stat")
bargauge = functools.partial(panel, "bargauge")
table = functools.partial(panel, "table")
state_timeline = functools.partial(panel, "state-timeline", extra={"interval": "1m"})


def increases(title: str, description: str, by: str, counter: str, legend: str) -> Json:
    """Events per interval (1m at least) of the counter series ``counter``, summed by
    the labels ``by``."""
    return timeseries(
        title,
        description,
        [target(f"sum by ({by}) (increase({counter}[$__rate_interval]))", legend)],
        "short",
        extra={"interval": "1m"},
    )


def zeros(title: str, description: str, series: str, legend: str) -> Json:
    """A stat of how many of ``series`` are 0 now (0 when none is), red from one on."""
    return stat(
        title,
        description,
        [target(f"count({series} == 0) or vector(0)", legend)],
        "none",
        thresholds=GREEN_RED,
    )


def queue_total(
    title: str, description: str, count: str, legend: str, thresholds: list[Json] | None = None
) -> Json:
    """A stat of ``brainycp_mail_queue_<count>`` summed over the selected panels."""
    return stat(
        title,
        description,
        [target(f"sum(brainycp_mail_queue_{count}{{{PANEL}}})", legend)],
        "short",
        thresholds=thresholds,
    )


def series_table(title: str, description: str, expr: str) -> Json:
    """A table of the series ``expr`` gives now, one row each with its labels."""
    return table(
        title,
        description,
        [target(expr, instant=True, fmt="table")],
        "short",
        transformations=[ORGANIZE_TABLE],
    )


def flag(
    title: str,
    description: str,
    expr: str,
    legend: str,
    zero: tuple[str, str],
    one: tuple[str, str],
) -> Json:
    """A stat of a 0/1 series: each value shown as its (text, colour)."""
    return stat(
        title,
        description,
        [target(expr, legend)],
        "none",
        mappings=[value_map({"0": zero, "1": one})],
        thresholds=[{"color": zero[1], "value": None}, {"color": one[1], "value": 1}],
    )


# --------------------------------------------------------------------------- variables


def variables(*, remediator: bool = True, multi_panel: bool = True) -> list[Json]:
    """``$datasource``, ``$job``, ``$panel`` (and ``$remediator_job``)."""

    def query_var(name: str, label: str, query: str, *, multi: bool, all_: bool) -> Json:
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DATASOURCE,
            "query": {"query": query, "refId": f"{name}-var"},
            "definition": query,
            "refresh": 2,
            "sort": 1,
            "multi": multi,
            "includeAll": all_,
            "current": {},
            "options": [],
            "hide": 0,
        }

    out = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "options": [],
            "refresh": 1,
            "regex": "",
        },
        query_var("job", "Exporter job", "label_values(brainycp_up, job)", multi=True, all_=True),
        query_var(
            "panel",
            "Panel",
            'label_values(brainycp_up{job=~"$job"}, panel)',
            multi=multi_panel,
            all_=multi_panel,
        ),
    ]
    if remediator:
        out.append(
            query_var(
                "remediator_job",
                "Remediator job",
                "label_values(brainycp_remediator_build_info, job)",
                multi=True,
                all_=True,
            )
        )
    return out


def dashboard(
    uid: str, title: str, description: str, layout: Layout, templating: list[Json], **kw: Any
) -> Json:
    annotations: list[Json] = [
        {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        },
        *kw.pop("annotations", []),
    ]
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "time": {"from": kw.pop("time_from", "now-6h"), "to": "now"},
        "timezone": "",
        "annotations": {"list": annotations},
        "templating": {"list": templating},
        "links": [
            {
                "title": "brainycp-mail dashboards",
                "type": "dashboards",
                "tags": TAGS,
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "panels": layout.panels,
    }
