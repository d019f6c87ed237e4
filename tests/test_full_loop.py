"""The whole loop on real processes: simulator -> exporter -> Prometheus -> Alertmanager
-> remediator -> simulator, exactly as ``make demo`` runs it.

Each step is awaited with a deadline (no fixed sleeps) and its time recorded,
then the test asserts the steps happened in order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard_support import dashboard_queries
from tests.demo import (
    COMPROMISED_SENDER,
    FAST_TIMING,
    SPAM_FLOOD_RATE,
    SPAM_PANEL,
    Ports,
    SpamScene,
    Stack,
)
from tests.support import require_binary, wait_until

pytestmark = pytest.mark.e2e

LOOP_DEADLINE = 150.0  # seconds for each whole chain below


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_binary("prometheus", "apt-get install prometheus")
    require_binary("prometheus-alertmanager", "apt-get install prometheus-alertmanager")
    workdir = tmp_path_factory.mktemp("full-loop")
    stack = Stack(workdir, ports=Ports.any_free(), timing=FAST_TIMING)
    try:
        stack.start()
        yield stack
    except RuntimeError as exc:
        pytest.fail(f"the demo stack did not start: {exc}")
    finally:
        stack.stop()
        for name, proc in stack.processes.items():
            assert proc.poll() is not None, f"{name} is still running after stop()"


def query(stack: Stack, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.url('prometheus')}/api/v1/query", params={"query": promql})
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def alert_state(stack: Stack, alertname: str, panel: str) -> str | None:
    for alert in stack.get_json(f"{stack.url('prometheus')}/api/v1/alerts")["data"]["alerts"]:
        labels = alert["labels"]
        if labels.get("alertname") == alertname and labels.get("panel") == panel:
            return str(alert["state"])
    return None


def in_alertmanager(stack: Stack, alertname: str, panel: str) -> bool:
    alerts = stack.get_json(
        f"{stack.url('alertmanager')}/api/v2/alerts",
    )
    return any(
        a["labels"].get("alertname") == alertname and a["labels"].get("panel") == panel
        for a in alerts
    )


def action_with(stack: Stack, rule: str, panel: str, outcome: str) -> dict[str, Any] | None:
    for action in stack.get_json(f"{stack.url('remediator')}/actions?panel={panel}&rule={rule}")[
        "actions"
    ]:
        if action["outcome"] == outcome:
            return dict(action)
    return None


class Steps:
    """Waits for each step in turn and records when it was seen."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.seen: list[tuple[str, float]] = []

    def wait(self, what: str, predicate: Any) -> Any:
        remaining = LOOP_DEADLINE - (time.monotonic() - self.start)
        assert remaining > 0, f"no time left for: {what}; steps so far: {self.seen}"
        result = wait_until(predicate, timeout=remaining, interval=0.25, what=what)
        self.seen.append((what, time.monotonic() - self.start))
        return result


def test_frozen_messages_are_cleaned_and_the_alert_resolves(stack: Stack) -> None:
    steps = Steps()
    steps.wait("web02 has frozen messages", lambda: stack.sim_state("web02")["queue"]["frozen"] > 0)
    # The scenario freezes a bounce every 15 s; two more frozen bounces now take the pile
    # over the demo's threshold (2) without waiting 30 s for the scenario to get there.
    response = httpx.post(
        f"{stack.panel_url('web02')}/_sim/queue",
        json={"add": 2, "frozen": True, "bounce": True, "sender": "<>"},
        timeout=5,
    )
    response.raise_for_status()
    steps.wait(
        "Prometheus sees them",
        lambda: any(
            float(s["value"][1]) > 0
            for s in query(stack, 'brainycp_mail_queue_frozen_messages{panel="web02"}')
        ),
    )
    steps.wait(
        "BrainyCPMailFrozenMessages fires",
        lambda: alert_state(stack, "BrainyCPMailFrozenMessages", "web02") == "firing",
    )
    steps.wait(
        "Alertmanager has it",
        lambda: in_alertmanager(stack, "BrainyCPMailFrozenMessages", "web02"),
    )
    action = steps.wait(
        "the remediator ran clean-frozen",
        lambda: action_with(stack, "clean-frozen", "web02", "succeeded"),
    )
    assert action["action"] == "delete_frozen"
    assert action["alert"]["alertname"] == "BrainyCPMailFrozenMessages"
    calls = [c["operation"] for c in stack.sim_state("web02")["calls"]]
    assert "delete_frozen_msg" in calls
    steps.wait(
        "the alert resolves",
        lambda: alert_state(stack, "BrainyCPMailFrozenMessages", "web02") is None,
    )
    order = [name for name, _ in steps.seen]
    assert order == sorted(order, key=[n for n, _ in steps.seen].index)
    times = [t for _, t in steps.seen]
    assert times == sorted(times), steps.seen


def test_stopped_clamav_is_restarted(stack: Stack) -> None:
    steps = Steps()
    # web03's ClamAV stops ~20 s after the start; while the frozen test above waits for its
    # pile-up, the whole chain may already have run, so a finished restart counts as fired.
    steps.wait(
        "BrainyCPClamAVDown fires for web03",
        lambda: (
            alert_state(stack, "BrainyCPClamAVDown", "web03") == "firing"
            or action_with(stack, "restart-clamav", "web03", "succeeded")
        ),
    )
    action = steps.wait(
        "the remediator restarted clamav",
        lambda: action_with(stack, "restart-clamav", "web03", "succeeded"),
    )
    assert action["alert"]["alertname"] == "BrainyCPClamAVDown"
    calls = [
        (c["operation"], c["params"].get("command"))
        for c in stack.sim_state("web03")["calls"]
        if c["operation"] == "clamav" and c["params"].get("command") in ("on", "off")
    ]
    assert calls[:2] == [("clamav", "off"), ("clamav", "on")]
    steps.wait("clamav runs", lambda: stack.sim_state("web03")["daemons"]["clamav"] == "running")
    steps.wait(
        "the alert resolves",
        lambda: alert_state(stack, "BrainyCPClamAVDown", "web03") is None,
    )


def test_a_spam_sender_surge_is_contained_once_a_person_approves(stack: Stack) -> None:
    """The spam pack end to end: a compromised mailbox floods web01 -> the exporter's top
    senders -> BrainyCPMailSenderSurge with the sender label -> Alertmanager -> the
    contain-spam-sender rule asks for approval -> approved through the API -> exactly
    that sender's messages deleted, each one recorded at /actions/ID."""
    steps = Steps()
    # The test approves by itself, below. The flood outpaces the panel's own mail faster
    # than the demo's, so the sender holds most of the queue within seconds.
    scene = SpamScene(stack, approve_after=0, flood_rate=4 * SPAM_FLOOD_RATE)
    scene.start()

    def firing() -> bool:
        scene.step()  # keeps the flood going
        return alert_state(stack, "BrainyCPMailSenderSurge", SPAM_PANEL) == "firing"

    steps.wait("BrainyCPMailSenderSurge fires", firing)
    request = steps.wait(
        "the remediator asks for approval",
        lambda: (scene.step(), action_with(stack, "contain-spam-sender", SPAM_PANEL,
                                           "awaiting_approval"))[1],
    )  # fmt: skip
    detail = stack.action(request["id"])
    assert detail["params"]["select"]["sender"] == COMPROMISED_SENDER
    assert detail["alert"]["alertname"] == "BrainyCPMailSenderSurge"
    assert detail["started_at"] is None  # nothing touched before the approval
    answer = stack.remediator_post(f"/actions/{request['id']}/approve", {"by": "full loop"})
    assert answer.status_code == 200, answer.text
    scene.flood_started = None  # the mailbox's password is reset: the flood stops
    done = steps.wait(
        "the sender's messages are deleted",
        lambda: (
            (d := stack.action(request["id"]))["outcome"]
            not in ("pending", "running", "awaiting_approval")
            and d
        ),
    )
    assert done["outcome"] == "succeeded", done
    assert done["decision"]["by"] == "full loop"
    assert done["messages_total"] > 0
    assert {m["sender"] for m in done["messages"]} == {COMPROMISED_SENDER}


def test_remediator_and_exporter_metrics_are_scraped(stack: Stack) -> None:
    wait_until(
        lambda: query(stack, 'brainycp_remediator_actions_total{outcome="succeeded"}'),
        timeout=60,
        what="remediator action counters in Prometheus",
    )
    up = query(stack, "brainycp_up")
    assert {s["metric"]["panel"] for s in up} == {"web01", "web02", "web03", "web04"}
    assert all(s["value"][1] == "1" for s in up)


# Dashboard queries that may rightly be empty while the demo runs, and why.
MAY_BE_EMPTY = {
    "brainycp_poll_errors_total": "no poll fails in the demo",
    "seconds_to_high": "only while a queue grows below the threshold; web01 is already above it",
    "unless brainycp_remediator_actions_total": "annotation: only within 30s of an action",
    "oldest_approval_request": "only while an approval request waits",
    "deferral_reason_messages": "Postfix panels only; the queries' panel, web01, is Exim",
    'unparsed_lines{job=~"brainycp-mail-exporter", panel=~"web01"} > 0': (
        "only panels with unparsed lines; the demo has none"
    ),
    "outbound_notifications_total": "the demo has no notify target",
    "action_duration_seconds_count": "p90: only while an action ran in the last minute",
}


def test_every_dashboard_query_runs_against_real_prometheus(stack: Stack) -> None:
    queries = dashboard_queries()
    assert len(queries) > 20

    def empty_ones() -> list[str]:
        missing = []
        for name, title, expr in queries:
            response = httpx.get(
                f"{stack.url('prometheus')}/api/v1/query", params={"query": expr}, timeout=5
            )
            body = response.json()
            # A query that does not parse is a 400 with errorType bad_data: fail at once.
            assert response.status_code == 200 and body["status"] == "success", (
                name,
                title,
                expr,
                body,
            )
            if not body["data"]["result"] and not any(m in expr for m in MAY_BE_EMPTY):
                missing.append(f"{name}: {title}: {expr}")
        return missing

    last: list[str] = []

    def all_have_data() -> bool:
        nonlocal last
        last = empty_ones()
        return not last

    try:
        wait_until(all_have_data, timeout=90, interval=2, what="data for every dashboard query")
    except AssertionError:
        pytest.fail("dashboard queries without data:\n" + "\n".join(last))


def test_stack_leaves_nothing_running(tmp_path: Path) -> None:
    require_binary("prometheus", "apt-get install prometheus")
    require_binary("prometheus-alertmanager", "apt-get install prometheus-alertmanager")
    stack = Stack(tmp_path, ports=Ports.any_free())
    stack.start()
    pids = [p.pid for p in stack.processes.values()]
    stack.stop()
    assert all(p.poll() is not None for p in stack.processes.values())
    assert len(pids) == 5
