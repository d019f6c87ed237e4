"""The alert and recording rules: generated file up to date, promtool check and unit tests,
every alert documented and tested, and the demo variant fast enough for the full loop."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docs_support import github_anchors
from tests.support import PYTHON, REPO, require_binary

ALERTS = REPO / "alerts"
RULES = ALERTS / "brainycp-mail.rules.yml"
BUILD = ALERTS / "build.py"
RUNBOOKS = REPO / "docs" / "runbooks.md"
RUNBOOK_BASE = "https://github.com/brainycp-mail/brainycp-mail/blob/main/docs/runbooks.md"
UNIT_TESTS = sorted((ALERTS / "tests").glob("*.test.yml"))

# Alerts about a whole daemon rather than one panel.
FLEET_ALERTS = {
    "BrainyCPRemediationRateLimited",
    "BrainyCPRemediationCircuitOpen",
    "BrainyCPExporterDown",
    "BrainyCPRemediatorDown",
    "BrainyCPRemediatorJournalDown",
    "BrainyCPConfigReloadFailed",
    "BrainyCPHTTPAuthFailures",
    "BrainyCPRemediatorNotificationsFailing",
    "BrainyCPRemediatorPaused",
    "BrainyCPRemediationApprovalExpiring",
    "BrainyCPRemediatorOutboundNotificationsFailing",
}
# Alerts that the remediator's rules act on: their panel label is how it finds the panel.
REMEDIATED = {
    "BrainyCPMailFrozenMessages",
    "BrainyCPClamAVDown",
    "BrainyCPSpamAssassinDown",
    "BrainyCPMailBouncesPiling",
}
QUEUE_ALERTS = {
    "BrainyCPMailQueueHigh",
    "BrainyCPMailQueueGrowing",
    "BrainyCPMailFrozenMessages",
    "BrainyCPMailOldMessages",
    "BrainyCPMailBouncesPiling",
    "BrainyCPClamAVDown",
    "BrainyCPSpamAssassinDown",
    "BrainyCPMailDaemonStatusUnknown",
    "BrainyCPExporterPollStale",
    "BrainyCPMailSenderSurge",
    "BrainyCPMailBlocklisted",
    "BrainyCPMailQueueUnparsedLines",
}
# Every alert the rules file holds: the queue and fleet alerts and these.
EXPECTED_ALERTS = (
    QUEUE_ALERTS
    | FLEET_ALERTS
    | {
        "BrainyCPPanelDown",
        "BrainyCPRemediationFailing",
        "BrainyCPExporterRenderErrors",
    }
)
ALERTMANAGER = REPO / "deploy" / "alertmanager.yml"


def build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, str(BUILD), *args], capture_output=True, text=True, timeout=60, check=False
    )


def alert_rules(text: str) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(text)
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool", "apt-get install prometheus")
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d)", duration))


# --------------------------------------------------------------------------- the file


@pytest.mark.e2e
def test_committed_rules_file_is_what_build_py_renders() -> None:
    result = build("--check")
    assert result.returncode == 0, result.stderr


def test_the_rules_file_has_exactly_the_documented_alerts() -> None:
    assert set(alert_rules(RULES.read_text())) == EXPECTED_ALERTS


def test_every_alert_has_severity_summary_description_and_a_runbook_that_exists() -> None:
    anchors = github_anchors(RUNBOOKS.read_text())
    for name, rule in alert_rules(RULES.read_text()).items():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        notes = rule["annotations"]
        assert set(notes) == {"summary", "description", "runbook_url"}, name
        assert "{{ $value" in notes["description"], f"{name}: description lacks the value"
        if name not in FLEET_ALERTS:
            assert "{{ $labels.panel }}" in notes["description"], name
            assert "{{ $labels.panel }}" in notes["summary"], name
        base, _, anchor = notes["runbook_url"].partition("#")
        assert base == RUNBOOK_BASE, name
        assert anchor == name.lower(), name
        assert anchor in anchors, f"{name}: docs/runbooks.md has no heading for #{anchor}"


def test_queue_and_daemon_alerts_are_gated_on_the_panel_being_up() -> None:
    rules = alert_rules(RULES.read_text())
    for name in QUEUE_ALERTS:
        assert "and on(panel, job, instance) brainycp_up == 1" in rules[name]["expr"], name


def test_aggregating_alerts_keep_the_panel_label() -> None:
    for name, rule in alert_rules(RULES.read_text()).items():
        for by in re.findall(r"\b(?:sum|max|min|count|avg) by \(([^)]*)\)", rule["expr"]):
            labels = {label.strip() for label in by.split(",")}
            if name not in FLEET_ALERTS:
                assert "panel" in labels, f"{name} aggregates the panel label away"


# --------------------------------------------------------------------------- conventions


def grouping_labels() -> set[str]:
    """The labels every route of the shipped Alertmanager config groups by."""
    route = yaml.safe_load(ALERTMANAGER.read_text())["route"]
    groups: list[set[str]] = []

    def walk(node: dict[str, Any], inherited: set[str]) -> None:
        labels = set(node.get("group_by", inherited))
        groups.append(labels)
        for child in node.get("routes", []):
            walk(child, labels)

    walk(route, set())
    return set.intersection(*groups)


def runbook_sections() -> dict[str, str]:
    """The text of each ``## Name`` section of docs/runbooks.md, by lowercase name."""
    sections: dict[str, str] = {}
    for part in re.split(r"^## ", RUNBOOKS.read_text(), flags=re.M)[1:]:
        title, _, body = part.partition("\n")
        sections[title.strip().lower()] = body
    return sections


def test_summaries_are_sentences_that_end_with_a_period() -> None:
    for name, rule in alert_rules(RULES.read_text()).items():
        summary = rule["annotations"]["summary"]
        assert summary[:1].isupper() and summary.endswith("."), f"{name}: {summary!r}"
        assert "\n" not in summary, name


def test_summaries_interpolate_only_labels_alertmanager_groups_by() -> None:
    # Alertmanager sends one notification per group; a summary that differs between the
    # alerts of a group is not common to them and drops out of the notification.
    allowed = grouping_labels()
    assert allowed == {"alertname", "panel"}
    for name, rule in alert_rules(RULES.read_text()).items():
        summary = rule["annotations"]["summary"]
        used = set(re.findall(r"\$labels\.(\w+)", summary))
        assert used <= allowed, f"{name}: its summary interpolates {sorted(used - allowed)}"
        assert "$value" not in summary, f"{name}: its summary interpolates $value"


def test_an_alert_fires_without_delay_only_where_its_runbook_says_why() -> None:
    sections = runbook_sections()
    for name, rule in alert_rules(RULES.read_text()).items():
        if seconds(rule["for"]) == 0:
            assert "`for: 0s`" in sections[name.lower()], (
                f"{name} has for: 0s; its runbook section must say why"
            )


def test_recording_rule_names_follow_level_metric_operations() -> None:
    doc = yaml.safe_load(RULES.read_text())
    records = [r for g in doc["groups"] for r in g["rules"] if "record" in r]
    assert records
    for rule in records:
        name, expr = rule["record"], rule["expr"]
        level, metric, operations = name.split(":")
        assert re.fullmatch(r"brainycp_[a-z_]+", metric), name
        assert not metric.endswith("_total"), f"{name}: a counter's rate drops _total"
        if level == "job":
            assert "by (job)" in expr, f"{name}: a job: rule aggregates by job"
        else:
            assert level == "panel", name
        if re.search(r"\b(rate|irate|increase|deriv)\(", expr) and "/" not in expr:
            # A rate says its unit (per_second, per_hour).
            assert re.search(r"per_(second|minute|hour|day)", operations), name
        if "/" in expr and not re.search(r"/ \(?(rate|irate|deriv)\(", expr):
            # A division of like by like is a ratio, and says so.
            assert operations.endswith("ratio"), f"{name}: a ratio says ratio"


# --------------------------------------------------------------------------- promtool


@pytest.mark.e2e
def test_promtool_accepts_the_rules_and_the_demo_rules(tmp_path: Path) -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    demo = tmp_path / "demo.rules.yml"
    demo.write_text(build("--demo", "--stdout").stdout)
    result = promtool("check", "rules", str(demo))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.e2e
def test_promtool_unit_tests_pass() -> None:
    assert UNIT_TESTS, "alerts/tests/*.test.yml is empty"
    result = promtool("test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS)


def test_unit_tests_cover_every_alert_firing_and_staying_quiet() -> None:
    fires: dict[str, list[dict[str, str]]] = {}
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                if case["exp_alerts"]:
                    fires.setdefault(case["alertname"], []).extend(
                        a["exp_labels"] for a in case["exp_alerts"]
                    )
                else:
                    quiet.add(case["alertname"])
    assert set(fires) == EXPECTED_ALERTS, f"never tested firing: {EXPECTED_ALERTS - set(fires)}"
    assert quiet == EXPECTED_ALERTS, f"never tested quiet: {EXPECTED_ALERTS - quiet}"
    for name, label_sets in fires.items():
        for labels in label_sets:
            assert "severity" in labels
            if name not in FLEET_ALERTS:
                assert labels.get("panel"), f"{name} fired without a panel label"


def test_a_down_panel_fires_no_queue_alert_in_the_unit_tests() -> None:
    groups = yaml.safe_load((ALERTS / "tests" / "panel.test.yml").read_text())["tests"]
    down = next(g for g in groups if "only PanelDown" in g["name"])
    checked = {c["alertname"] for c in down["alert_rule_test"] if not c["exp_alerts"]}
    assert checked >= QUEUE_ALERTS


# --------------------------------------------------------------------------- build.py


@pytest.mark.e2e
def test_demo_rules_fire_frozen_and_clamav_within_seconds() -> None:
    demo = alert_rules(build("--demo", "--stdout").stdout)
    frozen = demo["BrainyCPMailFrozenMessages"]
    assert seconds(frozen["for"]) <= 20
    # Above 2: the demo's frozen pile-up is visible (three or more) before it is cleaned.
    assert "brainycp_mail_queue_frozen_messages > 2" in frozen["expr"]
    assert seconds(demo["BrainyCPClamAVDown"]["for"]) <= 10
    # The demo changes durations and thresholds only: same alerts, same labels.
    prod = alert_rules(RULES.read_text())
    assert set(demo) == set(prod)
    for name in prod:
        assert demo[name]["annotations"]["runbook_url"] == prod[name]["annotations"]["runbook_url"]


@pytest.mark.e2e
def test_demo_rules_fire_in_promtool_at_demo_speed(tmp_path: Path) -> None:
    (tmp_path / "demo.rules.yml").write_text(build("--demo", "--stdout").stdout)
    labels = 'job="brainycp-mail-exporter",instance="127.0.0.1:9863",panel="web02"'
    alerts = (
        'ALERTS{alertstate="firing",alertname=~"BrainyCPMailFrozenMessages|BrainyCPClamAVDown"}'
    )

    def firing(at: str, *samples: str) -> dict[str, Any]:
        return {
            "expr": alerts,
            "eval_time": at,
            "exp_samples": [{"labels": s, "value": 1} for s in samples],
        }

    frozen = (
        'ALERTS{alertname="BrainyCPMailFrozenMessages",alertstate="firing",'
        f'severity="warning",{labels}}}'
    )
    clamav = (
        'ALERTS{alertname="BrainyCPClamAVDown",alertstate="firing",'
        f'severity="critical",daemon="clamav",{labels}}}'
    )
    series = {
        f"brainycp_up{{{labels}}}": "1x30",
        f"brainycp_mail_queue_frozen_messages{{{labels}}}": "3x30",
        f'brainycp_mail_daemon_up{{{labels},daemon="clamav"}}': "0x30",
    }
    unit = {
        "rule_files": ["demo.rules.yml"],
        "evaluation_interval": "2s",
        "tests": [
            {
                "interval": "2s",
                "input_series": [{"series": k, "values": v} for k, v in series.items()],
                # The condition holds from 0s: firing once `for` has passed (10s, 15s).
                "promql_expr_test": [
                    firing("8s"),
                    firing("12s", clamav),
                    firing("20s", frozen, clamav),
                ],
            }
        ],
    }
    (tmp_path / "demo.test.yml").write_text(yaml.safe_dump(unit))
    result = promtool("test", "rules", "demo.test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.e2e
def test_an_overrides_file_changes_a_threshold_and_for(tmp_path: Path) -> None:
    site = tmp_path / "site.yml"
    site.write_text("alerts:\n  BrainyCPMailQueueHigh: {above: 20000, for: 1h}\n")
    rules = alert_rules(build("--overrides", str(site), "--stdout").stdout)
    assert "brainycp_mail_queue_messages > 20000" in rules["BrainyCPMailQueueHigh"]["expr"]
    assert rules["BrainyCPMailQueueHigh"]["for"] == "1h"
    # QueueGrowing forecasts against the same threshold.
    assert "> 20000" in rules["BrainyCPMailQueueGrowing"]["expr"]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("alerts:\n  BrainyCPMailQueueHigh: {above: lots}\n", "BrainyCPMailQueueHigh.above"),
        ("alerts:\n  BrainyCPPanelDown: {for: 5 minutes}\n", "alerts.BrainyCPPanelDown.for"),
        ("alerts:\n  BrainyCPPanelDown: {severity: page}\n", "BrainyCPPanelDown.severity"),
        ("alerts:\n  BrainyCPMailOldMessages: {older_than: 2d}\n", "bucket bound"),
        ("alerts:\n  BrainyCPNoSuchAlert: {for: 1m}\n", "unknown alerts: BrainyCPNoSuchAlert"),
    ],
)
def test_bad_thresholds_are_refused_naming_the_key(
    tmp_path: Path, override: str, message: str
) -> None:
    site = tmp_path / "site.yml"
    site.write_text(override)
    result = build("--overrides", str(site), "--stdout")
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


@pytest.mark.e2e
def test_check_reports_a_stale_rules_file(tmp_path: Path) -> None:
    stale = tmp_path / "rules.yml"
    stale.write_text(RULES.read_text().replace("> 5000", "> 4000"))
    result = build("--check", "--out", str(stale))
    assert result.returncode == 1
    assert "out of date" in result.stderr


@pytest.mark.e2e
def test_build_runs_with_the_interpreter_alone() -> None:
    # tests/demo.py calls it as `python alerts/build.py --demo --stdout`.
    result = subprocess.run(
        [sys.executable, str(BUILD), "--demo", "--stdout"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        check=True,
    )
    assert result.stdout.startswith("# GENERATED")
