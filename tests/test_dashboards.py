"""The Grafana dashboards: structure, variables, units and descriptions, and every query
parses as PromQL (checked by promtool) and names only metrics that exist.

``dashboard_queries()`` is reused by tests that run the queries against a real Prometheus.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.dashboard_support import (
    DASHBOARDS,
    FILES,
    dashboard_queries,
    load,
    panels,
    raw_queries,
    substitute,
)
from tests.support import PYTHON, REPO, require_binary

RULES = REPO / "alerts" / "brainycp-mail.rules.yml"

EXPORTER_METRICS = {
    "brainycp_up",
    "brainycp_mail_queue_messages",
    "brainycp_mail_queue_frozen_messages",
    "brainycp_mail_queue_bounce_messages",
    "brainycp_mail_queue_held_messages",
    "brainycp_mail_queue_size_bytes",
    "brainycp_mail_queue_oldest_message_age_seconds",
    "brainycp_mail_queue_message_age_seconds_bucket",
    "brainycp_mail_queue_message_age_seconds_gcount",
    "brainycp_mail_queue_message_age_seconds_gsum",
    "brainycp_mail_queue_sender_messages",
    "brainycp_mail_queue_recipient_domain_messages",
    "brainycp_mail_queue_deferral_reason_messages",
    "brainycp_mail_queue_unparsed_lines",
    "brainycp_mail_daemon_up",
    "brainycp_mail_daemon_status_unknown",
    "brainycp_poll_success",
    "brainycp_poll_duration_seconds",
    "brainycp_poll_last_success_timestamp_seconds",
    "brainycp_polls_total",
    "brainycp_poll_errors_total",
    "brainycp_exporter_build_info",
    "brainycp_config_last_reload_successful",
}
REMEDIATOR_METRICS = {
    "brainycp_remediator_notifications_total",
    "brainycp_remediator_truncated_alerts_total",
    "brainycp_remediator_actions_total",
    "brainycp_remediator_action_duration_seconds_bucket",
    "brainycp_remediator_action_duration_seconds_sum",
    "brainycp_remediator_action_duration_seconds_count",
    "brainycp_remediator_actions_in_progress",
    "brainycp_remediator_build_info",
    "brainycp_remediator_paused",
    "brainycp_remediator_circuit_open",
    "brainycp_remediator_actions_awaiting_approval",
    "brainycp_remediator_oldest_approval_request_timestamp_seconds",
    "brainycp_remediator_approval_timeout_seconds",
    "brainycp_remediator_journal_up",
    "brainycp_remediator_outbound_notifications_total",
}


# --------------------------------------------------------------------------- structure


def test_committed_dashboards_are_what_build_py_writes() -> None:
    result = subprocess.run(
        [PYTHON, str(DASHBOARDS / "build.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", FILES)
def test_dashboard_has_fixed_uid_schema_and_variables(name: str) -> None:
    dash = load(name)
    assert dash["uid"] == name.removesuffix(".json")
    assert dash["schemaVersion"] >= 39
    assert dash["title"] and dash["description"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var in ("job", "panel"):
        assert variables[var]["type"] == "query"
        assert variables[var]["definition"].startswith("label_values(")
        assert variables[var]["datasource"]["uid"] == "${datasource}"
    assert "$job" in variables["panel"]["definition"], "panel values should follow $job"


@pytest.mark.parametrize("name", FILES)
def test_every_panel_has_unit_description_and_the_datasource_variable(name: str) -> None:
    dash = load(name)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    shown = panels(dash)
    assert len(shown) >= 5
    for p in shown:
        title = p["title"]
        assert p.get("description", "").strip(), f"{title}: no description"
        assert p["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert p["targets"], f"{title}: no query"
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", title
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, title
    for a in dash["annotations"]["list"]:
        if "expr" in a:
            assert a["datasource"]["uid"] == "${datasource}"


def test_dashboards_show_what_the_issue_asks_for() -> None:
    titles = {name: {p["title"] for p in panels(load(name))} for name in FILES}
    kinds = {name: {p["type"] for p in panels(load(name))} for name in FILES}
    assert {"Panels up", "Fleet queue", "Top panels by queued messages"} <= titles[FILES[0]]
    assert {"Top panels by frozen messages", "Daemon status"} <= titles[FILES[0]]
    assert "Remediation actions by outcome" in titles[FILES[0]]
    assert {"heatmap", "state-timeline"} <= kinds[FILES[1]]
    assert {"Oldest message age", "Poll duration", "Poll errors"} <= titles[FILES[1]]
    notes = [a for a in load(FILES[1])["annotations"]["list"] if "expr" in a]
    assert notes and "brainycp_remediator_actions_total" in notes[0]["expr"]
    assert {"Queue growth per hour", "Queue now and forecast"} <= titles[FILES[2]]
    assert "Time until the queue-high threshold" in titles[FILES[2]]


# What an operator reads during an outbreak: on the fleet dashboard, and per panel
# where the metric is per panel.
OUTBREAK_METRICS = {
    "brainycp_mail_queue_sender_messages": FILES[:2],
    "brainycp_mail_queue_recipient_domain_messages": FILES[:2],
    "brainycp_mail_queue_deferral_reason_messages": FILES[:2],
    "brainycp_mail_queue_unparsed_lines": FILES[:2],
    "brainycp_poll_success": FILES[:2],
    "brainycp_remediator_paused": FILES[:1],
    "brainycp_remediator_circuit_open": FILES[:1],
    "brainycp_remediator_actions_awaiting_approval": FILES[:1],
    "brainycp_remediator_oldest_approval_request_timestamp_seconds": FILES[:1],
}


@pytest.mark.parametrize("metric", sorted(OUTBREAK_METRICS))
def test_what_an_operator_needs_in_an_outbreak_is_on_the_dashboards(metric: str) -> None:
    shown = {name for name, _, expr in raw_queries() if re.search(rf"\b{metric}\b", expr)}
    assert set(OUTBREAK_METRICS[metric]) <= shown, f"{metric} is on {sorted(shown)} only"


# Every metric that counts or shows a failure, and where an operator sees it.
FAILURE_METRICS = (
    "brainycp_up",
    "brainycp_poll_success",
    "brainycp_poll_errors_total",
    "brainycp_mail_queue_unparsed_lines",
    "brainycp_mail_daemon_status_unknown",
    "brainycp_exporter_render_errors_total",
    "brainycp_config_last_reload_successful",
    "brainycp_remediator_journal_up",
    "brainycp_remediator_notifications_total",
    "brainycp_remediator_outbound_notifications_total",
    "brainycp_remediator_actions_total",
    "brainycp_remediator_circuit_open",
    "brainycp_remediator_paused",
)


@pytest.mark.parametrize("metric", FAILURE_METRICS)
def test_every_failure_metric_is_on_a_dashboard_or_in_an_alert(metric: str) -> None:
    rules = yaml.safe_load(RULES.read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    exprs += [expr for _, _, expr in raw_queries()]
    assert any(re.search(rf"\b{metric}\b", expr) for expr in exprs), metric


def test_rates_use_grafana_intervals_not_fixed_windows() -> None:
    for name, title, expr in raw_queries():
        for window in re.findall(r"\b(?:rate|increase|irate)\([^\[]*\[([^\]]+)\]", expr):
            assert window in ("$__rate_interval", "$__range", "$__interval"), (name, title)
        assert "$__rate_interval" not in expr or "rate(" in expr or "increase(" in expr


def test_queries_filter_on_the_job_and_panel_variables() -> None:
    for name, title, expr in raw_queries():
        for selector in re.findall(r"(brainycp_[a-z_]+|[a-z]+:brainycp_[a-z_:]+)\{([^}]*)\}", expr):
            assert "$job" in selector[1] or "$remediator_job" in selector[1], (name, title)


def test_queries_name_only_metrics_that_exist() -> None:
    rules = yaml.safe_load(RULES.read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    known = EXPORTER_METRICS | REMEDIATOR_METRICS | recorded
    used = set()
    for name, title, expr in raw_queries():
        for metric in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\{)", expr):
            assert metric in known, f"{name} / {title}: unknown metric {metric}"
            used.add(metric)
    # Each recording rule is shown somewhere, so the capacity rules are not dead weight.
    assert recorded - used <= {"job:brainycp_up:sum", "job:brainycp_up:count"} | {
        "job:brainycp_mail_queue_bounce_messages:sum"
    }


def test_no_variable_is_left_after_substitution() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 30
    for name, title, expr in queries:
        assert "$" not in expr, (name, title, expr)
        assert 'job=~"brainycp-mail-' in expr or "vector(" in expr or "time()" in expr, (
            name,
            title,
        )


# --------------------------------------------------------------------------- PromQL


def test_every_query_parses_in_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool", "apt-get install prometheus")
    queries = dashboard_queries()
    # Variable queries: the selector inside label_values(...) must parse too.
    for name in FILES:
        for var in load(name)["templating"]["list"]:
            if match := re.match(r"label_values\((.*),\s*\w+\)$", var.get("definition", "")):
                queries.append((name, f"variable {var['name']}", substitute(match.group(1))))
    rules = {
        "groups": [
            {
                "name": "dashboard-queries",
                "rules": [
                    {"record": f"dashboard:query_{i}:parse", "expr": expr}
                    for i, (_, _, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        # Name the dashboard and panel of the query promtool refused.
        refused = [
            f"{queries[int(i)][0]} / {queries[int(i)][1]}: {queries[int(i)][2]}"
            for i in re.findall(r"dashboard:query_(\d+):parse", result.stdout + result.stderr)
        ]
        pytest.fail(f"promtool refused:\n{result.stdout}{result.stderr}\n" + "\n".join(refused))
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout
