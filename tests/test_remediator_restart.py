"""Kill -9 and SIGTERM during bursts of destructive actions, against the real processes.

Every accepted action must run exactly once, or be ``interrupted`` only if it had
reached the panel. The simulator's call log is the witness: each panel runs one
action at a time, and a claimed action's journal window ``[started_at,
finished_at]`` must hold its panel calls. A call outside every window is a run
the journal does not know of (a second run, or a run before the claim), and an
``interrupted`` row without ``started_at`` is an action dropped without reason.
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.remediator_support import TOKEN, am_alert, notification, only_result, write_config
from tests.support import PYTHON, free_port, running, sim_args, wait_until

# Every test here starts a process (the in-process tier, make test-fast, skips them).
pytestmark = pytest.mark.e2e

PANELS = ("p1", "p2", "p3")
RULES: list[dict[str, Any]] = [
    {"name": "drop-bounces", "matchers": ['alertname="Bounces"'], "action": "delete_messages",
     "select": {"bounce": True, "older_than": "1h"}, "cooldown": "0s"},
    {"name": "reship", "matchers": ['alertname="Reship"'], "action": "reship_messages",
     "select": {"sender_domain": "example.org"}, "cooldown": "0s"},
    {"name": "nuke", "matchers": ['alertname="Nuke"'], "action": "delete_all",
     "allow_destructive": True, "cooldown": "0s"},
]  # fmt: skip
DESTRUCTIVE_CALLS = ("controll_msg", "delete_all_msg")


@dataclass
class Scene:
    sim: str
    url: str
    args: list[str]
    state: Path
    log: Path
    client: httpx.Client

    def fill(self) -> None:
        for panel in PANELS:
            self.sim_post(panel, "queue", {"add": 3, "bounce": True, "age": 7200})
            self.sim_post(panel, "queue", {"add": 2, "sender": "a@example.org", "age": 600})
            self.sim_post(panel, "queue", {"add": 2, "sender": "b@example.com", "age": 60})

    def sim_post(self, panel: str, what: str, body: dict[str, Any]) -> None:
        httpx.post(f"{self.sim}/panel/{panel}/_sim/{what}", json=body, timeout=5).raise_for_status()

    def latency(self, seconds: float) -> None:
        for panel in PANELS:
            if seconds:
                self.sim_post(panel, "fault", {"latency": seconds})
            else:
                httpx.delete(f"{self.sim}/panel/{panel}/_sim/fault", timeout=5).raise_for_status()

    def calls(self, panel: str) -> list[dict[str, Any]]:
        state = httpx.get(f"{self.sim}/panel/{panel}/_sim/state", timeout=5).json()
        return list(state["calls"])

    def destructive_in_flight(self) -> bool:
        return any(c["operation"] in DESTRUCTIVE_CALLS for p in PANELS for c in self.calls(p))

    def burst(self, episode: str) -> list[int]:
        """Per panel: delete bounces, reship, delete all, delete bounces again (new episodes)."""
        ids = []
        for panel in PANELS:
            for n, name in enumerate(("Bounces", "Reship", "Nuke", "Bounces")):
                alert = am_alert(name, panel, starts_at=f"{episode}-{n}")
                result = only_result(
                    self.client.post(f"{self.url}/webhook", json=notification(alert))
                )
                assert result["outcome"] == "pending", result
                ids.append(result["action_id"])
        return ids

    def rows(self) -> dict[int, dict[str, Any]]:
        rows = self.client.get(f"{self.url}/actions", params={"limit": 10000}).json()["actions"]
        return {row["id"]: row for row in rows}

    def journal_rows(self) -> dict[int, tuple[str, float | None]]:
        """The journal read directly, while no remediator runs: id -> (outcome, started_at)."""
        db = sqlite3.connect(f"file:{self.state}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT id, outcome, started_at FROM actions").fetchall()
        finally:
            db.close()
        return {row[0]: (row[1], row[2]) for row in rows}

    def all_final(self, ids: list[int]) -> dict[int, dict[str, Any]] | None:
        rows = self.rows()
        if all(rows[i]["outcome"] not in ("pending", "running") for i in ids):
            return rows
        return None


@contextmanager
def scene(tmp_path: Path, **remediator: Any) -> Iterator[Scene]:
    sim_port, port = free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    state = tmp_path / "journal.sqlite"
    config = write_config(
        tmp_path / "config.yml", sim_port, port, state, RULES, panels=PANELS, **remediator
    )
    args = sim_args(sim_port, "--seed", "3")
    for name in PANELS:
        args += ["--panel", f"{name}:quiet:exim"]
    with (
        running(args, log=tmp_path / "sim.log", ready_url=f"{sim}/healthz"),
        httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as client,
    ):
        s = Scene(
            sim,
            f"http://127.0.0.1:{port}",
            [PYTHON, "-m", "remediator.cli", "--config", str(config)],
            state,
            tmp_path / "remediator.log",
            client,
        )
        for panel in PANELS:
            s.sim_post(panel, "pause", {"paused": True})
            httpx.delete(f"{sim}/panel/{panel}/_sim/calls", timeout=5).raise_for_status()
        yield s


def check_exactly_once(s: Scene, rows: dict[int, dict[str, Any]], accepted: list[int]) -> None:
    """Every accepted action ran once (or, interrupted, had started); every call is owned."""
    assert set(accepted) <= set(rows)
    for panel in PANELS:
        mine = [rows[i] for i in accepted if rows[i]["panel"] == panel]
        windows = []
        for row in mine:
            outcome = row["outcome"]
            assert outcome not in ("pending", "running", "cancelled"), row
            assert row["started_at"] is not None, f"never started but {outcome}: {row}"
            windows.append((row["started_at"], row["finished_at"], row))
        windows.sort(key=lambda w: w[0])
        for (_, end, _), (start, _, row) in itertools.pairwise(windows):
            assert end <= start, f"two actions at once on {panel}: {row}"
        owned: dict[int, list[str]] = {row["id"]: [] for row in mine}
        for call in s.calls(panel):
            owners = [w[2]["id"] for w in windows if w[0] <= call["at"] <= w[1]]
            assert len(owners) == 1, f"call {call} on {panel} owned by {owners}"
            owned[owners[0]].append(call["operation"])
        for row in mine:
            ops = owned[row["id"]]
            if row["outcome"] == "interrupted":
                continue  # any prefix of its calls, possibly none: it stopped mid-way
            # One run: one opening read and at most one closing read.
            first = "count_msg" if row["action"] == "delete_all" else "list_msg"
            assert ops and ops[0] == first, (row, ops)
            assert ops.count(first) <= 2, (row, ops)
            assert ops.count("delete_all_msg") <= 1, (row, ops)


def test_kill_9_during_bursts_runs_each_accepted_action_once(tmp_path: Path) -> None:
    with scene(tmp_path) as s:
        accepted: list[int] = []
        interrupted_seen = 0
        for round_ in ("r1", "r2"):
            s.fill()
            s.latency(0.15)
            with running(s.args, log=s.log, ready_url=f"{s.url}/healthz") as proc:
                accepted += s.burst(round_)
                wait_until(s.destructive_in_flight, what="a destructive call in flight")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            before = s.journal_rows()
            never_started = [i for i in accepted if before[i][0] == "pending"]
            assert never_started, "the burst should leave actions queued at the kill"
            s.latency(0)
            with running(s.args, log=s.log, ready_url=f"{s.url}/healthz"):
                rows = wait_until(partial(s.all_final, list(accepted)), what="every action to end")
            for action_id in never_started:
                assert rows[action_id]["outcome"] != "interrupted", rows[action_id]
            interrupted_seen += sum(rows[i]["outcome"] == "interrupted" for i in accepted)
            check_exactly_once(s, rows, accepted)
        # The kill landed mid-action each round: those (and only those) are interrupted.
        assert interrupted_seen >= 2


def test_sigterm_drains_running_actions_and_keeps_queued_ones_for_the_next_start(
    tmp_path: Path,
) -> None:
    with scene(tmp_path, shutdown_grace="20s") as s:
        s.fill()
        s.latency(0.15)
        with running(s.args, log=s.log, ready_url=f"{s.url}/healthz") as proc:
            accepted = s.burst("t1")
            wait_until(s.destructive_in_flight, what="a destructive call in flight")
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(30) == 0
        after_stop = s.journal_rows()
        outcomes = {after_stop[i][0] for i in accepted}
        # Drained: nothing left running; what had started finished; the rest waits.
        assert "running" not in outcomes and "interrupted" not in outcomes
        assert "pending" in outcomes and outcomes - {"pending"}
        assert all(after_stop[i][1] is None for i in accepted if after_stop[i][0] == "pending")
        s.latency(0)
        with running(s.args, log=s.log, ready_url=f"{s.url}/healthz"):
            rows = wait_until(lambda: s.all_final(accepted), what="every action to end")
        assert not [rows[i] for i in accepted if rows[i]["outcome"] == "interrupted"]
        check_exactly_once(s, rows, accepted)
        assert "stopping; running actions get up to 20s" in s.log.read_text()


def test_sigterm_cuts_off_an_action_at_shutdown_grace_and_exits_0(tmp_path: Path) -> None:
    with scene(tmp_path, shutdown_grace="0.5s") as s:
        s.fill()
        s.sim_post("p1", "fault", {"latency": 600, "operations": ["controll_msg"]})
        with running(s.args, log=s.log, ready_url=f"{s.url}/healthz") as proc:
            stuck = only_result(
                s.client.post(
                    f"{s.url}/webhook", json=notification(am_alert("Bounces", "p1", starts_at="g"))
                )
            )["action_id"]
            wait_until(s.destructive_in_flight, what="the delete in flight")
            os.kill(proc.pid, signal.SIGTERM)
            # The panel would answer in 600 s: the grace, not the panel, ends the process.
            assert proc.wait(30) == 0
        assert s.journal_rows()[stuck][0] == "running"
        with running(s.args, log=s.log, ready_url=f"{s.url}/healthz"):
            row = s.rows()[stuck]
        assert row["outcome"] == "interrupted" and row["started_at"] is not None
        assert "1 cut off at shutdown_grace" in s.log.read_text()


@pytest.mark.parametrize("grace", ["-1s", ".nan", "inf"])
def test_shutdown_grace_must_be_a_finite_duration(tmp_path: Path, grace: str) -> None:
    config = write_config(
        tmp_path / "c.yml", 1, free_port(), tmp_path / "s.sqlite", RULES, panels=PANELS
    )
    config.write_text(config.read_text().replace("shutdown_grace: 1s", f"shutdown_grace: {grace}"))
    out = subprocess.run(
        [PYTHON, "-m", "remediator.cli", "--config", str(config), "--check-config"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2 and "remediator.shutdown_grace" in out.stderr, out.stderr
