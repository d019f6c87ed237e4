#!/usr/bin/env python3
"""Write the Grafana dashboards of brainycp-mail as JSON files beside this script.

    python dashboards/build.py          # rewrite dashboards/*.json
    python dashboards/build.py --check  # exit 1 when a committed file is out of date

The dashboards are code so that every panel gets the same datasource, variables, unit and
description; the JSON files are what an operator imports into Grafana (Dashboards ->
New -> Import), choosing a Prometheus data source for ``$datasource``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
EXPORTER = 'job=~"$job"'
PANEL = 'job=~"$job", panel=~"$panel"'
REMEDIATOR = 'job=~"$remediator_job"'
REMEDIATOR_PANEL = 'job=~"$remediator_job", panel=~"$panel"'
TAGS = ["brainycp-mail"]
ACTIONS = "brainycp_remediator_actions_total"
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
    """A Grafana panel with the fields every panel here carries."""
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
        "options": options or {},
    }
    if transformations:
        out["transformations"] = transformations
    if extra:
        out.update(extra)
    return out


GREEN_RED = [{"color": "green", "value": None}, {"color": "red", "value": 1}]
TIMESERIES_OPTS = {
    "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
    "tooltip": {"mode": "multi", "sort": "desc"},
}


def timeseries(title: str, description: str, targets: list[Json], unit: str, **kw: Any) -> Json:
    return panel("timeseries", title, description, targets, unit, options=TIMESERIES_OPTS, **kw)


def stat(title: str, description: str, targets: list[Json], unit: str, **kw: Any) -> Json:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area",
        "textMode": "auto",
    }
    return panel("stat", title, description, targets, unit, options=options, **kw)


def bargauge(title: str, description: str, targets: list[Json], unit: str, **kw: Any) -> Json:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "horizontal",
        "displayMode": "gradient",
        "showUnfilled": True,
    }
    return panel("bargauge", title, description, targets, unit, options=options, **kw)


def table(title: str, description: str, targets: list[Json], unit: str, **kw: Any) -> Json:
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    return panel("table", title, description, targets, unit, options=options, **kw)


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


# --------------------------------------------------------------------------- fleet


def fleet() -> Json:
    L = Layout()
    L.row("Fleet")
    L.add(
        stat(
            "Panels up",
            "Panels whose last count_msg poll succeeded (brainycp_up = 1).",
            [target(f"sum(brainycp_up{{{EXPORTER}}})", "up")],
            "none",
            thresholds=[{"color": "green", "value": None}],
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Panels down",
            "Panels whose last count_msg poll failed: their queue values are unknown.",
            [target(f"count(brainycp_up{{{EXPORTER}}} == 0) or vector(0)", "down")],
            "none",
            thresholds=GREEN_RED,
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Queued messages",
            "Messages in the mail queues of all selected panels (last poll of each).",
            [target(f"sum(brainycp_mail_queue_messages{{{PANEL}}})", "queued")],
            "short",
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Frozen messages",
            "Frozen messages in the Exim queues of all selected panels.",
            [target(f"sum(brainycp_mail_queue_frozen_messages{{{PANEL}}})", "frozen")],
            "short",
            thresholds=GREEN_RED,
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Queued bounces",
            "Bounces (sender <>) in the queues of all selected panels.",
            [target(f"sum(brainycp_mail_queue_bounce_messages{{{PANEL}}})", "bounces")],
            "short",
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Daemons stopped",
            "ClamAV and SpamAssassin instances whose status reads stopped.",
            [target(f"count(brainycp_mail_daemon_up{{{PANEL}}} == 0) or vector(0)", "stopped")],
            "none",
            thresholds=GREEN_RED,
        ),
        4,
        4,
    )
    L.add(
        timeseries(
            "Fleet queue",
            "Queued, frozen, bounce and held messages summed over the selected panels.",
            [
                target(f"sum(brainycp_mail_queue_messages{{{PANEL}}})", "queued"),
                target(f"sum(brainycp_mail_queue_frozen_messages{{{PANEL}}})", "frozen"),
                target(f"sum(brainycp_mail_queue_bounce_messages{{{PANEL}}})", "bounces"),
                target(f"sum(brainycp_mail_queue_held_messages{{{PANEL}}})", "held"),
            ],
            "short",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Panels up over time",
            "Panels answering the exporter, against all configured panels.",
            [
                target(f"sum(brainycp_up{{{EXPORTER}}})", "up"),
                target(f"count(brainycp_up{{{EXPORTER}}})", "configured"),
            ],
            "none",
        ),
        12,
        8,
    )
    L.row("Top panels")
    L.add(
        bargauge(
            "Top panels by queued messages",
            "The 10 selected panels with the largest mail queue right now.",
            [
                target(
                    f"topk(10, brainycp_mail_queue_messages{{{PANEL}}})", "{{panel}}", instant=True
                )
            ],
            "short",
        ),
        8,
        9,
    )
    L.add(
        bargauge(
            "Top panels by frozen messages",
            "The 10 selected panels with the most frozen messages right now.",
            [
                target(
                    f"topk(10, brainycp_mail_queue_frozen_messages{{{PANEL}}} > 0)",
                    "{{panel}}",
                    instant=True,
                )
            ],
            "short",
        ),
        8,
        9,
    )
    L.add(
        bargauge(
            "Top panels by queue growth",
            "Queue growth per hour over the last hour (recording rule "
            "panel:brainycp_mail_queue_messages:deriv_per_hour), 10 fastest-growing panels.",
            [
                target(
                    f"topk(10, panel:brainycp_mail_queue_messages:deriv_per_hour{{{PANEL}}} > 0)",
                    "{{panel}}",
                    instant=True,
                )
            ],
            "short",
        ),
        8,
        9,
    )
    L.add(
        table(
            "Daemon status",
            "ClamAV and SpamAssassin per panel: running, stopped, or unknown (the status text "
            "matched neither pattern), and whether the panel answers at all.",
            [
                target(f"brainycp_mail_daemon_up{{{PANEL}}}", instant=True, fmt="table"),
                target(
                    f"brainycp_mail_daemon_status_unknown{{{PANEL}}}", instant=True, fmt="table"
                ),
            ],
            "none",
            mappings=DAEMON_MAPPINGS,
            transformations=[
                {
                    "id": "joinByField",
                    "options": {"byField": "daemon", "mode": "outer"},
                },
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "__name__": True},
                        "renameByName": {"Value #A": "running", "Value #B": "unknown"},
                    },
                },
            ],
        ),
        12,
        9,
    )
    L.add(
        table(
            "Poll errors by reason",
            "Failed polls over the selected time range, by panel, operation and reason.",
            [
                target(
                    "sum by (panel, operation, reason) (increase(brainycp_poll_errors_total"
                    f"{{{PANEL}}}[$__range])) > 0",
                    instant=True,
                    fmt="table",
                )
            ],
            "short",
        ),
        12,
        9,
    )
    L.row("Remediation")
    L.add(
        timeseries(
            "Remediation actions by outcome",
            "Actions the remediator finished (or skipped), by outcome.",
            [
                target(
                    f"sum by (outcome) (increase({ACTIONS}{{{REMEDIATOR_PANEL}}}"
                    "[$__rate_interval]))",
                    "{{outcome}}",
                )
            ],
            "short",
            extra={"interval": "1m"},
        ),
        12,
        8,
    )
    L.add(
        table(
            "Remediation actions in range",
            "Actions per panel, action and outcome over the selected time range.",
            [
                target(
                    f"sum by (panel, action, outcome) (increase({ACTIONS}{{{REMEDIATOR_PANEL}}}"
                    "[$__range])) > 0",
                    instant=True,
                    fmt="table",
                )
            ],
            "short",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Webhook notifications",
            "Alertmanager notifications the remediator received, by result "
            "(accepted, unauthorized, invalid, journal_error).",
            [
                target(
                    "sum by (result) (rate(brainycp_remediator_notifications_total"
                    f"{{{REMEDIATOR}}}[$__rate_interval]))",
                    "{{result}}",
                )
            ],
            "reqps",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Actions in progress",
            "Actions running on panels right now.",
            [target(f"sum(brainycp_remediator_actions_in_progress{{{REMEDIATOR}}})", "running")],
            "none",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Action duration (p90)",
            "90th percentile of the time an action took, start to verified outcome.",
            [
                target(
                    "histogram_quantile(0.9, sum by (action, le) (rate("
                    f"brainycp_remediator_action_duration_seconds_bucket{{{REMEDIATOR}}}"
                    "[$__rate_interval])))",
                    "{{action}}",
                )
            ],
            "s",
        ),
        8,
        8,
    )
    return dashboard(
        "brainycp-mail-fleet",
        "BrainyCP mail / Fleet",
        "All BrainyCP panels: which answer, how full their mail queues are, which daemons "
        "are stopped, and what the remediator did.",
        L,
        variables(),
    )


# --------------------------------------------------------------------------- panel detail


def panel_detail() -> Json:
    L = Layout()
    L.row("Queue")
    L.add(
        timeseries(
            "Queued, frozen, bounce and held messages",
            "The mail queue of each selected panel, from the exporter's last polls. Frozen, "
            "bounce and held counts come from list_msg (every list_interval).",
            [
                target(f"brainycp_mail_queue_messages{{{PANEL}}}", "{{panel}} queued"),
                target(f"brainycp_mail_queue_frozen_messages{{{PANEL}}}", "{{panel}} frozen"),
                target(f"brainycp_mail_queue_bounce_messages{{{PANEL}}}", "{{panel}} bounces"),
                target(f"brainycp_mail_queue_held_messages{{{PANEL}}}", "{{panel}} held"),
            ],
            "short",
        ),
        16,
        9,
    )
    L.add(
        timeseries(
            "Queue size",
            "Total size of the queued messages.",
            [target(f"brainycp_mail_queue_size_bytes{{{PANEL}}}", "{{panel}}")],
            "bytes",
        ),
        8,
        9,
    )
    L.add(
        panel(
            "heatmap",
            "Message age",
            "How many queued messages fall in each age bucket (gauge histogram "
            "brainycp_mail_queue_message_age_seconds; buckets 5m to 7d). Warm cells high up "
            "mean old mail stuck in the queue.",
            [
                target(
                    f"sum by (le) (brainycp_mail_queue_message_age_seconds_bucket{{{PANEL}}})",
                    "{{le}}",
                    fmt="heatmap",
                )
            ],
            "short",
            options={
                "calculate": False,
                "yAxis": {"axisPlacement": "left", "unit": "s", "reverse": False},
                "rowsFrame": {"layout": "auto"},
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                "cellGap": 1,
                "tooltip": {"show": True, "yHistogram": False},
                "legend": {"show": True},
            },
            extra={"interval": "1m"},
        ),
        16,
        9,
    )
    L.add(
        timeseries(
            "Oldest message age",
            "Age of the oldest queued message (0 when the queue is empty).",
            [target(f"brainycp_mail_queue_oldest_message_age_seconds{{{PANEL}}}", "{{panel}}")],
            "s",
        ),
        8,
        9,
    )
    L.add(
        table(
            "Top senders",
            "Senders with the most queued messages (needs exporter.top_senders > 0; "
            "<> is the bounce sender).",
            [
                target(
                    f"topk(20, brainycp_mail_queue_sender_messages{{{PANEL}}})",
                    instant=True,
                    fmt="table",
                )
            ],
            "short",
        ),
        12,
        9,
    )
    L.add(
        timeseries(
            "Remediation actions",
            "Actions the remediator ran on the selected panels, by action and outcome.",
            [
                target(
                    f"sum by (panel, action, outcome) (increase({ACTIONS}{{{REMEDIATOR_PANEL}}}"
                    "[$__rate_interval]))",
                    "{{panel}} {{action}} {{outcome}}",
                )
            ],
            "short",
            extra={"interval": "1m"},
        ),
        12,
        9,
    )
    L.row("Daemons and polls")
    L.add(
        panel(
            "state-timeline",
            "Daemon status",
            "ClamAV and SpamAssassin over time: running (green), stopped (red); gaps mean the "
            "status could not be read or classified.",
            [target(f"brainycp_mail_daemon_up{{{PANEL}}}", "{{panel}} {{daemon}}")],
            "none",
            mappings=DAEMON_MAPPINGS,
            options={
                "mergeValues": True,
                "showValue": "auto",
                "alignValue": "left",
                "rowHeight": 0.9,
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            },
            extra={"interval": "1m"},
        ),
        24,
        7,
    )
    L.add(
        timeseries(
            "Poll duration",
            "How long the last poll of each operation took (list_msg includes parsing).",
            [target(f"brainycp_poll_duration_seconds{{{PANEL}}}", "{{panel}} {{operation}}")],
            "s",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Poll errors",
            "Failed polls by operation and reason (timeout, connect, auth, permission, ...).",
            [
                target(
                    "sum by (panel, operation, reason) (increase(brainycp_poll_errors_total"
                    f"{{{PANEL}}}[$__rate_interval]))",
                    "{{panel}} {{operation}} {{reason}}",
                )
            ],
            "short",
            extra={"interval": "1m"},
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Time since last successful poll",
            "Age of the values each operation feeds; it grows while a poll keeps failing.",
            [
                target(
                    f"time() - brainycp_poll_last_success_timestamp_seconds{{{PANEL}}}",
                    "{{panel}} {{operation}}",
                )
            ],
            "s",
        ),
        8,
        8,
    )
    actions = f"{ACTIONS}{{{REMEDIATOR_PANEL}}}"
    annotation = {
        "name": "Remediation actions",
        "datasource": DATASOURCE,
        "enable": True,
        "hide": False,
        "iconColor": "orange",
        # A counter series that appears with its first action has no increase(); the
        # `unless ... offset` part catches it.
        "expr": f"(increase({actions}[$__interval]) > 0) or "
        f"({actions} unless {actions} offset $__interval)",
        "step": "1m",
        "titleFormat": "{{action}} {{outcome}}",
        "textFormat": "{{panel}}",
        "tagKeys": "panel,action,outcome",
        "useValueForTime": False,
    }
    return dashboard(
        "brainycp-mail-panel",
        "BrainyCP mail / Panel",
        "One panel (or a few) in detail: queue over time, message ages, daemons, polls, "
        "and the remediator's actions as annotations.",
        L,
        variables(),
        annotations=[annotation],
    )


# --------------------------------------------------------------------------- capacity


def capacity() -> Json:
    L = Layout()
    L.add(
        timeseries(
            "Queue growth per hour",
            "Change of each panel's queue per hour, fitted over the last hour (recording rule "
            "panel:brainycp_mail_queue_messages:deriv_per_hour). Above 0: growing.",
            [target(f"panel:brainycp_mail_queue_messages:deriv_per_hour{{{PANEL}}}", "{{panel}}")],
            "short",
        ),
        12,
        9,
    )
    L.add(
        timeseries(
            "Queue now and forecast",
            "Queue size now, its linear forecast 6 h and 24 h ahead (predict_linear over the "
            "recent trend), and the BrainyCPMailQueueHigh threshold.",
            [
                target(f"brainycp_mail_queue_messages{{{PANEL}}}", "{{panel}} now"),
                target(
                    f"panel:brainycp_mail_queue_messages:predict_linear_6h{{{PANEL}}}",
                    "{{panel}} in 6h",
                ),
                target(
                    f"panel:brainycp_mail_queue_messages:predict_linear_24h{{{PANEL}}}",
                    "{{panel}} in 24h",
                ),
                target(
                    f"max(job:brainycp_mail_queue_high_threshold:value{{{EXPORTER}}})", "threshold"
                ),
            ],
            "short",
        ),
        12,
        9,
    )
    L.add(
        bargauge(
            "Time until the queue-high threshold",
            "For each panel whose queue grows: how long until it crosses the "
            "BrainyCPMailQueueHigh threshold at the growth of the last hour "
            "(panel:brainycp_mail_queue_messages:seconds_to_high). Panels not growing are absent.",
            [
                target(
                    f"bottomk(20, panel:brainycp_mail_queue_messages:seconds_to_high{{{PANEL}}})",
                    "{{panel}}",
                    instant=True,
                )
            ],
            "s",
            thresholds=[
                {"color": "red", "value": None},
                {"color": "orange", "value": 14400},
                {"color": "green", "value": 86400},
            ],
        ),
        12,
        10,
    )
    L.add(
        bargauge(
            "Share of the fleet queue",
            "Each panel's part of all queued messages of its exporter job "
            "(panel:brainycp_mail_queue_messages:fleet_share).",
            [
                target(
                    f"topk(15, panel:brainycp_mail_queue_messages:fleet_share{{{PANEL}}})",
                    "{{panel}}",
                    instant=True,
                )
            ],
            "percentunit",
        ),
        12,
        10,
    )
    L.add(
        timeseries(
            "Fleet queue and 24 h forecast",
            "All queued messages of the exporter job and the sum of the per-panel 24 h forecasts.",
            [
                target(f"sum(job:brainycp_mail_queue_messages:sum{{{EXPORTER}}})", "queued"),
                target(
                    f"sum(panel:brainycp_mail_queue_messages:predict_linear_24h{{{EXPORTER}}})",
                    "forecast in 24h",
                ),
                target(f"sum(job:brainycp_mail_queue_frozen_messages:sum{{{EXPORTER}}})", "frozen"),
            ],
            "short",
        ),
        12,
        9,
    )
    L.add(
        timeseries(
            "Queue bytes growth per hour",
            "Change of the queued bytes per hour over the last hour: disk the queue will need.",
            [target(f"deriv(brainycp_mail_queue_size_bytes{{{PANEL}}}[1h]) * 3600", "{{panel}}")],
            "bytes",
        ),
        12,
        9,
    )
    return dashboard(
        "brainycp-mail-capacity",
        "BrainyCP mail / Capacity",
        "Queue trends and forecasts from the brainycp-mail recording rules "
        "(alerts/brainycp-mail.rules.yml must be loaded): growth, forecast, time until the "
        "queue-high threshold.",
        L,
        variables(remediator=False),
        time_from="now-24h",
    )


DASHBOARDS = {
    "brainycp-mail-fleet.json": fleet,
    "brainycp-mail-panel.json": panel_detail,
    "brainycp-mail-capacity.json": capacity,
}


def render(name: str) -> str:
    """The JSON text of dashboard file ``name``."""
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) every dashboard; exit 1 when one is stale."""
    parser = argparse.ArgumentParser(description="Write the brainycp-mail Grafana dashboards.")
    parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for name in DASHBOARDS:
        path, text = HERE / name, render(name)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python dashboards/build.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
