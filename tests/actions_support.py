"""Shared test helpers moved out of test_remediator_actions.py, so that no test imports
another: a fake panel client with an Exim queue and two daemons."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from brainycp.config.loader import parse_shared
from brainycp.config.panels import PanelConfig
from brainycp.panel.answers import ActionResult, QueueListing, ServiceStatus
from brainycp.panel.errors import PanelAPIError, PanelResponseTooLarge
from remediator.settings.rules import Rule


@dataclass
class Msg:
    id: str
    age_minutes: int = 10
    size: int = 500
    sender: str = "alice@example.org"
    recipient: str = "bob@example.net"
    frozen: bool = False


def panel_config(**extra: Any) -> PanelConfig:
    settings = {"url": "http://p:8002", "username": "a", "password": "b", **extra}
    return parse_shared({"panels": {"p": settings}}).panels["p"]


@dataclass
class FakePanel:
    """Just enough of PanelClient: an Exim queue and two daemons; logs every call."""

    queue: list[Msg] = field(default_factory=list)
    daemons: dict[str, str] = field(default_factory=lambda: {"clamav": "running"})
    calls: list[tuple[str, ...]] = field(default_factory=list)
    frozen_applicable: bool = True
    stuck_on: bool = False
    listing_too_large: bool = False
    panel: PanelConfig = field(default_factory=panel_config)

    async def list_msg(self) -> QueueListing:
        self.calls.append(("list_msg",))
        if self.listing_too_large:
            raise PanelResponseTooLarge("p", "list_msg", "answer over max_response_bytes")
        lines = []
        for m in self.queue:
            sender = "<>" if m.sender == "<>" else f"<{m.sender}>"
            frozen = " *** frozen ***" if m.frozen else ""
            lines += [f"{m.age_minutes}m {m.size} {m.id} {sender}{frozen}", f"  {m.recipient}", ""]
        return QueueListing("\n".join(lines), not self.queue, 0)

    async def list_msg_body(self) -> bytes:
        listing = await self.list_msg()
        return json.dumps({"error": 0, "detail": listing.detail}).encode()

    async def count_msg(self) -> int:
        self.calls.append(("count_msg",))
        return len(self.queue)

    async def delete_frozen_msg(self) -> ActionResult:
        self.calls.append(("delete_frozen_msg",))
        if not self.frozen_applicable:
            return ActionResult(False, "", "no frozen")
        self.queue = [m for m in self.queue if not m.frozen]
        return ActionResult(True, "", "")

    async def delete_all_msg(self, force: bool = False) -> ActionResult:
        self.calls.append(("delete_all_msg", str(force)))
        self.queue = []
        return ActionResult(True, "", "")

    async def controll_msg(self, message_id: str, command: str) -> ActionResult:
        self.calls.append(("controll_msg", message_id, command))
        if not any(m.id == message_id for m in self.queue):
            raise PanelAPIError("p", "controll_msg", 1, "no such message")
        self.queue = [m for m in self.queue if m.id != message_id]
        return ActionResult(True, "", "")

    async def service(self, daemon: str, command: str) -> ServiceStatus:
        self.calls.append((daemon, command))
        if command == "on" and not self.stuck_on:
            self.daemons[daemon] = "running"
        elif command == "off":
            self.daemons[daemon] = "stopped"
        state = self.daemons[daemon]
        return ServiceStatus(daemon, state, state)  # type: ignore[arg-type]


def rule(action: str, **kw: Any) -> Rule:
    return Rule.model_validate({"name": "r", "matchers": ['alertname="X"'], "action": action, **kw})


def mid(n: int) -> str:
    return f"1xW6VZ-{n:06d}-1S"
