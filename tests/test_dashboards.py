"""The Grafana dashboards: structure, variables, units and descriptions, and every query
parses as PromQL (checked by promtool) and names only metrics that exist; then, on a live
Prometheus scraping the real daemons, every query runs and one failed poll and one action
show as 1.

``dashboard_queries()`` is reused by tests that run the queries against a real Prometheus.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
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
from tests.harness import prometheus_args, serving, serving_on_free_port
from tests.remediator_support import am_alert, notification, remediator_cmd
from tests.support import PYTHON, REPO, exporter_cmd, require_binary, sim_args, wait_until

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
    "brainycp_remediator_journal_failures_total",
    "brainycp_http_cross_origin_refused_total",
}


# --------------------------------------------------------------------------- structure


@pytest.mark.e2e
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
    "brainycp_remediator_journal_failures_total",
    "brainycp_exporter_http_auth_failures_total",
    "brainycp_remediator_http_auth_failures_total",
    "brainycp_http_cross_origin_refused_total",
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


@pytest.mark.e2e
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


# --------------------------------------------------------------------------- live Prometheus

PANEL_PASSWORD = "dash-panel-pw"
WEBHOOK_TOKEN = "dash-webhook-token-5d1e"


@dataclass
class Live:
    """Simulator, exporter, remediator and a Prometheus that scrapes both every second and
    loads the shipped rules, with the jobs named as the dashboards' tests expect."""

    sim: str
    exporter: str
    remediator: str
    prometheus: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=5)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str, **labels: str) -> float | None:
        for series in self.query(expr):
            if all(series["metric"].get(k) == v for k, v in labels.items()):
                return float(series["value"][1])
        return None

    def webhook_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    prometheus = require_binary("prometheus", "apt-get install prometheus")
    tmp = tmp_path_factory.mktemp("dashboards-live")
    (tmp / "panel.pw").write_text(PANEL_PASSWORD + "\n")
    (tmp / "webhook.token").write_text(WEBHOOK_TOKEN + "\n")
    sim_cmd = sim_args(0, "--users", f"admin:{PANEL_PASSWORD}:root", "--seed", "7")
    sim_cmd += ["--panel", "web01:quiet:exim", "--panel", "mx01:quiet:postfix"]
    with ExitStack() as stack:
        sim = stack.enter_context(serving(sim_cmd, log=tmp / "sim.log", cwd=REPO)).url
        for panel in ("web01", "mx01"):
            httpx.post(f"{sim}/panel/{panel}/_sim/pause", json={"paused": True}).raise_for_status()
        queue = {"add": 3, "frozen": True, "age": 7200}
        httpx.post(f"{sim}/panel/web01/_sim/queue", json=queue).raise_for_status()
        config = tmp / "config.yml"
        config.write_text(yaml.safe_dump(live_config(tmp, sim)))
        exporter = stack.enter_context(
            serving(exporter_cmd(config), log=tmp / "exporter.log", cwd=REPO)
        )
        remediator = stack.enter_context(
            serving(remediator_cmd(config), log=tmp / "remediator.log", cwd=REPO)
        )
        jobs = {
            "brainycp-mail-exporter": exporter.port,
            "brainycp-mail-remediator": remediator.port,
        }
        (tmp / "prometheus.yml").write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                        for job, port in jobs.items()
                    ],
                }
            )
        )

        prometheus_cmd = prometheus_args(prometheus, tmp / "prometheus.yml", tmp / "tsdb")
        prometheus_url = stack.enter_context(
            serving_on_free_port(
                prometheus_cmd, log=tmp / "prometheus.log", ready_path="/-/ready", cwd=REPO
            )
        ).url
        yield Live(sim, exporter.url, remediator.url, prometheus_url)


def live_config(tmp: Path, sim: str) -> dict[str, Any]:
    """Two panels of the simulator at ``sim``; the remediator with one rule."""
    return {
        "defaults": {"username": "admin", "password_file": str(tmp / "panel.pw"), "timeout": "2s"},
        "panels": {
            "web01": {"url": f"{sim}/panel/web01/api/api.php", "daemons": ["clamav"]},
            "mx01": {"url": f"{sim}/panel/mx01/api/api.php", "daemons": []},
        },
        "exporter": {
            "interval": "1s",
            "list_interval": "1s",
            "top_senders": 5,
            "top_recipient_domains": 5,
        },
        "remediator": {
            "auth": {"bearer_token_file": str(tmp / "webhook.token")},
            "state_file": str(tmp / "journal.sqlite"),
            "shutdown_grace": "1s",
            "rules": [
                {
                    "name": "clean-frozen",
                    "matchers": ['alertname="BrainyCPMailFrozenMessages"'],
                    "action": "delete_frozen",
                },
            ],
        },
    }


def dashboard_query(dashboard: str, title: str) -> str:
    """The one query of the panel ``title`` on ``dashboard``, variables filled in."""
    (expr,) = [e for name, t, e in dashboard_queries() if name == dashboard and t == title]
    return expr


@pytest.mark.e2e
def test_one_failed_poll_and_one_action_show_as_one_on_the_dashboards(live: Live) -> None:
    error = 'brainycp_poll_errors_total{panel="web01",operation="count_msg",reason="http_status"}'
    succeeded = (
        'brainycp_remediator_actions_total{panel="web01",action="delete_frozen",'
        'outcome="succeeded"}'
    )
    # Both counters are in Prometheus at 0, for ten scrapes, before anything happens.
    for series in (error, succeeded):
        wait_until(
            lambda s=series: live.value(f"count_over_time({s}[1m]) >= 10 and {s} == 0"),
            timeout=60,
            what=f"ten scrapes of {series} at 0",
        )
    # One count_msg poll of web01 fails (HTTP 503) ...
    fault = {"status": 503, "operations": ["count_msg"], "times": 1}
    httpx.post(f"{live.sim}/panel/web01/_sim/fault", json=fault).raise_for_status()
    # ... and the remediator cleans web01's frozen messages once.
    alert = am_alert("BrainyCPMailFrozenMessages", "web01", starts_at="2026-12-01T08:00:00Z")
    answer = httpx.post(
        f"{live.remediator}/webhook", json=notification(alert), headers=live.webhook_headers()
    )
    assert answer.status_code == 200, answer.text
    for series in (error, succeeded):
        wait_until(lambda s=series: live.value(s) == 1, timeout=30, what=f"{series} at 1")

    def shows_one(dashboard: str, title: str, **labels: str) -> None:
        got = live.value(dashboard_query(dashboard, title), **labels)
        # increase() extrapolates a little past the last sample: 1.0 to 1.1, never 0 or 0.5.
        assert got is not None and 1 <= got < 1.5, f"{dashboard} / {title}: {got}"

    fleet, detail = FILES[0], FILES[1]
    where = {"panel": "web01", "operation": "count_msg", "reason": "http_status"}
    shows_one(fleet, "Poll errors by reason", **where)
    shows_one(detail, "Poll errors", **where)
    action = {"panel": "web01", "action": "delete_frozen", "outcome": "succeeded"}
    shows_one(fleet, "Remediation actions in range", **action)
    shows_one(fleet, "Remediation actions by outcome", outcome="succeeded")
    shows_one(detail, "Remediation actions", **action)
    p90 = live.value(dashboard_query(fleet, "Action duration (p90)"), action="delete_frozen")
    assert p90 is not None and 0 < p90 <= 0.5, f"Action duration (p90): {p90}"


@pytest.mark.e2e
def test_every_dashboard_query_and_rule_runs_on_a_live_prometheus(live: Live) -> None:
    wait_until(
        lambda: (
            live.value('up{job="brainycp-mail-remediator"}')
            and live.value('brainycp_mail_queue_recipient_domain_messages{panel="web01"}')
        ),
        timeout=60,
        what="both daemons scraped",
    )
    for _, _, expr in dashboard_queries():
        live.query(expr)  # a query Prometheus refuses is a 400 with errorType bad_data
    rules = httpx.get(f"{live.prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = {g["name"]: g for g in rules}
    assert set(loaded) == {"brainycp-mail-capacity", "brainycp-mail-alerts"}

    def evaluated() -> list[str]:
        groups = httpx.get(f"{live.prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
        return [r["name"] for g in groups for r in g["rules"] if r["health"] != "ok"]

    wait_until(lambda: not evaluated(), timeout=30, what="every rule evaluated without error")


@pytest.mark.e2e
def test_prometheus_reads_the_exporter_s_openmetrics(live: Live) -> None:
    wait_until(
        lambda: live.value('brainycp_mail_queue_message_age_seconds_gcount{panel="web01"}'),
        timeout=60,
        what="the gauge histogram in Prometheus",
    )
    targets = httpx.get(f"{live.prometheus}/api/v1/targets", timeout=5).json()["data"]
    exporter = next(
        t for t in targets["activeTargets"] if t["labels"]["job"] == "brainycp-mail-exporter"
    )
    assert exporter["health"] == "up" and exporter["lastError"] == ""
    # Buckets, _gcount and _gsum of one gauge histogram, all from the one family.
    assert live.value('brainycp_mail_queue_message_age_seconds_bucket{panel="web01",le="+Inf"}')
    assert live.value('brainycp_mail_queue_message_age_seconds_gsum{panel="web01"}') is not None

    def scraped_type(family: str) -> str:
        params = {"match_target": '{job="brainycp-mail-exporter"}', "metric": family}
        answer = httpx.get(f"{live.prometheus}/api/v1/targets/metadata", params=params, timeout=5)
        (meta,) = answer.json()["data"]
        return str(meta["type"])

    # What Prometheus parsed: only OpenMetrics can say gaugehistogram (the text format
    # says histogram).
    assert scraped_type("brainycp_mail_queue_message_age_seconds") == "gaugehistogram"
    assert scraped_type("brainycp_polls") == "counter"
    # The answer to Prometheus's own Accept header is OpenMetrics.
    accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
        "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    answer = httpx.get(f"{live.exporter}/metrics", headers={"Accept": accept}, timeout=5)
    assert answer.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert "# TYPE brainycp_mail_queue_message_age_seconds gaugehistogram" in answer.text
