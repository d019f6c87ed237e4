"""Issue 14 end to end: approvals, notifications, the brakes, manual actions, message records.

Real remediator processes against a real simulator process; notification
targets are real HTTP servers on loopback that record what they receive.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.remediator_support import am_alert, notification
from tests.remediator_support import write_config as write_plain_config
from tests.support import PYTHON, free_port, running, sim_args, wait_until
from tests.trust_support import (
    Receiver,
)

# Every test here starts a process (the in-process tier, make test-fast, skips them).
pytestmark = pytest.mark.e2e

TOKEN = "trust-webhook-token-77aa"
BOT_TOKEN = "123456:trust-bot-SECRET"
SLACK_PATH = "/services/T000/B000/slack-SECRET"
PANELS = ("spam", "deny", "gone", "storm1", "storm2", "storm3", "storm4", "storm5", "manual")
SPAMMER = "spam@example.com"


def write_config(tmp: Path, sim_port: int, port: int, receiver: Receiver, **extra: Any) -> Path:
    (tmp / "panel.pw").write_text("admin\n")
    (tmp / "webhook.token").write_text(TOKEN + "\n")
    (tmp / "bot.token").write_text(BOT_TOKEN + "\n")
    (tmp / "hook.token").write_text("hook-bearer-SECRET\n")
    remediator: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "auth": {"bearer_token_file": str(tmp / "webhook.token")},
        "state_file": str(tmp / "state.sqlite"),
        "external_url": "https://remediator.example.net",
        "rate_limit": {"max_actions": 1000, "per": "1h"},
        "notify": [
            {"name": "hook", "type": "webhook", "url": f"{receiver.url}/hook",
             "bearer_token_file": str(tmp / "hook.token"),
             "outcomes": ["succeeded", "failed", "awaiting_approval", "approved", "denied",
                          "cancelled", "expired", "skipped_paused", "circuit_open", "paused",
                          "resumed"]},
            {"name": "ops-chat", "type": "slack", "url": receiver.url + SLACK_PATH},
            {"name": "tg", "type": "telegram", "api_url": receiver.url,
             "bot_token_file": str(tmp / "bot.token"), "chat_id": -100123},
        ],
        "manual": {"actions": ["delete_messages", "delete_frozen", "restart_service"],
                   "allow_destructive": True, "max_messages": 50},
        "rules": [
            {"name": "contain-spam-sender",
             "matchers": ['alertname="BrainyCPMailSenderSurge"'],
             "action": "delete_messages", "select": {"sender": "{{ labels.sender }}"},
             "approval": "required", "cooldown": "0s", "max_messages": 100000,
             "notify": ["hook", "ops-chat", "tg"]},
            {"name": "clean-frozen", "matchers": ['alertname="BrainyCPMailFrozenMessages"'],
             "action": "delete_frozen", "cooldown": "0s", "notify": ["hook"]},
        ],
    }  # fmt: skip
    remediator.update(extra)
    config = {
        "defaults": {"username": "admin", "password_file": str(tmp / "panel.pw")},
        "panels": {
            name: {"url": f"http://127.0.0.1:{sim_port}/panel/{name}/api/api.php"}
            for name in PANELS
        },
        "remediator": remediator,
    }
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Env:
    sim: str
    url: str
    tmp: Path
    config: Path
    receiver: Receiver
    client: httpx.Client

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return self.client.post(f"{self.url}{path}", json=body)

    def webhook(self, *alerts: dict[str, Any]) -> list[dict[str, Any]]:
        answer = self.post("/webhook", notification(*alerts))
        assert answer.status_code == 200, answer.text
        return list(answer.json()["results"])

    def action(self, action_id: int) -> dict[str, Any]:
        answer = self.client.get(f"{self.url}/actions/{action_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def wait_outcome(self, action_id: int, *outcomes: str) -> dict[str, Any]:
        return wait_until(
            lambda: (a := self.action(action_id))["outcome"] in outcomes and a,
            what=f"action {action_id} to become one of {outcomes}",
        )

    def add(self, panel: str, **body: Any) -> None:
        httpx.post(f"{self.sim}/panel/{panel}/_sim/queue", json=body).raise_for_status()

    def calls(self, panel: str) -> list[str]:
        state = httpx.get(f"{self.sim}/panel/{panel}/_sim/state", timeout=5).json()
        return [c["operation"] for c in state["calls"]]

    def senders(self, panel: str) -> list[str]:
        form = {"username": "admin", "password": "admin", "mailserver": "1", "list_msg": "1"}
        answer = httpx.post(f"{self.sim}/panel/{panel}/api/api.php", data=form).json()
        from brainycp.queue import iter_messages

        return [m.sender for m in iter_messages(answer.get("detail") or "")]

    def metric(self, name: str) -> str:
        text = httpx.get(f"{self.url}/metrics").text
        return "\n".join(line for line in text.splitlines() if line.startswith(name))


def start_sim(port: int) -> list[str]:
    args = sim_args(port, "--seed", "3")
    for name in PANELS:
        args += ["--panel", f"{name}:quiet:exim"]
    return args


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("trust")
    sim_port, port = free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    receiver = Receiver(fail=2).start()  # the first two deliveries fail: retried
    config = write_config(tmp, sim_port, port, receiver)
    with running(start_sim(sim_port), log=tmp / "sim.log", ready_url=f"{sim}/healthz"):
        for name in PANELS:
            httpx.post(f"{sim}/panel/{name}/_sim/pause", json={"paused": True}).raise_for_status()
        with running(
            [PYTHON, "-m", "remediator.cli", "--config", str(config), "--log-level", "debug"],
            log=tmp / "remediator.log",
            ready_url=f"http://127.0.0.1:{port}/healthz",
        ):
            client = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
            yield Env(sim, f"http://127.0.0.1:{port}", tmp, config, receiver, client)
            client.close()
    receiver.stop()
    log = (tmp / "remediator.log").read_text()
    for secret in (TOKEN, BOT_TOKEN, "slack-SECRET", "hook-bearer-SECRET"):
        assert secret not in log


def surge(panel: str, sender: str = SPAMMER, **kw: Any) -> dict[str, Any]:
    return am_alert("BrainyCPMailSenderSurge", panel, sender=sender, **kw)


# ---------------------------------------------------------------------------- approval


def test_spam_sender_waits_for_approval_then_deletes_only_its_messages(env: Env) -> None:
    env.add("spam", add=30, sender=SPAMMER, recipient="victim@example.net")
    env.add("spam", add=5, sender="customer@example.org", recipient="friend@example.net")
    (result,) = env.webhook(surge("spam"))
    assert result["outcome"] == "awaiting_approval"
    action_id = result["action_id"]
    # Nothing touches the panel while it waits.
    assert not any(c == "controll_msg" for c in env.calls("spam"))
    assert env.metric("brainycp_remediator_actions_awaiting_approval").endswith(" 1.0")

    # The request reached every target of the rule, with the approve/deny commands.
    def requested(path: str) -> list[Any]:
        return [
            b for b in env.receiver.bodies(path)
            if ("awaiting_approval" in json.dumps(b) or "AWAITING APPROVAL" in json.dumps(b))
            and f"/actions/{action_id}" in json.dumps(b)
        ]  # fmt: skip

    (hook,) = wait_until(lambda: requested("/hook"), what="the webhook target's request")
    assert hook["action_id"] == action_id and hook["rule"] == "contain-spam-sender"
    assert hook["alert"]["labels"]["sender"] == SPAMMER
    assert hook["params"]["select"]["sender"] == SPAMMER
    assert hook["url"] == f"https://remediator.example.net/actions/{action_id}"
    assert hook["approval_commands"]["approve"].endswith(f"/actions/{action_id}/approve")
    assert TOKEN not in json.dumps(hook)
    (slack,) = wait_until(lambda: requested(SLACK_PATH), what="the slack message")
    assert "/approve" in slack["text"] and "/deny" in slack["text"]
    (tg,) = wait_until(lambda: requested(f"/bot{BOT_TOKEN}/sendMessage"), what="telegram")
    assert tg["chat_id"] == "-100123" and "AWAITING APPROVAL" in tg["text"]
    hook_headers = [h for p, h, _ in env.receiver.posts if p == "/hook"]
    assert hook_headers[0]["Authorization"] == "Bearer hook-bearer-SECRET"

    answer = env.post(f"/actions/{action_id}/approve", {"by": "alice", "comment": "it is spam"})
    assert answer.status_code == 200, answer.text
    done = env.wait_outcome(action_id, "succeeded", "failed", "unverified")
    assert done["outcome"] == "succeeded", done
    assert done["decision"]["by"] == "alice" and done["decision"]["comment"] == "it is spam"
    assert done["messages_total"] == 30 and len(done["messages"]) == 30
    for message in done["messages"]:
        assert message["sender"] == SPAMMER and message["recipients"] == 1
        assert "removed" in message["answer"]
    senders = env.senders("spam")
    assert SPAMMER not in senders and senders.count("customer@example.org") == 5
    # /actions stays a summary.
    summary = env.client.get(f"{env.url}/actions", params={"limit": 1000}).json()["actions"]
    assert "messages" not in next(a for a in summary if a["id"] == action_id)
    # A second approval is refused: it already ran.
    assert env.post(f"/actions/{action_id}/approve", {"by": "bob"}).status_code == 409
    # The outcome reached the chat too; two early deliveries failed and were retried.
    wait_until(
        lambda: any("SUCCEEDED" in b["text"] for b in env.receiver.bodies(SLACK_PATH)),
        what="the succeeded message",
    )
    retried = [
        line for line in env.metric("brainycp_remediator_outbound_notifications_total").split("\n")
        if 'result="retried"' in line and not line.endswith(" 0.0")
    ]  # fmt: skip
    assert retried, "the two failed deliveries were not retried"
    failed = [
        line for line in env.metric("brainycp_remediator_outbound_notifications").split("\n")
        if 'result="failed"' in line
    ]  # fmt: skip
    assert len(failed) == 3 and all(line.endswith(" 0.0") for line in failed)


def test_deny_closes_the_request_and_the_panel_is_never_called(env: Env) -> None:
    env.add("deny", add=3, sender=SPAMMER)
    (result,) = env.webhook(surge("deny"))
    action_id = result["action_id"]
    answer = env.post(f"/actions/{action_id}/deny", {"by": "bob", "comment": "a newsletter"})
    assert answer.status_code == 200 and answer.json()["outcome"] == "denied"
    row = env.action(action_id)
    assert row["outcome"] == "denied" and "a newsletter" in row["reason"]
    # Only the request's own count of the matching messages read the queue (once); the
    # denial changed nothing on the panel.
    assert env.calls("deny") in ([], ["list_msg"])
    # The same episode repeated by Alertmanager does not ask again.
    (again,) = env.webhook(surge("deny"))
    assert again["outcome"] == "skipped_duplicate"
    assert env.post(f"/actions/{action_id}/approve").status_code == 409


def test_resolved_alert_cancels_a_pending_approval(env: Env) -> None:
    (result,) = env.webhook(surge("gone", starts_at="2026-11-25T09:00:00Z"))
    action_id = result["action_id"]
    env.webhook(surge("gone", starts_at="2026-11-25T09:00:00Z", status="resolved"))
    assert env.action(action_id)["outcome"] == "cancelled"
    assert env.post(f"/actions/{action_id}/approve").status_code == 409


def test_approval_endpoints_need_auth_and_reject_hostile_bodies(env: Env) -> None:
    (result,) = env.webhook(surge("gone", starts_at="2026-11-25T10:00:00Z"))
    action_id = result["action_id"]
    url = f"{env.url}/actions/{action_id}/approve"
    assert httpx.post(url).status_code == 401
    assert httpx.post(f"{env.url}/pause").status_code == 401
    assert httpx.post(f"{env.url}/actions", json={}).status_code == 401
    assert env.client.post(url, content=b"[[[[").status_code == 400
    assert env.client.post(url, json=["by"]).status_code == 422
    assert env.client.post(url, json={"by": 7}).status_code == 422
    assert env.client.post(url, content=b"{" + b" " * 70000 + b"}").status_code == 413
    assert env.client.post(f"{env.url}/actions/999999/approve").status_code == 404
    assert env.client.post(f"{env.url}/actions/{10**30}/approve").status_code == 404
    assert env.client.get(f"{env.url}/actions/{10**30}").status_code == 404
    assert env.action(action_id)["outcome"] == "awaiting_approval"
    assert env.post(f"/actions/{action_id}/deny").status_code == 200


def test_a_surge_alert_without_a_usable_sender_label_is_rejected(env: Env) -> None:
    (empty,) = env.webhook(surge("spam", sender="", starts_at="2026-11-25T11:00:00Z"))
    assert empty["outcome"] == "rejected" and "sender" in empty["reason"]
    (pattern,) = env.webhook(surge("spam", sender=".*", starts_at="2026-11-25T11:00:01Z"))
    assert pattern["outcome"] == "rejected" and "not an e-mail address" in pattern["reason"]


# ---------------------------------------------------------------------------- manual


def test_manual_dry_run_previews_and_the_real_run_records_each_message(env: Env) -> None:
    env.add("manual", add=4, sender="bulk@example.org", size=2048)
    answer = env.post("/actions", {"panel": "manual", "action": "delete_messages",
                                   "select": {"sender": "bulk@example.org"}, "dry_run": True,
                                   "by": "carol"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["outcome"] == "dry_run" and preview["matching"] == 4
    assert {m["sender"] for m in preview["messages"]} == {"bulk@example.org"}
    assert all(m["size_bytes"] >= 2048 and m["recipients"] == 1 for m in preview["messages"])
    assert "controll_msg" not in env.calls("manual")
    # Destructive for real needs the explicit flag; unlisted actions are refused.
    body = {"panel": "manual", "action": "delete_messages",
            "select": {"sender": "bulk@example.org"}, "by": "carol"}  # fmt: skip
    assert env.post("/actions", body).status_code == 422
    assert env.post("/actions", {**body, "action": "delete_all"}).status_code == 403
    assert env.post("/actions", {**body, "panel": "nope"}).status_code == 422
    assert env.post("/actions", {**body, "max_messages": 51}).status_code == 422
    answer = env.post("/actions", {**body, "allow_destructive": True})
    assert answer.status_code == 202, answer.text
    done = env.wait_outcome(answer.json()["action_id"], "succeeded", "failed", "unverified")
    assert done["outcome"] == "succeeded" and done["origin"] == "manual"
    assert done["requested_by"] == "carol" and done["messages_total"] == 4
    assert "bulk@example.org" not in env.senders("manual")


# ---------------------------------------------------------------------------- breaker


def test_without_a_breaker_a_storm_runs_everywhere(env: Env) -> None:
    storm = [
        am_alert("BrainyCPMailFrozenMessages", f"storm{i}", starts_at="2026-11-25T12:00:00Z")
        for i in range(1, 6)
    ]
    for i in range(1, 6):
        env.add(f"storm{i}", add=1, frozen=True, bounce=True)
    results = env.webhook(*storm)
    # No breaker is configured in this daemon: all five run.
    assert [r["outcome"] for r in results] == ["pending"] * 5


# ---------------------------------------------------------------------------- pause


def test_pause_is_journaled_survives_a_restart_and_resume_acts_again(
    tmp_path: Path,
) -> None:
    sim_port, port = free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    receiver = Receiver().start()
    config = write_config(tmp_path, sim_port, port, receiver)
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    cmd = [PYTHON, "-m", "remediator.cli", "--config", str(config)]
    frozen = am_alert("BrainyCPMailFrozenMessages", "storm1")
    with running(start_sim(sim_port), log=tmp_path / "sim.log", ready_url=f"{sim}/healthz"):
        httpx.post(f"{sim}/panel/storm1/_sim/pause", json={"paused": True}).raise_for_status()
        httpx.post(f"{sim}/panel/storm1/_sim/queue", json={"add": 2, "frozen": True})
        with running(cmd, log=tmp_path / "r1.log", ready_url=f"{url}/healthz"):
            answer = client.post(f"{url}/pause", json={"by": "dave", "comment": "maintenance"})
            assert answer.status_code == 200 and answer.json()["paused"]["value"] is True
            (result,) = client.post(f"{url}/webhook", json=notification(frozen)).json()["results"]
            assert result["outcome"] == "skipped_paused"
        with running(cmd, log=tmp_path / "r2.log", ready_url=f"{url}/healthz"):
            assert "brainycp_remediator_paused 1.0" in httpx.get(f"{url}/metrics").text
            control = client.get(f"{url}/control").json()  # state: needs the credentials
            assert control["paused"]["changed_by"] == "dave"
            (again,) = client.post(f"{url}/webhook", json=notification(frozen)).json()["results"]
            assert again["outcome"] == "skipped_paused"  # not a duplicate: nothing ran
            assert client.post(f"{url}/resume", json={"by": "dave"}).status_code == 200
            assert "brainycp_remediator_paused 0.0" in httpx.get(f"{url}/metrics").text
            (third,) = client.post(f"{url}/webhook", json=notification(frozen)).json()["results"]
            assert third["outcome"] == "pending"
            wait_until(
                lambda: (
                    client.get(f"{url}/actions/{third['action_id']}").json()["outcome"]
                    == "succeeded"
                ),
                what="the resumed action",
            )
            wait_until(
                lambda: (
                    {b.get("outcome") for b in receiver.bodies("/hook")}
                    >= {"paused", "skipped_paused", "resumed", "succeeded"}
                ),
                what="pause, skip, resume and success notifications",
            )
    client.close()
    receiver.stop()


def test_breaker_trips_on_a_fleet_wide_storm_from_the_simulator(tmp_path: Path) -> None:
    """40 simulated panels all alert at once; the breaker allows 4 and opens."""
    sim_port, port = free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    receiver = Receiver().start()
    names = tuple(f"panel{i:04d}" for i in range(1, 41))
    path = write_plain_config(
        tmp_path / "config.yml", sim_port, port, tmp_path / "state.sqlite",
        [{"name": "clean-frozen", "matchers": ['alertname="BrainyCPMailFrozenMessages"'],
          "action": "delete_frozen", "cooldown": "0s"}],
        panels=names,
        bearer_token=TOKEN,
        circuit_breaker={"share": 0.1, "window": "10m"},
        notify=[{"name": "hook", "type": "webhook", "url": f"{receiver.url}/hook"}],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    storm = [am_alert("BrainyCPMailFrozenMessages", n) for n in names]
    with (
        running(sim_args(sim_port, "--panels", "40"), log=tmp_path / "sim.log",
                ready_url=f"{sim}/healthz"),
        running([PYTHON, "-m", "remediator.cli", "--config", str(path)],
                log=tmp_path / "r.log", ready_url=f"{url}/healthz"),
    ):  # fmt: skip
        results = client.post(f"{url}/webhook", json=notification(*storm)).json()["results"]
        outcomes = [r["outcome"] for r in results]
        assert outcomes[:4] == ["pending"] * 4
        assert outcomes[4:] == ["skipped_circuit_open"] * 36
        assert "circuit breaker opened" in results[4]["reason"]
        assert "brainycp_remediator_circuit_open 1.0" in httpx.get(f"{url}/metrics").text
        (opened,) = wait_until(
            lambda: [b for b in receiver.bodies("/hook") if b["outcome"] == "circuit_open"],
            what="the circuit_open notification",
        )
        assert opened["kind"] == "control" and "5 panels" in opened["reason"]
        # Still open for a panel that already acted: only /resume closes it.
        later_alert = am_alert("BrainyCPMailFrozenMessages", names[0], starts_at="later")
        (later,) = client.post(f"{url}/webhook", json=notification(later_alert)).json()["results"]
        assert later["outcome"] == "skipped_circuit_open"
        client.post(f"{url}/resume", json={"by": "erin"}).raise_for_status()
        assert "brainycp_remediator_circuit_open 0.0" in httpx.get(f"{url}/metrics").text
    client.close()
    receiver.stop()


# ---------------------------------------------------------------------------- CLI run


def cli_run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "remediator.cli", "run", "--config", str(config), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_cli_run_talks_to_the_running_daemon(env: Env) -> None:
    env.add("manual", add=2, sender="cli@example.org")
    select = ["--panel", "manual", "--action", "delete_messages", "--select",
              "sender=cli@example.org", "--by", "frank"]  # fmt: skip
    preview = cli_run(env.config, *select, "--dry-run")
    assert preview.returncode == 0, preview.stderr
    body = json.loads(preview.stdout)
    assert body["outcome"] == "dry_run" and body["matching"] == 2
    refused = cli_run(env.config, *select)
    assert refused.returncode == 1 and "allow_destructive" in refused.stdout
    done = cli_run(env.config, *select, "--allow-destructive")
    assert done.returncode == 0, done.stdout + done.stderr
    row = json.loads(done.stdout)
    assert row["outcome"] == "succeeded" and row["messages_total"] == 2
    assert row["requested_by"] == "frank"
    # The daemon journaled it: it is the same row.
    assert env.action(row["id"])["origin"] == "manual"
    assert TOKEN not in done.stdout + done.stderr


def test_cli_run_runs_alone_when_no_daemon_answers(tmp_path: Path) -> None:
    sim_port = free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    receiver = Receiver().start()
    config = write_config(tmp_path, sim_port, free_port(), receiver)
    with running(start_sim(sim_port), log=tmp_path / "sim.log", ready_url=f"{sim}/healthz"):
        httpx.post(f"{sim}/panel/manual/_sim/pause", json={"paused": True}).raise_for_status()
        httpx.post(f"{sim}/panel/manual/_sim/queue", json={"add": 3, "frozen": True})
        done = cli_run(config, "--panel", "manual", "--action", "delete_frozen", "--by", "gina")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "running alone" in done.stderr
        row = json.loads(done.stdout)
        assert row["outcome"] == "succeeded" and row["messages_total"] == 3
        assert all("has been removed" in m["answer"] for m in row["messages"])
        bad = cli_run(config, "--panel", "manual", "--action", "delete_all")
        assert bad.returncode == 1 and "may not be run by hand" in bad.stdout
    receiver.stop()
    # The alone run used the daemon's journal.
    from remediator.journal import Journal

    journal = Journal(tmp_path / "state.sqlite")
    assert journal.get(row["id"]) is not None
    journal.close()
