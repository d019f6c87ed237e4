"""``make demo``: the whole system on one machine, against the bundled panel simulator.

Starts the simulator (four panels: spam-outbreak, frozen-pileup, clamav-crash,
and a quiet Postfix panel), the exporter, the remediator, and, when they are
installed, a real Prometheus and Alertmanager, all on loopback with configs
generated into a temporary directory. Then it prints what each part sees every
few seconds, and follows the spam scene (:class:`SpamScene`): a compromised
mailbox floods web01, the ``contain-spam-sender`` rule asks for approval, the
demo approves it through the API and prints the record of the deleted messages.
Ctrl-C stops everything it started.

:class:`Stack` is also what the end-to-end test drives, so the demo and the
test exercise the same loop.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests import harness

REPO = Path(__file__).resolve().parent.parent
PANELS = {
    "web01": ("spam-outbreak", "exim"),
    "web02": ("frozen-pileup", "exim"),
    "web03": ("clamav-crash", "exim"),
    "web04": ("quiet", "postfix"),
}
PANEL_PASSWORD = "demo-panel-password"
WEBHOOK_TOKEN = "demo-webhook-token"
# The operator console signs people in with the web config's users (bcrypt): the demo's
# remediator gets a web config with this one user, printed in the banner.
CONSOLE_USER = "demo"
CONSOLE_PASSWORD = "demo-console-password"
# The spam-outbreak scene: a compromised mailbox on web01 floods the queue. The
# exporter's top senders show it, BrainyCPMailSenderSurge fires with its address in
# the `sender` label, and the contain-spam-sender rule asks for approval.
SPAM_PANEL = "web01"
COMPROMISED_SENDER = "newsletter@compromised-shop.example"
SPAM_BURST = 1500
# Messages a second the compromised mailbox keeps sending until the rule is approved
# (then its password is "reset"): more than the spam-outbreak panel's own arrivals
# (about 60 a second at the default time scale), so the sender holds most of the queue
# for as long as BrainyCPMailSenderSurge needs to fire.
SPAM_FLOOD_RATE = 90.0
REMEDIATED_ALERTS = (
    "BrainyCPMailFrozenMessages|BrainyCPClamAVDown|BrainyCPSpamAssassinDown|"
    "BrainyCPMailBouncesPiling|BrainyCPMailSenderSurge"
)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pick_port(preferred: int) -> int:
    """``preferred`` when it is free on loopback, else any free port."""
    if preferred and _port_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Ports:
    simulator: int = 18002
    exporter: int = 19863
    remediator: int = 19864
    prometheus: int = 19090
    alertmanager: int = 19093
    alertmanager_cluster: int = 0

    @classmethod
    def any_free(cls) -> Ports:
        """Free ports chosen by the kernel: for tests, which may run beside a demo or
        another test run that holds the preferred ones."""
        return cls(*(pick_port(0) for _ in range(5)))

    @classmethod
    def pick(cls) -> Ports:
        base = cls()
        return cls(
            simulator=pick_port(base.simulator),
            exporter=pick_port(base.exporter),
            remediator=pick_port(base.remediator),
            prometheus=pick_port(base.prometheus),
            alertmanager=pick_port(base.alertmanager),
        )


@dataclass
class Timing:
    """Short intervals so the loop closes within a couple of minutes."""

    time_scale: float = 60.0
    poll_interval: str = "3s"
    list_interval: str = "3s"
    scrape_interval: str = "2s"
    evaluation_interval: str = "2s"
    group_wait: str = "1s"
    group_interval: str = "5s"
    # Alertmanager re-sends a still-firing alert only this often; rules with rerun_after
    # act again on such a re-send, so keep it short enough for that to show in the demo.
    repeat_interval: str = "20s"
    cooldown: str = "20s"
    # The alert rules' `for` durations (alerts/demo-overrides.yml) are multiplied by this:
    # the full-loop tests shorten them so they wait out no demo-speed pauses.
    for_scale: float = 1.0


FAST_TIMING = Timing(
    poll_interval="1s",
    list_interval="1s",
    scrape_interval="1s",
    evaluation_interval="1s",
    group_wait="0s",
    group_interval="1s",
    for_scale=0.25,
)
"""The tests' timing: the same simulated world (time scale), every interval of the loop at
its shortest, and a quarter of the demo's `for` durations."""


@dataclass
class Stack:
    """Every process of the demo, with its generated config in ``workdir``."""

    workdir: Path
    ports: Ports = field(default_factory=Ports.pick)
    timing: Timing = field(default_factory=Timing)
    seed: int = 7
    with_prometheus: bool = True
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # ------------------------------------------------------------------ urls

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{getattr(self.ports, name)}"

    def panel_url(self, panel: str) -> str:
        return f"{self.url('simulator')}/panel/{panel}"

    # ------------------------------------------------------------------ config

    def write_configs(self) -> None:
        """Write the daemon config, secrets, Prometheus and Alertmanager configs."""
        w = self.workdir
        (w / "panel.pass").write_text(PANEL_PASSWORD + "\n")
        (w / "webhook.token").write_text(WEBHOOK_TOKEN + "\n")
        (w / "console.pass").write_text(CONSOLE_PASSWORD + "\n")
        for path in (w / "panel.pass", w / "webhook.token", w / "console.pass"):
            path.chmod(0o600)
        hashed = bcrypt.hashpw(CONSOLE_PASSWORD.encode(), bcrypt.gensalt(10)).decode()
        (w / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": {CONSOLE_USER: hashed}}))
        t = self.timing
        config = {
            "defaults": {
                "username": "admin",
                "password_file": str(w / "panel.pass"),
                "timeout": "5s",
            },
            "panels": {name: {"url": f"{self.panel_url(name)}/api/api.php"} for name in PANELS},
            "exporter": {
                "listen": f"127.0.0.1:{self.ports.exporter}",
                "interval": t.poll_interval,
                "list_interval": t.list_interval,
                "max_staleness": "1m",
                "top_senders": 5,
                "top_recipient_domains": 5,
            },
            "remediator": {
                "listen": f"127.0.0.1:{self.ports.remediator}",
                "auth": {"bearer_token_file": str(w / "webhook.token")},
                "state_file": str(w / "remediator.sqlite"),
                "rate_limit": {"max_actions": 30, "per": "10m"},
                "external_url": self.url("remediator"),
                "rules": [
                    {
                        # The shipped spam rule (docs/remediation.md): delete the surging
                        # sender's messages, exactly that address, once a person approves.
                        "name": "contain-spam-sender",
                        "matchers": ['alertname="BrainyCPMailSenderSurge"'],
                        "action": "delete_messages",
                        "select": {"sender": "{{ labels.sender }}"},
                        "approval": "required",
                        "max_messages": 20000,
                        "limit": "first",
                        "cooldown": t.cooldown,
                    },
                    {
                        "name": "clean-frozen",
                        "matchers": ['alertname="BrainyCPMailFrozenMessages"'],
                        "action": "delete_frozen",
                        "cooldown": t.cooldown,
                        "rerun_after": "30s",
                    },
                    {
                        "name": "restart-clamav",
                        "matchers": ['alertname="BrainyCPClamAVDown"'],
                        "action": "restart_service",
                        "daemon": "clamav",
                        "cooldown": t.cooldown,
                    },
                    {
                        "name": "restart-spamassassin",
                        "matchers": ['alertname="BrainyCPSpamAssassinDown"'],
                        "action": "restart_service",
                        "daemon": "spamassassin",
                        "cooldown": t.cooldown,
                    },
                    {
                        "name": "drop-old-bounces",
                        "matchers": ['alertname="BrainyCPMailBouncesPiling"'],
                        "action": "delete_messages",
                        "select": {"bounce": True, "older_than": "1h"},
                        "max_messages": 500,
                        "limit": "first",
                        "cooldown": "1m",
                    },
                ],
            },
        }
        (w / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        if self.with_prometheus:
            self._write_monitoring_configs()

    def _write_monitoring_configs(self) -> None:
        w, t = self.workdir, self.timing
        rules = w / "rules.yml"
        rules.write_text(demo_rules(t.for_scale))
        prometheus = {
            "global": {
                "scrape_interval": t.scrape_interval,
                "evaluation_interval": t.evaluation_interval,
            },
            "rule_files": [str(rules)],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{self.ports.alertmanager}"]}]}
                ]
            },
            "scrape_configs": [
                {
                    "job_name": "brainycp-mail-exporter",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.ports.exporter}"]}],
                },
                {
                    "job_name": "brainycp-mail-remediator",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.ports.remediator}"]}],
                    # The remediator's web config has users: they guard /metrics too.
                    "basic_auth": {
                        "username": CONSOLE_USER,
                        "password_file": str(w / "console.pass"),
                    },
                },
            ],
        }
        (w / "prometheus.yml").write_text(yaml.safe_dump(prometheus, sort_keys=False))
        alertmanager = {
            "route": {
                "receiver": "null",
                "group_by": ["alertname", "panel"],
                "group_wait": t.group_wait,
                "group_interval": t.group_interval,
                "repeat_interval": t.repeat_interval,
                "routes": [
                    {
                        "receiver": "brainycp-remediator",
                        "matchers": [f'alertname=~"{REMEDIATED_ALERTS}"'],
                        "continue": True,
                    }
                ],
            },
            "receivers": [
                {"name": "null"},
                {
                    "name": "brainycp-remediator",
                    "webhook_configs": [
                        {
                            "url": f"{self.url('remediator')}/webhook",
                            "send_resolved": True,
                            "max_alerts": 0,
                            "http_config": {
                                "authorization": {
                                    "type": "Bearer",
                                    "credentials_file": str(w / "webhook.token"),
                                }
                            },
                        }
                    ],
                },
            ],
        }
        (w / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager, sort_keys=False))

    # ------------------------------------------------------------------ processes

    def _start(
        self,
        name: str,
        args: list[str],
        ready: str | None,
        timeout: float = 30,
        auth: tuple[str, str] | None = None,
    ) -> None:
        log = self.workdir / f"{name}.log"
        # Its own session (tests.harness), so stop() reaches its children too.
        proc = self.processes[name] = harness.start(args, log=log, cwd=self.workdir)
        if ready:
            try:
                harness.wait_ready(ready, timeout=timeout, proc=proc, auth=auth)
            except harness.StartError as exc:
                raise harness.StartError(f"{name}: {exc}:\n{harness.log_tail(log, 2000)}") from None

    def start(self, on_step: Callable[[str], None] = lambda _: None) -> None:
        """Start every part; raise RuntimeError naming the part that failed."""
        self.write_configs()
        py = sys.executable
        panels: list[str] = []
        for name, (scenario, flavour) in PANELS.items():
            panels += ["--panel", f"{name}:{scenario}:{flavour}"]
        on_step("panel simulator")
        self._start(
            "simulator",
            [
                py, "-m", "brainycp.simulator.cli",
                "--listen", f"127.0.0.1:{self.ports.simulator}",
                "--users", f"admin:{PANEL_PASSWORD}:root",
                "--time-scale", str(self.timing.time_scale),
                "--seed", str(self.seed),
                *panels,
            ],
            f"{self.url('simulator')}/healthz",
        )  # fmt: skip
        config = str(self.workdir / "config.yml")
        on_step("exporter")
        self._start(
            "exporter",
            [py, "-m", "exporter.cli", "--config", config],
            f"{self.url('exporter')}/healthz",
        )
        on_step("remediator")
        self._start(
            "remediator",
            [py, "-m", "remediator.cli", "--config", config,
             "--web.config.file", str(self.workdir / "web.yml")],
            f"{self.url('remediator')}/healthz",
            auth=(CONSOLE_USER, CONSOLE_PASSWORD),
        )  # fmt: skip
        if not self.with_prometheus:
            return
        on_step("alertmanager")
        self._start(
            "alertmanager",
            harness.alertmanager_args(
                shutil.which("prometheus-alertmanager") or "alertmanager",
                self.workdir / "alertmanager.yml",
                self.workdir / "alertmanager-data",
            )(self.ports.alertmanager),
            f"{self.url('alertmanager')}/-/ready",
        )
        on_step("prometheus")
        self._start(
            "prometheus",
            harness.prometheus_args(
                "prometheus",
                self.workdir / "prometheus.yml",
                self.workdir / "prometheus-data",
                "--web.enable-lifecycle",
            )(self.ports.prometheus),
            f"{self.url('prometheus')}/-/ready",
        )

    def stop(self) -> None:
        """Stop every process this stack started (SIGTERM, then SIGKILL), newest first."""
        harness.stop_all(list(reversed(self.processes.values())), timeout=8)

    # ------------------------------------------------------------------ reading

    def get_json(self, url: str) -> Any:
        # The remediator's web-config user; the other URLs ignore the credentials.
        response = httpx.get(url, auth=(CONSOLE_USER, CONSOLE_PASSWORD), timeout=3)
        response.raise_for_status()
        return response.json()

    def sim_state(self, panel: str) -> dict[str, Any]:
        state: dict[str, Any] = self.get_json(f"{self.panel_url(panel)}/_sim/state")
        return state

    def firing_alerts(self) -> list[dict[str, Any]]:
        data = self.get_json(f"{self.url('prometheus')}/api/v1/alerts")
        return [a for a in data["data"]["alerts"] if a["state"] == "firing"]

    def spam_burst(self, count: int = SPAM_BURST) -> None:
        """The compromised mailbox of the spam scene: ``count`` messages from one sender."""
        response = httpx.post(
            f"{self.panel_url(SPAM_PANEL)}/_sim/queue",
            json={"add": count, "sender": COMPROMISED_SENDER, "recipient": "victim@example.com"},
            timeout=5,
        )
        response.raise_for_status()

    def remediator_post(self, path: str, body: Any = None) -> httpx.Response:
        """An authenticated POST to the remediator (approve, deny, pause, manual actions)."""
        return httpx.post(
            f"{self.url('remediator')}{path}",
            json=body,
            auth=(CONSOLE_USER, CONSOLE_PASSWORD),
            timeout=10,
        )

    def action(self, action_id: int) -> dict[str, Any]:
        data: dict[str, Any] = self.get_json(f"{self.url('remediator')}/actions/{action_id}")
        return data

    def awaiting_approval(self) -> list[dict[str, Any]]:
        data = self.get_json(f"{self.url('remediator')}/actions?outcome=awaiting_approval&limit=20")
        rows: list[dict[str, Any]] = data["actions"]
        return rows

    def actions(self, limit: int = 10) -> list[dict[str, Any]]:
        data = self.get_json(f"{self.url('remediator')}/actions?limit={limit}")
        actions: list[dict[str, Any]] = data["actions"]
        return actions


def demo_rules(for_scale: float = 1.0) -> str:
    """The shipped alert rules with the demo's short ``for`` durations and low thresholds;
    each ``for`` multiplied by ``for_scale`` (at least one second)."""
    build = REPO / "alerts" / "build.py"
    result = subprocess.run(
        [sys.executable, str(build), "--demo", "--stdout"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    if for_scale == 1.0:
        return result.stdout
    rules = yaml.safe_load(result.stdout)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{max(1, round(seconds(rule['for']) * for_scale))}s"
    return str(yaml.safe_dump(rules, sort_keys=False))


def seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as ``15s``, ``2m`` or ``1h30m``."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def _exported(stack: Stack) -> dict[tuple[str, str], float]:
    """``(metric, panel) -> value`` for the few exporter series the status lines show."""
    wanted = {
        "brainycp_up",
        "brainycp_mail_queue_messages",
        "brainycp_mail_queue_frozen_messages",
    }
    values: dict[tuple[str, str], float] = {}
    text = httpx.get(f"{stack.url('exporter')}/metrics", timeout=3).text
    for family in text_string_to_metric_families(text):
        if family.name in wanted:
            for sample in family.samples:
                values[(sample.name, sample.labels.get("panel", ""))] = sample.value
    return values


WIDTH = 120
"""Status lines fit a 120-column terminal."""
FINAL = frozenset(
    [
        "succeeded",
        "failed",
        "unverified",
        "dry_run",
        "skipped_nothing_to_do",
        "cancelled",
        "rejected",
        "interrupted",
        "skipped_duplicate",
        "skipped_cooldown",
        "skipped_rate_limit",
        "skipped_paused",
        "skipped_circuit_open",
        "expired",
        "denied",
    ]
)
TABLE_HEAD = (
    f"{'panel':<6} {'scenario':<19} {'queue':>6} {'frozen':>6} {'bounces':>7} "
    f"{'clamav':<8} {'spamd':<8}| exporter: {'up':>2} {'queue':>6} {'frozen':>6}"
)


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def panel_line(
    name: str,
    scenario: str,
    state: dict[str, Any] | None,
    exported: dict[tuple[str, str], float],
) -> str:
    """One panel under :data:`TABLE_HEAD`: the simulator's truth, then the exporter's view."""
    if state is None:
        sim = f"{name:<6} {'(simulator not answering)':<60}"
    else:
        queue, daemons = state["queue"], state["daemons"]
        sim = (
            f"{name:<6} {scenario:<19} {queue['messages']:>6} {queue['frozen']:>6} "
            f"{queue['bounces']:>7} {daemons['clamav']:<8} {daemons['spamassassin']:<8}"
        )
    up = exported.get(("brainycp_up", name))
    if up is None:
        seen = "no data yet"
    else:
        queued = exported.get(("brainycp_mail_queue_messages", name))
        frozen = exported.get(("brainycp_mail_queue_frozen_messages", name))
        seen = f"{up:>2g} {_number(queued):>6} {_number(frozen):>6}"
    return f"{sim}| {'':>10}{seen}"[:WIDTH]


def action_line(action: dict[str, Any]) -> str:
    """One finished action, cut to :data:`WIDTH`."""
    reason = f" ({action['reason']})" if action.get("reason") else ""
    line = (
        f"  action #{action['id']} {action['rule']} on {action['panel']}: "
        f"{action['outcome']}{reason}"
    )
    return line if len(line) <= WIDTH else line[: WIDTH - 3] + "..."


def new_action_lines(actions: list[dict[str, Any]], printed: set[int]) -> list[str]:
    """Lines for the finished actions not printed yet, oldest first; marks them printed."""
    lines = []
    for action in sorted(actions, key=lambda a: int(a["id"])):
        if action["outcome"] in FINAL and action["id"] not in printed:
            printed.add(action["id"])
            lines.append(action_line(action))
    return lines


def _say(text: str, **kwargs: Any) -> None:
    """Print a paragraph wrapped to :data:`WIDTH`, then a blank line."""
    print(textwrap.fill(text.strip(), WIDTH) + "\n", **kwargs)


def _status_lines(stack: Stack, started: float, printed: set[int]) -> list[str]:
    """A table of the panels (simulator and exporter), firing alerts, new finished actions."""
    lines = [f"--- t+{time.monotonic() - started:4.0f}s " + "-" * 60, TABLE_HEAD]
    try:
        exported = _exported(stack)
    except (httpx.HTTPError, ValueError):
        exported = {}
    for name, (scenario, flavour) in PANELS.items():
        try:
            state: dict[str, Any] | None = stack.sim_state(name)
        except (httpx.HTTPError, ValueError):
            state = None
        lines.append(panel_line(name, f"{scenario}/{flavour}", state, exported))
    if stack.with_prometheus:
        try:
            firing = stack.firing_alerts()
            names = sorted(
                f"{a['labels']['alertname']}{{{a['labels'].get('panel', '')}}}" for a in firing
            )
            text = "alerts firing: " + (", ".join(names) if names else "none")
        except (httpx.HTTPError, KeyError, ValueError):
            text = "alerts firing: (Prometheus not answering yet)"
        lines.extend(textwrap.wrap(text, WIDTH, subsequent_indent="  "))
    try:
        lines.extend(new_action_lines(stack.actions(limit=50), printed))
    except (httpx.HTTPError, KeyError, ValueError):
        lines.append("  remediator actions: (not answering)")
    return lines


class SpamScene:
    """Follows the spam rule's request: prints it, approves it on time, prints the record."""

    def __init__(
        self, stack: Stack, approve_after: float, flood_rate: float = SPAM_FLOOD_RATE
    ) -> None:
        self.stack = stack
        self.approve_after = approve_after
        self.flood_rate = flood_rate
        self.seen: dict[int, float] = {}
        self.reported: set[int] = set()
        self.flood_started: float | None = None
        self.flooded = 0

    def start(self) -> None:
        """The compromised mailbox starts: a burst, then a steady flood (see :meth:`step`)."""
        self.stack.spam_burst()
        self.flood_started = time.monotonic()

    def _flood(self) -> None:
        if self.flood_started is None:
            return
        due = int((time.monotonic() - self.flood_started) * self.flood_rate) - self.flooded
        if due > 0:
            due = min(due, 2000)
            self.stack.spam_burst(due)
            self.flooded += due

    def step(self) -> list[str]:
        lines: list[str] = []
        try:
            self._flood()
            waiting = [
                a for a in self.stack.awaiting_approval() if a["rule"] == "contain-spam-sender"
            ]
            for row in waiting:
                action_id = int(row["id"])
                if action_id not in self.seen:
                    self.seen[action_id] = time.monotonic()
                    detail = self.stack.action(action_id)
                    sender = detail.get("params", {}).get("select", {}).get("sender", "?")
                    url = f"{self.stack.url('remediator')}/actions/{action_id}"
                    lines += [
                        f">>> approval requested: action #{action_id} delete_messages of "
                        f"{sender} on {row['panel']}",
                        f"    decide in a browser: {url} (user {CONSOLE_USER}, password "
                        f"{CONSOLE_PASSWORD})",
                        f"    or: curl -X POST -u {CONSOLE_USER}:{CONSOLE_PASSWORD} {url}/approve",
                    ]
                elif self.approve_after and (
                    time.monotonic() - self.seen[action_id] >= self.approve_after
                ):
                    answer = self.stack.remediator_post(
                        f"/actions/{action_id}/approve",
                        {"by": "make demo", "comment": "the top sender is a compromised shop"},
                    )
                    lines.append(f">>> approved action #{action_id}: HTTP {answer.status_code}")
                    if answer.status_code == 200 and self.flood_started is not None:
                        self.flood_started = None
                        lines.append(
                            f">>> {COMPROMISED_SENDER}: password reset by the customer; "
                            "the flood stops"
                        )
            for action_id in self.seen:
                if action_id in self.reported:
                    continue
                detail = self.stack.action(action_id)
                if detail["outcome"] in ("pending", "running", "awaiting_approval"):
                    continue
                self.reported.add(action_id)
                lines.append(
                    f">>> action #{action_id}: {detail['outcome']} ({detail['reason']}); "
                    f"{detail.get('messages_total') or 0} messages recorded at "
                    f"{self.stack.url('remediator')}/actions/{action_id}"
                )
                for message in (detail.get("messages") or [])[:3]:
                    lines.append(
                        f"    {message['id']} from {message['sender']} "
                        f"{message['size_bytes']} bytes: {message['answer']}"
                    )
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            lines.append(f">>> spam scene: remediator not answering ({type(exc).__name__})")
        return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make demo", description="Run the whole brainycp-mail loop against the simulator."
    )
    parser.add_argument(
        "--duration", type=float, default=0, help="stop after N seconds (0: run until Ctrl-C)"
    )
    parser.add_argument("--interval", type=float, default=5, help="seconds between status lines")
    parser.add_argument(
        "--no-prometheus", action="store_true", help="run without Prometheus/Alertmanager"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--approve-after",
        type=float,
        default=15,
        help="approve the spam rule's request through the API after N seconds "
        "(0: never, approve it yourself in the operator console or with the printed curl line)",
    )
    args = parser.parse_args(argv)

    missing = [b for b in ("prometheus", "prometheus-alertmanager") if not shutil.which(b)]
    with_prometheus = not args.no_prometheus and not missing
    if missing and not args.no_prometheus:
        print(
            f"Not found: {', '.join(missing)}. Running simulator, exporter and remediator only.\n"
            "For the full loop install them: sudo make demo-deps "
            "(apt-get install prometheus prometheus-alertmanager)\n"
        )
    workdir = Path(tempfile.mkdtemp(prefix="brainycp-mail-demo-"))
    stack = Stack(workdir, with_prometheus=with_prometheus)
    stop_requested = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    # SIGHUP: the terminal closed. Stop everything rather than leave it running.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        stack.start(on_step=lambda name: print(f"starting {name} ...", flush=True))
        print(
            "\nbrainycp-mail demo is running (Ctrl-C stops everything):\n"
            f"  panel simulator   {stack.url('simulator')}/panel/web02/_sim/state  (panels: "
            f"{', '.join(PANELS)})\n"
            f"  exporter          {stack.url('exporter')}/  and  {stack.url('exporter')}/metrics\n"
            f"  operator console  {stack.url('remediator')}/console/  (sign in as "
            f"{CONSOLE_USER}, password {CONSOLE_PASSWORD})\n"
            # Every remediator page but /webhook and /healthz wants the web-config user;
            # the webhook wants Alertmanager's bearer token, which the user does not open.
            f"  remediator API    curl -u {CONSOLE_USER}:{CONSOLE_PASSWORD} "
            f"{stack.url('remediator')}/actions  (and /metrics, /)\n"
            f"  webhook           {stack.url('remediator')}/webhook  (Alertmanager's: "
            f"Authorization: Bearer {WEBHOOK_TOKEN})"
        )
        if with_prometheus:
            print(
                f"  Prometheus        {stack.url('prometheus')}/alerts\n"
                f"  Alertmanager      {stack.url('alertmanager')}/#/alerts"
            )
        print(f"  configs and logs  {workdir}\n", flush=True)
        _say(
            "Watch: web02's frozen messages pile up -> BrainyCPMailFrozenMessages fires -> "
            "Alertmanager calls the remediator -> delete_frozen -> frozen drops -> the alert "
            "resolves; web03's ClamAV stops -> restart -> running again.\n",
            flush=True,
        )
        _say(
            f"Spam scene: {SPAM_PANEL}'s mailbox {COMPROMISED_SENDER} floods the queue -> "
            "BrainyCPMailSenderSurge fires with its sender label -> contain-spam-sender asks "
            "for approval -> approved through POST /actions/ID/approve -> exactly that "
            "sender's messages are deleted -> every one is recorded at /actions/ID.\n",
            flush=True,
        )
        scene = SpamScene(stack, args.approve_after)
        if with_prometheus:  # without it no alert fires: no flood that nobody contains
            scene.start()
        started = time.monotonic()
        next_status = started
        printed: set[int] = set()
        while not stop_requested:
            now = time.monotonic()
            if args.duration and now - started >= args.duration:
                break
            for name, proc in stack.processes.items():
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; see {workdir}/{name}.log")
                    return 1
            if now >= next_status:
                print("\n".join(_status_lines(stack, started, printed)), flush=True)
                next_status = now + args.interval
            for line in scene.step():
                print(line, flush=True)
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"demo failed to start: {exc}", file=sys.stderr)
        return 1
    finally:
        print("\nstopping ...", flush=True)
        stack.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("stopped; nothing left running.")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "PANELS",
    "Ports",
    "SpamScene",
    "Stack",
    "Timing",
    "demo_rules",
    "new_action_lines",
    "panel_line",
]
