"""The action registry: every registered action is documented, runs, is verified by its
read-back, and is what the config, the manual requests and the console go by."""

from __future__ import annotations

import asyncio
import copy
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from brainycp.panel.answers import QueueListing, ServiceStatus
from brainycp.panel.errors import PanelTimeout
from brainycp.queue.worker import ReadingFailed
from remediator.actions import ACTIONS, DESTRUCTIVE, IDEMPOTENT, taking
from remediator.actions import base as actions_base
from remediator.actions.base import EXCLUSIVE, PARAMS, Outcome
from remediator.app import Remediator
from remediator.console.manual_form import ManualForm
from remediator.journal import Journal
from remediator.manual import ManualError, parse_request
from remediator.metrics import Stats
from remediator.notify import matching_now
from remediator.runner import Runner
from remediator.settings.config import parse_config
from remediator.settings.rules import ManualSettings, Rule
from tests.actions_support import FakePanel, Msg, mid, rule
from tests.support import REPO

DOCS = REPO / "docs"

# Per action: what its rule sets, and a panel on which it has work to do.
SCENARIOS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "delete_frozen": ({}, {"queue": [Msg(mid(1), frozen=True), Msg(mid(2))]}),
    "delete_all": ({"allow_destructive": True}, {"queue": [Msg(mid(1)), Msg(mid(2))]}),
    "start_service": ({"daemon": "clamav"}, {"daemons": {"clamav": "stopped"}}),
    "stop_service": ({"daemon": "clamav"}, {"daemons": {"clamav": "running"}}),
    "restart_service": ({"daemon": "clamav"}, {"daemons": {"clamav": "stopped"}}),
    "delete_messages": ({"select": {"sender": "alice@example.org"}}, {"queue": [Msg(mid(1))]}),
    "reship_messages": ({"select": {"sender": "alice@example.org"}}, {"queue": [Msg(mid(1))]}),
}
WRITES = ("delete_frozen_msg", "delete_all_msg", "controll_msg", "on", "off")


class ReadBackFails(FakePanel):
    """A panel that stops answering reads once the action has changed something."""

    def _read(self, operation: str) -> None:
        if any(call[0] in WRITES or call[-1] in WRITES for call in self.calls):
            raise PanelTimeout("p", operation, "no answer in 10s")

    async def list_msg(self) -> QueueListing:
        self._read("list_msg")
        return await super().list_msg()

    async def count_msg(self) -> int:
        self._read("count_msg")
        return await super().count_msg()

    async def service(self, daemon: str, command: str) -> ServiceStatus:
        if command == "status":
            self._read(daemon)
        return await super().service(daemon, command)


def test_every_registered_action_has_a_run_and_verify_scenario_here() -> None:
    # A new action registers here too: its run and its read-back are tested below.
    assert set(SCENARIOS) == set(ACTIONS)


def scenario(name: str, panel_type: type[FakePanel] = FakePanel) -> tuple[FakePanel, Rule]:
    """A fresh panel on which ``name`` has work to do, and its rule."""
    extra, state = SCENARIOS[name]
    return panel_type(**copy.deepcopy(state)), rule(name, **extra)


@pytest.mark.parametrize("name", list(ACTIONS))
def test_every_registered_action_runs_and_its_read_back_verifies_it(name: str) -> None:
    panel, asked = scenario(name)
    out: Outcome = asyncio.run(ACTIONS[name].run(panel, asked, _nothing))  # type: ignore[arg-type]
    assert out.outcome == "succeeded", (name, out)
    # The last call is the read-back that verified the change.
    assert panel.calls[-1][0] in ("list_msg", "count_msg") or panel.calls[-1][1] == "status"
    failing, asked = scenario(name, ReadBackFails)
    out = asyncio.run(ACTIONS[name].run(failing, asked, _nothing))  # type: ignore[arg-type]
    assert out.outcome == "unverified", (name, out)
    assert "the read-back failed: timeout" in out.reason


@pytest.mark.parametrize("name", list(ACTIONS))
def test_every_registered_action_previews_without_changing_anything(name: str) -> None:
    panel, asked = scenario(name)
    seen: dict[str, Any] = asyncio.run(ACTIONS[name].preview(panel, asked))  # type: ignore[arg-type]
    assert seen["verdict"]
    assert not [c for c in panel.calls if c[0] in WRITES or c[-1] in WRITES], panel.calls


async def _nothing(records: object, total: int | None) -> None:
    return None


def test_every_registered_action_is_documented() -> None:
    remediation = (DOCS / "remediation.md").read_text()
    table = remediation[remediation.index("| action | panel calls |") :].split("\n\n")[0]
    # The first cell names the actions, then (in brackets) what they take.
    cells = [row.split("|")[1].split("(")[0] for row in table.splitlines()[2:]]
    documented = {name for cell in cells for name in re.findall(r"`([a-z_]+)`", cell)}
    assert documented == set(ACTIONS)
    config = (DOCS / "configuration.md").read_text()
    (row,) = [line for line in config.splitlines() if line.startswith("| `action` |")]
    assert set(re.findall(r"`([a-z_]+)`", row)) - {"action"} == set(ACTIONS)


def test_a_rule_takes_daemon_force_and_select_exactly_where_the_registry_says() -> None:
    values = {"daemon": "clamav", "force": True, "select": {"sender": "a@b.example"}}
    for name, kind in ACTIONS.items():
        for param in EXCLUSIVE:
            spec = {k: v for k, v in values.items() if k in kind.needs}
            spec[param] = values[param]
            try:
                rule(name, allow_destructive=True, **spec)
            except ValidationError as exc:
                assert param not in kind.takes, (name, param, exc)
                assert f"{param}:" in str(exc)
            else:
                assert param in kind.takes, (name, param)
    assert set(EXCLUSIVE) <= set(PARAMS)


def test_destructive_actions_need_allow_destructive_in_the_config_and_the_request() -> None:
    assert set(DESTRUCTIVE) == {"delete_all", "delete_messages"}
    panels = {"p": object()}
    for name, kind in ACTIONS.items():
        if kind.destructive:
            with pytest.raises(ValidationError, match="allow_destructive"):
                ManualSettings(actions=[name])
        settings = ManualSettings(actions=[name], allow_destructive=True)
        body: dict[str, Any] = {"panel": "p", "action": name, **SCENARIOS[name][0]}
        body.pop("allow_destructive", None)
        if kind.destructive:
            with pytest.raises(ManualError, match="allow_destructive"):
                parse_request(body, settings, panels)
            body["allow_destructive"] = True
        assert parse_request(body, settings, panels).rule.action == name


def test_the_console_form_sends_what_each_action_takes() -> None:
    form = {"panel": "p", "daemon": "clamav", "sender": "a@b.example", "max_messages": "5"}
    for name, kind in ACTIONS.items():
        body = ManualForm.from_fields({**form, "action": name}).request("ops", dry_run=True)
        sent = {k for k in PARAMS if k in body}
        assert sent == set(kind.takes) - {"force"}, (name, sent)


def test_only_idempotent_actions_are_resumed_after_a_crash() -> None:
    assert set(IDEMPOTENT) == {n for n, k in ACTIONS.items() if k.idempotent}
    assert not set(IDEMPOTENT) & set(DESTRUCTIVE)
    assert set(taking("daemon")) <= set(IDEMPOTENT)


def test_a_rule_for_an_unknown_action_is_refused() -> None:
    with pytest.raises(ValidationError):
        Rule.model_validate({"name": "r", "matchers": ['alertname="X"'], "action": "nuke"})


class DeadReaders:
    """The listing readers' pool after its worker died: every reading fails."""

    async def read(self, job: object, body: bytes) -> None:
        raise ReadingFailed("internal", "the reader's process died")


def test_a_listing_no_reader_can_read_is_a_reason_in_every_preview(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manual dry run answers 502 with the reason, an approval request's notification says
    the count is unknown and why: neither turns into a 500 or a lost notification."""
    monkeypatch.setattr(actions_base, "shared_readers", DeadReaders)
    config = parse_config(
        {
            "panels": {"web01": {"url": "http://127.0.0.1:9", "username": "a", "password": "b"}},
            "remediator": {"insecure_no_auth": True, "state_file": str(tmp_path / "s.sqlite")},
        }
    )
    journal = Journal(config.remediator.state_file)
    runner = Runner(journal, config.panels, {}, Stats(), max_concurrent=1, action_timeout=5)
    rem = Remediator(config, journal, runner, Stats())
    monkeypatch.setattr(runner, "client", lambda panel: FakePanel())
    why = "internal: list_msg: the reader's process died"

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=rem.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            body = {"panel": "web01", "action": "delete_frozen", "dry_run": True}
            return await client.post("/actions", json=body)

    try:
        answer = asyncio.run(scenario())
        assert answer.status_code == 502 and answer.json() == {"error": why}
        counted = asyncio.run(matching_now(FakePanel(), rule("delete_frozen"), 5.0))  # type: ignore[arg-type]
        assert counted == {"matching": None, "matching_error": why}
    finally:
        journal.close()


def test_a_config_names_the_registered_actions_when_one_is_unknown() -> None:
    # The config's list of actions is the registry's: a new action needs no edit there.
    with pytest.raises(ValidationError) as raised:
        Rule.model_validate({"name": "r", "matchers": ['alertname="X"'], "action": "nuke"})
    assert f"must be one of {', '.join(ACTIONS)}" in str(raised.value)
    with pytest.raises(ValidationError, match="must be one of delete_frozen, delete_all"):
        ManualSettings(actions=["delete_frozen", "nuke"])
    assert ManualSettings().actions == [
        name
        for name, kind in ACTIONS.items()
        if not kind.destructive and "select" not in kind.takes
    ]
