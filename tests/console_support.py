"""Pieces of the browser tests: Debian's chromium under Playwright, a scene of real
processes (simulator, remediator with a web config, exporter), a hostile panel and a
hostile site, and where screenshots go.

Screenshots go to the test's temporary directory; with
``BRAINYCP_SCREENSHOTS=docs/images`` the README's pictures are made again there.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from tests.remediator_support import TOKEN
from tests.support import PYTHON, free_port, require_binary, require_e2e, running, sim_args

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
USER, PASSWORD = "alice", "console-test-password"
SIM_PANELS = ("web01", "web02", "web03", "web04")
HOSTILE_TEXT = "<script>alert(1)</script><img src=x onerror=alert(2)>\n[approve](http://evil)"
"""What the hostile panel says in ``mess``: markup, a line break, a forged link."""


def playwright_or_skip() -> Any:
    """``playwright.sync_api``, and the path of Debian's chromium; skip or fail (CI) without."""
    try:
        from playwright import sync_api
    except ImportError:
        reason = "the playwright package is not installed (pip install -e '.[dev]')"
        if require_e2e():
            pytest.fail(reason + " and BRAINYCP_REQUIRE_E2E=1")
        pytest.skip(reason)
    if not Path(CHROMIUM).exists():
        require_binary("chromium", "apt-get install chromium")
    return sync_api


def basic(user: str = USER, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def screenshot_dir(tmp: Path) -> Path:
    """Where screenshots go: ``$BRAINYCP_SCREENSHOTS`` when set, else ``tmp``."""
    wanted = os.environ.get("BRAINYCP_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that logs nothing and answers whole bodies."""

    def answer(self, content_type: str, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class HostileTextPanel(QuietHandler):
    """A panel whose every answer is an API error carrying ``mess`` (:data:`HOSTILE_TEXT`)."""

    mess = HOSTILE_TEXT

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.answer("application/json", json.dumps({"error": 7, "mess": self.mess}).encode())


class _EvilHandler(QuietHandler):
    """Another site: a page with forms that post to the remediator (no script needed)."""

    target = ""

    def do_GET(self) -> None:
        page = (
            "<!doctype html><title>win a prize</title>"
            f"<form method=post action='{self.target}/console/pause'>"
            "<input name=reason value=gotcha><button id=console>prize</button></form>"
            f"<form method=post action='{self.target}/pause' enctype=text/plain>"
            "<input name=by value=mallory><button id=api>prize 2</button></form>"
        ).encode()
        self.answer("text/html", page)


@contextmanager
def serve_thread(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """``handler`` on a loopback port of its own (in a thread); yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Scene:
    sim: str
    url: str
    exporter: str
    tmp: Path

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": basic()}, timeout=10)

    def webhook(self, *alerts: dict[str, Any]) -> list[dict[str, Any]]:
        from tests.remediator_support import notification

        answer = httpx.post(
            f"{self.url}/webhook", json=notification(*alerts),
            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10,
        )  # fmt: skip
        answer.raise_for_status()
        results: list[dict[str, Any]] = answer.json()["results"]
        return results

    def add_mail(self, panel: str, count: int, sender: str, **extra: Any) -> None:
        body = {"add": count, "sender": sender, "recipient": "rcpt@example.com", **extra}
        httpx.post(f"{self.sim}/panel/{panel}/_sim/queue", json=body, timeout=5).raise_for_status()

    def senders(self, panel: str) -> list[str]:
        from brainycp.queue import iter_messages

        form = {"username": "admin", "password": "admin", "mailserver": "1", "list_msg": "1"}
        answer = httpx.post(f"{self.sim}/panel/{panel}/api/api.php", data=form, timeout=10)
        return [m.sender for m in iter_messages(answer.json().get("detail") or "")]


def write_scene_config(tmp: Path, sim_port: int, hostile_port: int, rem: int, exp: int) -> Path:
    (tmp / "panel.pw").write_text("admin\n")
    (tmp / "webhook.token").write_text(TOKEN + "\n")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    (tmp / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": {USER: hashed}}))
    panels = {n: {"url": f"http://127.0.0.1:{sim_port}/panel/{n}/api/api.php"} for n in SIM_PANELS}
    panels["hostile"] = {"url": f"http://127.0.0.1:{hostile_port}/api/api.php"}
    config = {
        "defaults": {"username": "admin", "password_file": str(tmp / "panel.pw"), "timeout": "5s"},
        "panels": panels,
        "exporter": {"listen": f"127.0.0.1:{exp}", "interval": "1s", "list_interval": "1s",
                     "top_senders": 3, "grafana_url": "https://grafana.example.net"},
        "remediator": {
            "listen": f"127.0.0.1:{rem}",
            "external_url": f"http://127.0.0.1:{rem}",
            "auth": {"bearer_token_file": str(tmp / "webhook.token")},
            "state_file": str(tmp / "journal.sqlite"),
            "rate_limit": {"max_actions": 1000, "per": "1h"},
            "shutdown_grace": "1s",
            "manual": {"actions": ["delete_messages", "delete_frozen", "restart_service"],
                       "allow_destructive": True},
            "rules": [{
                "name": "contain-sender",
                "matchers": ['alertname="SenderSurge"'],
                "action": "delete_messages",
                "select": {"sender": "{{ labels.sender }}"},
                "approval": "required",
                "max_messages": 1000,
                "limit": "first",
                "cooldown": "0s",
            }],
        },
    }  # fmt: skip
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def scene(tmp: Path) -> Iterator[Scene]:
    """Simulator, hostile panel, remediator (web config with :data:`USER`) and exporter."""
    sim_port, rem, exp = free_port(), free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    args = sim_args(sim_port, "--seed", "7", "--time-scale", "1")
    for name in SIM_PANELS:
        args += ["--panel", f"{name}:quiet:exim"]
    with (
        serve_thread(HostileTextPanel) as hostile_port,
        running(args, log=tmp / "sim.log", ready_url=f"{sim}/healthz"),
    ):
        config = write_scene_config(tmp, sim_port, hostile_port, rem, exp)
        for name in SIM_PANELS:  # quiet: no arrivals of its own during the test
            httpx.post(f"{sim}/panel/{name}/_sim/pause", json={"paused": True}).raise_for_status()
        remediator = [PYTHON, "-m", "remediator.cli", "--config", str(config),
                      "--web.config.file", str(tmp / "web.yml")]  # fmt: skip
        exporter = [PYTHON, "-m", "exporter.cli", "--config", str(config)]
        with (
            running(remediator, log=tmp / "remediator.log"),
            running(
                exporter, log=tmp / "exporter.log", ready_url=f"http://127.0.0.1:{exp}/healthz"
            ),
        ):
            url = f"http://127.0.0.1:{rem}"
            from tests.harness import wait_ready

            wait_ready(f"{url}/healthz", auth=(USER, PASSWORD), timeout=20)
            yield Scene(sim, url, f"http://127.0.0.1:{exp}", tmp)
