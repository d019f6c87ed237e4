"""Reload of the real remediator process: new rules and auth apply between notifications,
while the running action, cooldowns and dedupe carry over; a bad config changes nothing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.remediator_support import (
    TOKEN,
    Env,
    am_alert,
    notification,
    only_result,
    slow_delete_scene,
    start_sim,
    write_config,
)
from tests.support import PYTHON, free_port, running, wait_until

pytestmark = pytest.mark.e2e

BASE_RULES: list[dict[str, Any]] = [
    {"name": "clean-frozen", "matchers": ['alertname="BrainyCPMailFrozenMessages"'],
     "action": "delete_frozen", "cooldown": "1h"},
    {"name": "drop-old-bounces", "matchers": ['alertname="BrainyCPMailBouncesPiling"'],
     "action": "delete_messages", "select": {"bounce": True, "older_than": "1h"}},
]  # fmt: skip
NEW_RULE = {
    "name": "restart-clamav",
    "matchers": ['alertname="BrainyCPClamAVDown"'],
    "action": "restart_service",
    "daemon": "clamav",
}


def reload_metrics(url: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    return (
        values["brainycp_config_last_reload_successful"],
        values["brainycp_config_last_reload_success_timestamp_seconds"],
    )


def test_reload_applies_rules_and_auth_and_keeps_actions_cooldowns_and_dedupe(
    tmp_path: Path,
) -> None:
    sim_port, port = free_port(), free_port()
    sim, url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "config.yml", sim_port, port, tmp_path / "s.db", BASE_RULES)
    (tmp_path / "webhook.token").chmod(0o600)
    (tmp_path / "panel.pw").chmod(0o600)
    data = yaml.safe_load(config.read_text())
    args = [PYTHON, "-m", "remediator.cli", "--config", str(config)]
    log = tmp_path / "remediator.log"
    with (
        running(start_sim(tmp_path, sim_port), log=tmp_path / "sim", ready_url=f"{sim}/healthz"),
        httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as client,
    ):
        env = Env(sim, url, client, tmp_path)
        env.sim_post("bounce", "pause", {"paused": True})
        env.sim_post("bounce", "queue", {"add": 2, "bounce": True, "age": 7200})
        env.sim_post("frozen", "queue", {"add": 2, "frozen": True})
        env.sim_post("bounce", "daemon", {"clamav": "stopped"})
        with running(args, log=log, ready_url=f"{url}/healthz") as proc:
            # Reading remediation state needs credentials now.
            assert httpx.get(f"{url}/actions", timeout=10).status_code == 401
            assert httpx.get(f"{url}/", timeout=10).status_code == 401
            assert httpx.get(f"{url}/metrics", timeout=10).status_code == 200
            assert reload_metrics(url)[0] == 1

            frozen = only_result(
                env.post(notification(am_alert("BrainyCPMailFrozenMessages", "frozen")))
            )
            assert frozen["outcome"] == "pending"
            assert env.wait_final(frozen["action_id"])["outcome"] == "succeeded"
            slow_once = {"latency": 3, "times": 1, "operations": ["controll_msg"]}
            env.sim_post("bounce", "fault", slow_once)
            deleting = only_result(
                env.post(notification(am_alert("BrainyCPMailBouncesPiling", "bounce")))
            )
            wait_until(
                lambda: env.action(deleting["action_id"])["outcome"] == "running",
                what="the bounce delete running",
            )
            before_rule = only_result(
                env.post(notification(am_alert("BrainyCPClamAVDown", "bounce")))
            )
            assert before_rule["outcome"] == "ignored"

            # SIGHUP with a new rule and a new token, while the delete is in flight.
            _, started_at = reload_metrics(url)
            data["remediator"]["rules"] = [*BASE_RULES, NEW_RULE]
            (tmp_path / "webhook.token").write_text("rotated-token\n")
            config.write_text(yaml.safe_dump(data))
            os.kill(proc.pid, signal.SIGHUP)
            wait_until(lambda: reload_metrics(url)[1] > started_at, what="the reload")
            assert proc.poll() is None, "SIGHUP must not end the remediator"

            old_token = env.post(notification(am_alert("BrainyCPClamAVDown", "bounce")))
            assert old_token.status_code == 401
            client.headers["Authorization"] = "Bearer rotated-token"
            restart = only_result(
                env.post(notification(am_alert("BrainyCPClamAVDown", "bounce", starts_at="b")))
            )
            assert restart["rule"] == "restart-clamav" and restart["outcome"] == "pending"
            # Cooldown and dedupe come from the journal: they survived the reload.
            again = env.post(notification(am_alert("BrainyCPMailFrozenMessages", "frozen")))
            assert only_result(again)["outcome"] == "skipped_duplicate"
            later = am_alert("BrainyCPMailFrozenMessages", "frozen", starts_at="later")
            assert only_result(env.post(notification(later)))["outcome"] == "skipped_cooldown"
            # The delete that was running when the config changed finishes as before,
            # and the restart queued behind it on the same panel runs after it.
            assert env.wait_final(deleting["action_id"])["outcome"] == "succeeded"
            assert env.wait_final(restart["action_id"])["outcome"] == "succeeded"

            # A broken config over HTTP: 400 with the errors, nothing changes.
            reload_url = f"{url}/-/reload"
            assert httpx.post(reload_url, timeout=10).status_code == 401
            config.write_text(
                config.read_text() + "  rules:\n  - {name: x, matchers: ['a=b'], action: nope}\n"
            )
            refused = client.post(reload_url)
            assert refused.status_code == 400, refused.text
            assert refused.json()["status"] == "error"
            (error,) = refused.json()["errors"]
            assert error.startswith("remediator.rules: appears twice in the same mapping")
            assert reload_metrics(url)[0] == 0
            third = am_alert("BrainyCPClamAVDown", "bounce", starts_at="c")
            assert only_result(env.post(notification(third)))["rule"] == "restart-clamav"

            # Fixed: the metric recovers.
            config.write_text(yaml.safe_dump(data))
            assert client.post(reload_url).json() == {"status": "success"}
            assert reload_metrics(url)[0] == 1
    text = log.read_text()
    assert "reload (/-/reload): remediator.rules" in text
    assert "remediator stopped" in text
    assert "rotated-token" not in text and TOKEN not in text


def test_a_reloaded_shutdown_grace_applies_to_the_next_stop(tmp_path: Path) -> None:
    """shutdown_grace was read once, at start: a reload to 1s still waited the old 60s."""
    with slow_delete_scene(tmp_path) as (env, args):
        config = tmp_path / "config.yml"
        data = yaml.safe_load(config.read_text())
        data["remediator"]["shutdown_grace"] = "60s"
        config.write_text(yaml.safe_dump(data))
        with running(args, log=tmp_path / "r.log", ready_url=f"{env.url}/healthz") as proc:
            deleting = only_result(
                env.post(notification(am_alert("BrainyCPMailBouncesPiling", "bounce")))
            )
            wait_until(lambda: ("controll_msg", "delete") in env.calls("bounce"),
                       what="the slow delete in flight")  # fmt: skip
            assert env.action(deleting["action_id"])["outcome"] == "running"
            data["remediator"]["shutdown_grace"] = "1s"
            config.write_text(yaml.safe_dump(data))
            assert env.client.post(f"{env.url}/-/reload").json() == {"status": "success"}
            stopping = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            # 1 s of grace plus the listener's close; the delete would take 10 s (its timeout).
            assert time.monotonic() - stopping < 15
    # With the old 60 s it would have finished (as failed): "1 ... finished, 0 cut off".
    assert (
        "0 running actions finished, 1 cut off at shutdown_grace"
        in (tmp_path / "r.log").read_text()
    )
