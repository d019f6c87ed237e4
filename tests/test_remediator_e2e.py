"""The real remediator process against real simulator processes, driven by v4 payloads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.harness import serving
from tests.remediator_support import (
    PANELS,
    RULES,
    TOKEN,
    Env,
    am_alert,
    notification,
    only_result,
    remediator_cmd,
    slow_delete_scene,
    start_sim,
    write_config,
)
from tests.support import PYTHON, free_port, running, wait_until

# Every test here starts a process (the in-process tier, make test-fast, skips them).
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("remediator")
    with serving(start_sim(tmp, 0), log=tmp / "sim.log") as simulator:
        sim = simulator.url
        config = write_config(tmp / "config.yml", simulator.port, None, tmp / "state.sqlite", RULES)
        for name in PANELS:
            httpx.post(f"{sim}/panel/{name}/_sim/pause", json={"paused": True}).raise_for_status()
        with serving(remediator_cmd(config), log=tmp / "remediator.log") as served:
            client = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
            yield Env(sim, served.url, client, tmp)
            client.close()
    log_text = (tmp / "remediator.log").read_text()
    assert TOKEN not in log_text and "admin\n" not in log_text


STATE_CHANGING = {"delete_frozen_msg", "delete_all_msg", "controll_msg"}


# ---------------------------------------------------------------------------- auth and input


def test_auth_missing_wrong_and_right(env: Env) -> None:
    body = notification(am_alert("BrainyCPMailFrozenMessages", "frozen", starts_at="auth"))
    before = len(env.client.get(f"{env.url}/actions").json()["actions"])
    missing = httpx.post(f"{env.url}/webhook", json=body)
    wrong = httpx.post(f"{env.url}/webhook", json=body, headers={"Authorization": "Bearer nope"})
    basic = httpx.post(f"{env.url}/webhook", json=body, auth=("am", TOKEN))
    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert "error" in response.json()
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert len(env.client.get(f"{env.url}/actions").json()["actions"]) == before
    metrics = env.client.get(f"{env.url}/metrics").text
    assert 'brainycp_remediator_notifications_total{result="unauthorized"} 3.0' in metrics
    assert TOKEN not in metrics


def test_bad_input_gets_4xx_json_and_records_nothing(env: Env) -> None:
    before = len(env.client.get(f"{env.url}/actions").json()["actions"])
    hook = f"{env.url}/webhook"
    good = json.dumps(notification(am_alert("BrainyCPMailFrozenMessages", "frozen", starts_at="b")))
    as_json = {"Content-Type": "application/json"}
    cases = [
        (env.client.post(hook, content=good, headers={"Content-Type": "text/plain"}), 415),
        (env.client.post(hook, content=b"{not json", headers=as_json), 400),
        (env.client.post(hook, content=b"[" + b" " * (1024 * 1024) + b"]", headers=as_json), 413),
        (env.post({**json.loads(good), "version": "3"}), 422),
        (env.post({"version": "4", "status": "firing"}), 422),
        (env.post({**json.loads(good), "alerts": [{"labels": "x"}]}), 422),
    ]  # fmt: skip
    for response, status in cases:
        assert response.status_code == status, response.text
        assert isinstance(response.json()["error"], str)
    assert len(env.client.get(f"{env.url}/actions").json()["actions"]) == before


def test_oversized_body_without_content_length_is_refused(env: Env) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"version": "4", "pad": "'
        for _ in range(80):
            yield b"x" * 16384
        yield b'"}'

    response = env.client.post(
        f"{env.url}/webhook", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


# ---------------------------------------------------------------------------- actions


def test_delete_frozen_clears_frozen_messages(env: Env) -> None:
    env.sim_post("frozen", "queue", {"add": 3, "frozen": True, "age": 7200})
    assert env.state("frozen")["queue"]["frozen"] >= 3
    result = only_result(env.post(notification(am_alert("BrainyCPMailFrozenMessages", "frozen"))))
    assert result["outcome"] == "pending" and result["rule"] == "clean-frozen"
    assert env.wait_final(result["action_id"])["outcome"] == "succeeded"
    assert env.state("frozen")["queue"]["frozen"] == 0


def test_three_identical_notifications_make_one_panel_call(env: Env) -> None:
    env.sim_post("dup", "queue", {"add": 2, "frozen": True})
    env.clear_calls("dup")
    body = notification(
        am_alert("BrainyCPMailFrozenMessages", "dup", starts_at="2026-11-25T01:00:00Z")
    )
    outcomes = [only_result(env.post(body)) for _ in range(3)]
    assert [r["outcome"] for r in outcomes] == ["pending", "skipped_duplicate", "skipped_duplicate"]
    env.wait_final(outcomes[0]["action_id"])
    assert [c for c in env.calls("dup") if c[0] == "delete_frozen_msg"] == [
        ("delete_frozen_msg", "")
    ]


def test_new_episode_after_cooldown_makes_a_second_call(env: Env) -> None:
    env.sim_post("cool", "queue", {"add": 1, "frozen": True})
    first = only_result(
        env.post(notification(am_alert("BrainyCPMailFrozenMessages", "cool", starts_at="e1")))
    )
    env.wait_final(first["action_id"])
    env.sim_post("cool", "queue", {"add": 1, "frozen": True})
    second_body = notification(am_alert("BrainyCPMailFrozenMessages", "cool", starts_at="e2"))
    assert only_result(env.post(second_body))["outcome"] == "skipped_cooldown"
    # The 2s cooldown passes; the same new episode is then accepted (condition wait, not a sleep).
    second = wait_until(
        lambda: (r := only_result(env.post(second_body)))["outcome"] == "pending" and r,
        timeout=10, interval=0.25, what="the cooldown to pass",
    )  # fmt: skip
    env.wait_final(second["action_id"])
    assert sum(1 for c in env.calls("cool") if c[0] == "delete_frozen_msg") == 2


def test_dry_run_makes_no_state_changing_call(env: Env) -> None:
    env.sim_post("dry", "queue", {"add": 2, "frozen": True})
    env.clear_calls("dry")
    result = only_result(env.post(notification(am_alert("FrozenPreview", "dry"))))
    assert result["outcome"] == "dry_run"
    assert env.action(result["action_id"])["outcome"] == "dry_run"
    assert not any(op in STATE_CHANGING for op, _ in env.calls("dry"))
    assert env.state("dry")["queue"]["frozen"] >= 2


def test_restart_service_runs_off_on_status_in_order(env: Env) -> None:
    env.sim_post("svc", "daemon", {"clamav": "stopped"})
    env.clear_calls("svc")
    result = only_result(env.post(notification(am_alert("BrainyCPClamAVDown", "svc"))))
    assert env.wait_final(result["action_id"])["outcome"] == "succeeded"
    assert env.calls("svc") == [
        ("clamav", "status"),
        ("clamav", "off"),
        ("clamav", "on"),
        ("clamav", "status"),
    ]
    assert env.state("svc")["daemons"]["clamav"] == "running"
    # Already running: a new episode reads the status and does nothing else.
    env.clear_calls("svc")
    again = only_result(
        env.post(notification(am_alert("BrainyCPClamAVDown", "svc", starts_at="2")))
    )
    assert env.wait_final(again["action_id"])["outcome"] == "skipped_nothing_to_do"
    assert env.calls("svc") == [("clamav", "status")]


def test_stop_service(env: Env) -> None:
    result = only_result(env.post(notification(am_alert("SpamdOff", "spam"))))
    assert env.wait_final(result["action_id"])["outcome"] == "succeeded"
    assert env.state("spam")["daemons"]["spamassassin"] == "stopped"


def test_delete_messages_removes_only_the_selected_ones(env: Env) -> None:
    env.sim_post("bounce", "queue", {"add": 3, "bounce": True, "age": 7200})
    env.sim_post("bounce", "queue", {"add": 2, "bounce": True, "age": 60})
    env.sim_post("bounce", "queue", {"add": 2, "age": 7200, "sender": "carol@example.com"})
    before = env.listing("bounce")
    chosen = {m.id for m in before if m.sender == "<>" and m.age_seconds > 3600}
    assert len(chosen) >= 3
    result = only_result(env.post(notification(am_alert("BrainyCPMailBouncesPiling", "bounce"))))
    assert env.wait_final(result["action_id"])["outcome"] == "succeeded"
    after = {m.id for m in env.listing("bounce")}
    assert after == {m.id for m in before} - chosen
    deletes = [c for c in env.calls("bounce") if c[0] == "controll_msg"]
    assert len(deletes) == len(chosen) and {c[1] for c in deletes} == {"delete"}


def test_reship_messages_sends_reship_per_message(env: Env) -> None:
    env.sim_post("reship", "queue", {"add": 2, "sender": "x@example.org", "age": 600})
    result = only_result(env.post(notification(am_alert("Reship", "reship"))))
    env.wait_final(result["action_id"])
    reships = [c for c in env.calls("reship") if c[0] == "controll_msg"]
    assert len(reships) >= 2 and {c[1] for c in reships} == {"reship"}


def test_delete_all_empties_the_queue(env: Env) -> None:
    env.sim_post("nuke", "queue", {"add": 5})
    result = only_result(env.post(notification(am_alert("NukeQueue", "nuke"))))
    assert env.wait_final(result["action_id"])["outcome"] == "succeeded"
    assert env.state("nuke")["queue"]["messages"] == 0


def test_resolved_notification_cancels_a_pending_action(env: Env) -> None:
    env.sim_post("cancel", "queue", {"add": 2, "frozen": True})
    env.sim_post("cancel", "daemon", {"clamav": "stopped"})
    # A slow restart holds the panel, so the frozen clean-up queues behind it.
    env.sim_post("cancel", "fault", {"latency": 1.5, "operations": ["clamav"], "times": 1})
    busy = only_result(env.post(notification(am_alert("BrainyCPClamAVDown", "cancel"))))
    firing = am_alert("BrainyCPMailFrozenMessages", "cancel", starts_at="2026-11-25T07:00:00Z")
    queued = only_result(env.post(notification(firing)))
    assert queued["outcome"] == "pending"
    resolved = only_result(env.post(notification({**firing, "status": "resolved"})))
    assert resolved["outcome"] == "cancelled" and resolved["action_id"] == queued["action_id"]
    env.wait_final(busy["action_id"])
    assert env.action(queued["action_id"])["outcome"] == "cancelled"
    assert not any(op in ("list_msg", "delete_frozen_msg") for op, _ in env.calls("cancel"))
    assert env.state("cancel")["queue"]["frozen"] >= 2


def test_unknown_or_missing_panel_is_rejected_without_any_panel_call(env: Env) -> None:
    for name in PANELS:
        env.clear_calls(name)
    body = notification(
        am_alert("BrainyCPMailFrozenMessages", "nosuchpanel", fingerprint=False),
        am_alert("BrainyCPMailFrozenMessages", None),
        am_alert("NoRuleForThis", "frozen"),
    )
    response = env.post(body)
    assert response.status_code == 200
    unknown, missing, ignored = response.json()["results"]
    assert unknown["outcome"] == "rejected" and "not configured" in unknown["reason"]
    assert len(unknown["fingerprint"]) == 16
    assert missing["outcome"] == "rejected" and "no 'panel' label" in missing["reason"]
    assert ignored["outcome"] == "ignored" and ignored["action_id"] is None
    assert env.action(unknown["action_id"])["outcome"] == "rejected"
    assert all(env.calls(name) == [] for name in PANELS)


def test_truncated_alerts_are_counted_and_metrics_have_the_documented_names(env: Env) -> None:
    env.post(notification(am_alert("NoRuleForThis", "frozen"), truncated=4))
    text = env.client.get(f"{env.url}/metrics").text
    assert "brainycp_remediator_truncated_alerts_total 4.0" in text
    for name in (
        'brainycp_remediator_notifications_total{result="accepted"}',
        'brainycp_remediator_actions_total{action="delete_frozen",outcome="succeeded",panel="frozen"}',
        'brainycp_remediator_action_duration_seconds_bucket{action="delete_frozen",le="+Inf"}',
        "brainycp_remediator_actions_in_progress 0.0",
        'brainycp_remediator_build_info{version="',
    ):
        assert name in text


def test_actions_endpoint_filters_and_status_page(env: Env) -> None:
    rows = env.client.get(f"{env.url}/actions", params={"panel": "svc", "limit": 1}).json()[
        "actions"
    ]
    assert len(rows) == 1 and rows[0]["panel"] == "svc"
    assert set(rows[0]) == {
        "id", "rule", "panel", "action", "outcome", "reason", "received_at", "started_at",
        "finished_at", "alert",
    }  # fmt: skip
    assert env.client.get(f"{env.url}/actions", params={"outcome": "nonsense"}).status_code == 400
    page = env.client.get(f"{env.url}/")
    assert page.status_code == 200 and "restart-clamav" in page.text


# ---------------------------------------------------------------------------- kill -9


def test_kill_9_during_an_action_then_restart_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path,
) -> None:
    with slow_delete_scene(tmp_path) as (env, args):
        sim, url = env.sim, env.url
        env.sim_post("bounce", "daemon", {"clamav": "stopped"})
        log = tmp_path / "remediator.log"
        with running(args, log=log, ready_url=f"{url}/healthz") as proc:
            deleting = only_result(
                env.post(notification(am_alert("BrainyCPMailBouncesPiling", "bounce")))
            )
            # Queued behind it on the same panel: accepted, not started.
            restarting = only_result(
                env.post(notification(am_alert("BrainyCPClamAVDown", "bounce")))
            )
            wait_until(
                lambda: ("controll_msg", "delete") in env.calls("bounce"),
                what="controll_msg in flight",
            )
            assert env.action(deleting["action_id"])["outcome"] == "running"
            assert env.action(restarting["action_id"])["outcome"] == "pending"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        httpx.delete(f"{sim}/panel/bounce/_sim/fault").raise_for_status()
        env.clear_calls("bounce")
        with running(args, log=log, ready_url=f"{url}/healthz"):
            # Nothing lost: the idempotent restart resumes; the half-done delete is interrupted.
            assert env.wait_final(restarting["action_id"])["outcome"] == "succeeded"
            interrupted = env.action(deleting["action_id"])
            assert interrupted["outcome"] == "interrupted" and interrupted["finished_at"]
            # Nothing run twice: no message call after the restart, and the episode is still done.
            copy = only_result(
                env.post(notification(am_alert("BrainyCPMailBouncesPiling", "bounce")))
            )
            assert copy["outcome"] == "skipped_duplicate"
            calls = env.calls("bounce")
            assert not any(op == "controll_msg" for op, _ in calls)
            assert calls == [
                ("clamav", "status"),
                ("clamav", "off"),
                ("clamav", "on"),
                ("clamav", "status"),
            ]


def test_kill_9_in_the_middle_of_a_deletion_leaves_every_confirmed_deletion_in_the_journal(
    tmp_path: Path,
) -> None:
    """A delete of five messages, one panel call each (1 s apiece), is killed (SIGKILL)
    once the panel has confirmed two: the journal already lists those two while the
    action runs, and after the restart the ``interrupted`` row still lists them."""
    sim_port, port = free_port(), free_port()
    sim, url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "config.yml", sim_port, port, tmp_path / "s.sqlite", RULES)
    args = [PYTHON, "-m", "remediator.cli", "--config", str(config)]
    log = tmp_path / "remediator.log"
    with running(start_sim(tmp_path, sim_port), log=tmp_path / "sim.log",
                 ready_url=f"{sim}/healthz"):  # fmt: skip
        env = Env(sim, url, httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}), tmp_path)
        env.sim_post("bounce", "pause", {"paused": True})
        env.sim_post("bounce", "queue", {"add": 5, "bounce": True, "age": 7200})
        env.sim_post("bounce", "fault", {"latency": 1.0, "operations": ["controll_msg"]})
        with running(args, log=log, ready_url=f"{url}/healthz") as proc:
            deleting = only_result(
                env.post(notification(am_alert("BrainyCPMailBouncesPiling", "bounce")))
            )["action_id"]

            def deletes() -> list[str]:
                state = env.state("bounce")
                return [c["params"]["id"] for c in state["calls"]
                        if c["operation"] == "controll_msg"]  # fmt: skip

            # The third call has arrived: the first two were answered (and recorded).
            sent = wait_until(lambda: len(d := deletes()) >= 3 and d, what="3 deletions sent")
            running_row = env.client.get(f"{url}/actions/{deleting}").json()
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        confirmed = sent[:2]
        assert running_row["outcome"] == "running"
        assert [m["id"] for m in running_row["messages"]] == confirmed
        httpx.delete(f"{sim}/panel/bounce/_sim/fault").raise_for_status()
        with running(args, log=log, ready_url=f"{url}/healthz"):
            row = env.client.get(f"{url}/actions/{deleting}").json()
        assert row["outcome"] == "interrupted"
        assert [m["id"] for m in row["messages"]] == confirmed
        assert row["messages_total"] == 2
        assert all(m["answer"] and not m["answer"].startswith("error") for m in row["messages"])
        queued = {m.id for m in env.listing("bounce")}
        assert not queued & set(confirmed)
        env.client.close()


def test_check_config_lists_rules_and_errors_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yml", 1, None, tmp_path / "s.sqlite", RULES)
    out = subprocess.run(
        [PYTHON, "-m", "remediator.cli", "--config", str(config), "--check-config"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"config OK: {len(PANELS)} panels")
    assert (
        'clean-frozen: alertname="BrainyCPMailFrozenMessages" -> delete_frozen (cooldown 2s)'
        in out.stdout
    )
    data = yaml.safe_load(config.read_text())
    del data["remediator"]["auth"]
    broken_rule = {"name": "bad", "matchers": ["x"], "action": "delete_all"}
    for broken, expected in (
        (data, "remediator.auth: the webhook needs auth"),
        (
            {**data, "remediator": {**data["remediator"], "rules": [*RULES, broken_rule]}},
            "remediator.rules[7].matchers: 'x' is not a matcher",
        ),
    ):
        config.write_text(yaml.safe_dump(broken))
        bad = subprocess.run(
            [PYTHON, "-m", "remediator.cli", "--config", str(config), "--check-config"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert bad.returncode == 2 and bad.stdout == ""
        assert expected in bad.stderr
