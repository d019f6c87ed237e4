"""Notifications from the real remediator process to real loopback receivers (webhook,
Slack and Telegram shapes): targets added, changed and removed by SIGHUP take effect
at once; an approval request says what will be done and its curl line works with the
credentials that guard the operator routes (bearer token, or a web-config user)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.chat_support import slack_lines, telegram_lines
from tests.remediator_support import TOKEN, am_alert, notification, write_config
from tests.support import PYTHON, free_port, require_binary, running, serving, sim_args, wait_until
from tests.tls_support import client_context, make_client_ca, make_server_cert
from tests.trust_support import Receiver

pytestmark = pytest.mark.e2e

PANELS = ("spam1", "spam2", "spam3", "spam4", "spam5", "spam6", "spam7")
SPAMMER = "spam@example.com"
BOT_TOKEN = "4242:notify-e2e-BOT-SECRET"
SLACK_PATH = "/services/T000/B000/SLACK-SECRET"
RULE = {"name": "contain-spam-sender", "matchers": ['alertname="BrainyCPMailSenderSurge"'],
        "action": "delete_messages", "select": {"sender": "{{ labels.sender }}"},
        "approval": "required", "cooldown": "0s", "max_messages": 500}  # fmt: skip
WEB_USER, WEB_PASSWORD = "alice", "notify-e2e-web-password"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("notify-sim")
    args = sim_args(0, "--seed", "5")
    for name in PANELS:
        args += ["--panel", f"{name}:quiet:exim"]
    with serving(args, log=tmp / "sim.log") as simulator:
        url = simulator.url
        for name in PANELS:
            httpx.post(f"{url}/panel/{name}/_sim/pause", json={"paused": True}).raise_for_status()
        yield url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def targets(tmp: Path, receiver: Receiver, hook_path: str = "/hook") -> list[dict[str, Any]]:
    (tmp / "bot.token").write_text(BOT_TOKEN + "\n")
    (tmp / "slack.url").write_text(receiver.url + SLACK_PATH + "\n")
    every = ["awaiting_approval", "approved", "succeeded", "failed", "unverified"]
    return [
        {"name": "hook", "type": "webhook", "url": receiver.url + hook_path, "outcomes": every},
        {"name": "chat", "type": "slack", "url_file": str(tmp / "slack.url"), "outcomes": every},
        {"name": "tg", "type": "telegram", "api_url": receiver.url, "chat_id": -100,
         "bot_token_file": str(tmp / "bot.token"), "outcomes": every},
    ]  # fmt: skip


def configure(
    tmp: Path, sim: str, port: int, notify: list[dict[str, Any]], scheme: str = "http"
) -> Path:
    sim_port = int(sim.rsplit(":", 1)[1])
    return write_config(
        tmp / "config.yml", sim_port, port, tmp / "journal.sqlite", [RULE], panels=PANELS,
        external_url=f"{scheme}://127.0.0.1:{port}", notify=notify,
        manual={"actions": ["delete_messages"], "allow_destructive": True},
    )  # fmt: skip


def metrics(url: str, auth: Any = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", auth=auth, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def outbound(url: str, target: str, result: str, auth: Any = None) -> float | None:
    key = ("brainycp_remediator_outbound_notifications_total",
           (("result", result), ("target", target)))  # fmt: skip
    return metrics(url, auth).get(key)


def reload(proc: subprocess.Popen[bytes], url: str, auth: Any = None) -> None:
    """SIGHUP, then wait for the reload to be applied (its success timestamp moves)."""
    key = ("brainycp_config_last_reload_success_timestamp_seconds", ())
    before = metrics(url, auth)[key]
    time.sleep(0.01)  # the timestamp has a resolution; a new reload must be later
    os.kill(proc.pid, signal.SIGHUP)
    wait_until(lambda: metrics(url, auth)[key] > before, what="the reload")
    assert metrics(url, auth)[("brainycp_config_last_reload_successful", ())] == 1


def surge(client: httpx.Client, url: str, panel: str) -> int:
    answer = client.post(f"{url}/webhook", json=notification(
        am_alert("BrainyCPMailSenderSurge", panel, sender=SPAMMER)))  # fmt: skip
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()["results"]
    assert result["outcome"] == "awaiting_approval", result
    return int(result["action_id"])


def about(receiver: Receiver, path: str, action_id: int, outcome: str = "") -> list[Any]:
    """What ``path`` received about ``action_id`` (and ``outcome``, when given)."""
    link = f"/actions/{action_id}"
    found = []
    for body in receiver.bodies(path):
        text = body.get("text") or json.dumps(body)
        ours = link + "\n" in text + "\n" or body.get("action_id") == action_id
        if ours and (not outcome or outcome in text or body.get("outcome") == outcome):
            found.append(body)
    return found


def test_notify_targets_added_changed_and_removed_by_a_reload_take_effect_at_once(
    tmp_path: Path, sim: str, receiver: Receiver
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = configure(tmp_path, sim, port, [])  # as shipped: no notify section
    log = tmp_path / "remediator.log"
    args = [PYTHON, "-m", "remediator.cli", "--config", str(config)]
    with (
        running(args, log=log, ready_url=f"{url}/healthz") as proc,
        httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as client,
    ):
        surge(client, url, "spam1")  # nobody to tell yet
        data = yaml.safe_load(config.read_text())
        dead = {
            "name": "dead",
            "type": "webhook",
            "retry_for": "0s",
            "url": f"http://127.0.0.1:{free_port()}/hook",
            "outcomes": ["awaiting_approval"],
        }
        data["remediator"]["notify"] = [*targets(tmp_path, receiver), dead]  # fmt: skip
        config.write_text(yaml.safe_dump(data))
        reload(proc, url)
        # Every new target's counters exist at 0 before anything happens.
        for name in ("hook", "chat", "tg", "dead"):
            assert outbound(url, name, "sent") == 0 and outbound(url, name, "failed") == 0

        added = surge(client, url, "spam2")
        for path in ("/hook", SLACK_PATH, f"/bot{BOT_TOKEN}/sendMessage"):
            wait_until(lambda p=path: about(receiver, p, added), what=f"the request at {path}")
        wait_until(lambda: outbound(url, "dead", "failed") == 1, what="dead counted failed")
        assert outbound(url, "hook", "sent") == 1 and outbound(url, "chat", "sent") == 1
        wait_until(lambda: "notification to dead failed" in log.read_text(), what="its log")

        # Changed (the webhook moves) and removed (Slack): the next request follows.
        data["remediator"]["notify"] = [
            t for t in targets(tmp_path, receiver, "/moved") if t["name"] != "chat"
        ]
        config.write_text(yaml.safe_dump(data))
        reload(proc, url)
        changed = surge(client, url, "spam3")
        wait_until(lambda: about(receiver, "/moved", changed), what="the moved webhook")
        wait_until(lambda: about(receiver, "/bot", changed), what="telegram, still there")
        assert not about(receiver, SLACK_PATH, changed) and not about(receiver, "/hook", changed)
        # The changed target keeps its series; the removed one has none any more.
        assert outbound(url, "chat", "sent") is None and outbound(url, "hook", "sent") == 2
    text = log.read_text()
    assert BOT_TOKEN not in text and "SLACK-SECRET" not in text


def run_line(line: str, env: dict[str, str], password: str = "") -> tuple[int, str]:
    """Run a notification's command line in ``sh`` on a terminal of its own (curl asks
    for a password there); answer ``password`` when asked. Returns (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: only the line's shell, with the reader's environment
        os.execve("/bin/sh", ["sh", "-c", line], env)
    output, answered = b"", False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed its terminal
            break
        if not chunk:
            break
        output += chunk
        if password and not answered and b"password" in output.lower():
            os.write(fd, password.encode() + b"\n")
            answered = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def reader_env(**extra: str) -> dict[str, str]:
    """A shell as the person who reads the chat has it (no proxy variables)."""
    return {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "USER": "oncall-bob", **extra}


def curl_scene(
    tmp: Path, sim: str, notify: list[dict[str, Any]], scheme: str = "http"
) -> tuple[str, Path]:
    """For a test that runs a notification's curl line: the remediator's URL (its port
    named in advance, as ``external_url`` must be) and its config file."""
    require_binary("curl", "apt-get install curl")
    port = free_port()
    return f"{scheme}://127.0.0.1:{port}", configure(tmp, sim, port, notify, scheme)


def test_an_approval_request_says_what_will_be_done_and_its_curl_line_approves_it(
    tmp_path: Path, sim: str, receiver: Receiver
) -> None:
    url, config = curl_scene(tmp_path, sim, targets(tmp_path, receiver))
    httpx.post(
        f"{sim}/panel/spam4/_sim/queue",
        json={"add": 30, "sender": SPAMMER, "recipient": "victim@example.net"},
    )
    httpx.post(f"{sim}/panel/spam4/_sim/queue",
               json={"add": 5, "sender": "customer@example.org"})  # fmt: skip
    args = [PYTHON, "-m", "remediator.cli", "--config", str(config)]
    with (
        running(args, log=tmp_path / "remediator.log", ready_url=f"{url}/healthz"),
        httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as client,
    ):
        action_id = surge(client, url, "spam4")
        (hook,) = wait_until(lambda: about(receiver, "/hook", action_id), what="the webhook")
        assert hook["selection"] == {"sender": SPAMMER, "max_messages": 500, "limit": "refuse"}
        assert hook["matching"] == 30 and hook["url"] == f"{url}/actions/{action_id}"
        (slack,) = wait_until(lambda: about(receiver, SLACK_PATH, action_id), what="slack")
        lines = slack_lines(slack["text"])
        assert [w for w, _ in lines] == [
            "\u23f3 *AWAITING APPROVAL*: delete_messages on ",
            "selection: sender ; at most 500 messages, else nothing",
            "matching now: 30 messages",
            "rule: ",
            "alert:  firing since ",
            f"open: {url}/actions/{action_id}",
            "approve: ",
            "deny: ",
            "expires: in 1h unless decided",
        ]
        assert [q for _, q in lines][:5] == [
            ["spam4"], [SPAMMER], [], ["contain-spam-sender"],
            ["BrainyCPMailSenderSurge", "2026-11-25T08:00:00.000Z"],
        ]  # fmt: skip
        (telegram,) = wait_until(lambda: about(receiver, "/bot", action_id), what="telegram")
        assert telegram["parse_mode"] == "HTML"
        approve = dict((w, q) for w, q in telegram_lines(telegram["text"]))["approve: "][0]
        assert "$BRAINYCP_REMEDIATOR_TOKEN" in approve and TOKEN not in approve

        # The line, copied from the phone into a shell that holds the token, approves it.
        code, output = run_line(approve, reader_env(BRAINYCP_REMEDIATOR_TOKEN=TOKEN))
        assert code == 0 and json.loads(output)["outcome"] == "pending", output
        done = wait_until(
            lambda: about(receiver, SLACK_PATH, action_id, "SUCCEEDED"), what="succeeded"
        )
        words = {w: q for w, q in slack_lines(done[0]["text"])}
        assert words["messages: 30 deleted"] == []
        assert words["approved by "] == ["oncall-bob"]

        # A manual action says who ran it.
        manual = client.post(f"{url}/actions", json={
            "panel": "spam4", "action": "delete_messages", "by": "carol",
            "allow_destructive": True, "select": {"sender": "customer@example.org"}})  # fmt: skip
        assert manual.status_code == 202, manual.text
        manual_id = manual.json()["action_id"]
        ran = wait_until(lambda: about(receiver, "/bot", manual_id, "SUCCEEDED"), what="manual")
        lines = telegram_lines(ran[0]["text"])
        assert ("rule: (manual) asked by ", ["carol"]) in lines
        assert ("messages: 5 deleted", []) in lines


def test_with_web_config_users_the_approve_line_logs_in_as_one(
    tmp_path: Path, sim: str, receiver: Receiver
) -> None:
    url, config = curl_scene(tmp_path, sim, targets(tmp_path, receiver)[:1])
    web = tmp_path / "web.yml"
    web.write_text("{}\n")  # a web config without users: the webhook's token guards
    args = [PYTHON, "-m", "remediator.cli", "--config", str(config), "--web.config.file", str(web)]
    with (
        running(args, log=tmp_path / "remediator.log", ready_url=f"{url}/healthz") as proc,
        httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as client,
    ):
        first = surge(client, url, "spam5")
        (hook,) = wait_until(lambda: about(receiver, "/hook", first), what="the first request")
        bearer_line = hook["approval_commands"]["approve"]
        assert "Bearer $BRAINYCP_REMEDIATOR_TOKEN" in bearer_line

        hashed = bcrypt.hashpw(WEB_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
        web.write_text(yaml.safe_dump({"basic_auth_users": {WEB_USER: hashed}}))
        reload(proc, url, auth=(WEB_USER, WEB_PASSWORD))
        assert client.get(f"{url}/actions").status_code == 401  # users guard the routes now
        second = surge(client, url, "spam6")
        (hook,) = wait_until(lambda: about(receiver, "/hook", second), what="the second request")
        line = hook["approval_commands"]["approve"]
        assert '-u "$USER"' in line and "Bearer" not in line

        env = reader_env(USER=WEB_USER, BRAINYCP_REMEDIATOR_TOKEN=TOKEN)
        # The old line's token no longer opens the route; the new one asks for the password.
        run_line(bearer_line, env)
        first_row = httpx.get(f"{url}/actions/{first}", auth=(WEB_USER, WEB_PASSWORD), timeout=10)
        assert first_row.json()["outcome"] == "awaiting_approval"
        code, output = run_line(line, env, password=WEB_PASSWORD)
        assert code == 0, output
        assert '"outcome":"pending"' in output.replace(" ", ""), output
        row = httpx.get(f"{url}/actions/{second}", auth=(WEB_USER, WEB_PASSWORD), timeout=10)
        assert row.json()["decision"]["by"] == WEB_USER


def test_when_the_listener_requires_a_client_certificate_the_approve_line_presents_one(
    tmp_path: Path, sim: str, receiver: Receiver
) -> None:
    url, config = curl_scene(tmp_path, sim, targets(tmp_path, receiver)[:1], "https")
    server_cert, server_key = make_server_cert(tmp_path, "server")
    ca, client_cert, client_key = make_client_ca(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"tls_server_config": {
        "cert_file": str(server_cert), "key_file": str(server_key),
        "client_ca_file": str(ca), "client_auth_type": "RequireAndVerifyClientCert"}}))  # fmt: skip
    args = [PYTHON, "-m", "remediator.cli", "--config", str(config), "--web.config.file", str(web)]
    context = client_context(client_cert, client_key, trust=(server_cert,))
    with (
        running(args, log=tmp_path / "remediator.log"),
        httpx.Client(
            headers={"Authorization": f"Bearer {TOKEN}"}, verify=context, timeout=10
        ) as client,  # fmt: skip
    ):
        wait_until(lambda: client.get(f"{url}/healthz").status_code == 200, what="TLS up")
        action_id = surge(client, url, "spam7")
        (hook,) = wait_until(lambda: about(receiver, "/hook", action_id), what="the request")
        line = hook["approval_commands"]["approve"]
        assert '--cert "$BRAINYCP_CLIENT_CERT" --key "$BRAINYCP_CLIENT_KEY"' in line, line
        assert str(client_key) not in line and TOKEN not in line

        env = reader_env(BRAINYCP_REMEDIATOR_TOKEN=TOKEN, CURL_CA_BUNDLE=str(server_cert))
        # Without a certificate in the reader's shell the listener refuses the line...
        code, output = run_line(line, env)
        assert code != 0, output
        assert client.get(f"{url}/actions/{action_id}").json()["outcome"] == "awaiting_approval"
        # ...with one, the line copied from the chat approves the action.
        code, output = run_line(
            line, {**env, "BRAINYCP_CLIENT_CERT": str(client_cert),
                   "BRAINYCP_CLIENT_KEY": str(client_key)})  # fmt: skip
        assert code == 0, output
        assert '"outcome":"pending"' in output.replace(" ", ""), output
