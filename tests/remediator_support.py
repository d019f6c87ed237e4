"""Shared pieces of the remediator tests: Alertmanager payloads, a config writer, a
simulator scene with a slow delete, and a small client for the running remediator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from brainycp.queue import QueueMessage, iter_messages
from remediator.app import Remediator
from remediator.journal import Journal
from remediator.metrics import Stats
from remediator.runner import Runner
from remediator.settings.config import parse_config
from tests.support import ANY_PORT, PYTHON, free_port, running, serving, sim_args, wait_until

__all__ = ["PYTHON", "running"]


TOKEN = "e2e-webhook-token-3f9c"


PANELS = ("frozen", "dry", "svc", "bounce", "reship", "nuke", "dup", "cool", "spam", "cancel")


def am_alert(
    alertname: str,
    panel: str | None,
    *,
    starts_at: str = "2026-11-25T08:00:00.000Z",
    status: str = "firing",
    fingerprint: bool = True,
    **labels: str,
) -> dict[str, Any]:
    """One alert as Alertmanager 0.25 sends it."""
    all_labels = {"alertname": alertname, "severity": "warning", **labels}
    if panel is not None:
        all_labels["panel"] = panel
    alert: dict[str, Any] = {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": f"{alertname} on {panel}"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-25T09:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
    }
    if fingerprint:
        alert["fingerprint"] = format(abs(hash(json.dumps(all_labels, sort_keys=True))), "016x")[
            :16
        ]
    return alert


def notification(*alerts: dict[str, Any], truncated: int = 0) -> dict[str, Any]:
    """A whole v4 webhook body around ``alerts``."""
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    common = dict(alerts[0]["labels"]) if alerts else {}
    return {
        "version": "4",
        "groupKey": '{}/{severity="warning"}:{alertname="' + common.get("alertname", "") + '"}',
        "truncatedAlerts": truncated,
        "status": status,
        "receiver": "brainycp-remediator",
        "groupLabels": {"alertname": common.get("alertname", "")},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def remediator_cmd(config: Path, *extra: str) -> list[str]:
    """The command line of a remediator on ``config``, listening on :data:`ANY_PORT`."""
    return [PYTHON, "-m", "remediator.cli", "--config", str(config), *ANY_PORT, *extra]


def write_config(
    path: Path,
    sim_port: int,
    listen_port: int | None,
    state: Path,
    rules: list[dict[str, Any]],
    *,
    panels: tuple[str, ...] = PANELS,
    bearer_token: str = TOKEN,
    **remediator: Any,
) -> Path:
    """A config for ``panels`` on one simulator, whose webhook takes ``bearer_token``;
    ``remediator`` overrides its keys. ``listen_port`` None leaves ``remediator.listen``
    out, for :func:`remediator_cmd`."""
    secret = path.parent / "panel.pw"
    secret.write_text("admin\n")
    token = path.parent / "webhook.token"
    token.write_text(bearer_token + "\n")
    config = {
        "defaults": {"username": "admin", "password_file": str(secret), "timeout": "10s"},
        "panels": {
            name: {"url": f"http://127.0.0.1:{sim_port}/panel/{name}/api/api.php"}
            for name in panels
        },
        "remediator": {
            **({} if listen_port is None else {"listen": f"127.0.0.1:{listen_port}"}),
            "auth": {"bearer_token_file": str(token)},
            "state_file": str(state),
            "max_concurrent_actions": 4,
            "action_timeout": "30s",
            "rate_limit": {"max_actions": 1000, "per": "1h"},
            # Tests stop remediators with actions in flight: do not wait for them long.
            "shutdown_grace": "1s",
            "rules": rules,
            **remediator,
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


RULES: list[dict[str, Any]] = [
    {"name": "clean-frozen", "matchers": ['alertname="BrainyCPMailFrozenMessages"'],
     "action": "delete_frozen", "cooldown": "2s"},
    {"name": "preview-frozen", "matchers": ['alertname="FrozenPreview"'],
     "action": "delete_frozen", "dry_run": True},
    {"name": "restart-clamav", "matchers": ['alertname="BrainyCPClamAVDown"'],
     "action": "restart_service", "daemon": "clamav", "cooldown": "0s"},
    {"name": "stop-spamd", "matchers": ['alertname="SpamdOff"'],
     "action": "stop_service", "daemon": "spamassassin"},
    {"name": "drop-old-bounces",
     "matchers": ['alertname="BrainyCPMailBouncesPiling"', 'severity=~"warning|critical"'],
     "action": "delete_messages", "select": {"bounce": True, "older_than": "1h"}},
    {"name": "reship-example", "matchers": ['alertname="Reship"'],
     "action": "reship_messages", "select": {"sender_domain": "example.org"}},
    {"name": "nuke", "matchers": ['alertname="NukeQueue"'],
     "action": "delete_all", "allow_destructive": True},
]  # fmt: skip


@dataclass
class Env:
    sim: str
    url: str
    client: httpx.Client
    tmp: Path

    def post(self, body: Any, **kw: Any) -> httpx.Response:
        return self.client.post(f"{self.url}/webhook", json=body, **kw)

    def state(self, panel: str) -> dict[str, Any]:
        return dict(httpx.get(f"{self.sim}/panel/{panel}/_sim/state", timeout=5).json())

    def sim_post(self, panel: str, what: str, body: dict[str, Any]) -> None:
        httpx.post(f"{self.sim}/panel/{panel}/_sim/{what}", json=body, timeout=5).raise_for_status()

    def clear_calls(self, panel: str) -> None:
        httpx.delete(f"{self.sim}/panel/{panel}/_sim/calls", timeout=5).raise_for_status()

    def calls(self, panel: str) -> list[tuple[str, str]]:
        return [
            (c["operation"], c["params"].get("command", "")) for c in self.state(panel)["calls"]
        ]

    def listing(self, panel: str) -> list[QueueMessage]:
        """The panel's queue as the remediator would read it (through the panel API)."""
        form = {"username": "admin", "password": "admin", "mailserver": "1", "list_msg": "1"}
        answer = httpx.post(f"{self.sim}/panel/{panel}/api/api.php", data=form, timeout=10).json()
        return list(iter_messages(answer.get("detail") or ""))

    def action(self, action_id: int) -> dict[str, Any]:
        rows = self.client.get(f"{self.url}/actions", params={"limit": 10000}).json()["actions"]
        return next(a for a in rows if a["id"] == action_id)

    def wait_final(self, action_id: int) -> dict[str, Any]:
        return wait_until(
            lambda: (a := self.action(action_id))["outcome"] not in ("pending", "running") and a,
            what=f"action {action_id} to finish",
        )


def start_sim(tmp: Path, port: int, *extra: str) -> list[str]:
    args = sim_args(port, "--seed", "7", *extra)
    for name in PANELS:
        args += ["--panel", f"{name}:quiet:exim"]
    return args


def only_result(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    return dict(result)


@contextmanager
def slow_delete_scene(tmp_path: Path) -> Iterator[tuple[Env, list[str]]]:
    """A simulator whose panel "bounce" holds two 2-hour-old bounces and answers
    ``controll_msg`` only after 30 s, so a delete stays in flight; and the command line
    of a remediator on a fresh journal, which the test starts itself."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with serving(start_sim(tmp_path, 0), log=tmp_path / "sim.log") as served:
        sim, port = served.url, free_port()  # the remediator restarts on the same port
        config = write_config(
            tmp_path / "config.yml", served.port, port, tmp_path / "s.sqlite", RULES
        )
        args = [PYTHON, "-m", "remediator.cli", "--config", str(config)]
        client = httpx.Client(headers=headers, timeout=10)
        env = Env(sim, f"http://127.0.0.1:{port}", client, tmp_path)
        env.sim_post("bounce", "pause", {"paused": True})
        env.sim_post("bounce", "queue", {"add": 2, "bounce": True, "age": 7200})
        env.sim_post("bounce", "fault", {"latency": 30, "operations": ["controll_msg"]})
        try:
            yield env, args
        finally:
            client.close()


def remediator(tmp_path: Path) -> Remediator:
    config = parse_config(
        {
            "panels": {
                "web01": {"url": "http://127.0.0.1:9", "username": "a", "password_env": "HOME"}
            },
            "remediator": {
                "insecure_no_auth": True,
                "state_file": str(tmp_path / "s.sqlite"),
                "rules": [
                    {"name": "preview", "matchers": ['alertname="X"'], "action": "delete_frozen",
                     "dry_run": True},
                ],
            },
        }
    )  # fmt: skip
    journal = Journal(config.remediator.state_file)
    stats = Stats()
    runner = Runner(journal, config.panels, {}, stats, max_concurrent=1, action_timeout=5)
    return Remediator(config, journal, runner, stats)


async def post_many(rem: Remediator, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=rem.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await asyncio.gather(*(client.post("/webhook", json=b) for b in bodies))
