"""The exporter's command line and poller without a panel: config checks, exit codes,
concurrency and scheduling, with an in-process fake transport where a panel is needed."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from brainycp import __version__
from exporter.poller import MAX_START_SPREAD, Poller, initial_state
from exporter.settings import parse_config
from tests.harness import taken_port
from tests.support import PYTHON, REPO


def exporter(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "exporter.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )


def write_config(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def panels_config(count: int, **exporter_keys: Any) -> dict[str, Any]:
    return {
        "defaults": {"username": "admin", "password_env": "BRAINYCP_TEST_PW", "timeout": "2s"},
        "panels": {
            f"p{i:02d}": {"url": f"http://127.0.0.1:9/panel/p{i:02d}/api/api.php"}
            for i in range(count)
        },
        "exporter": exporter_keys,
    }


@pytest.mark.e2e
def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, panels_config(3))
    result = exporter("--check-config", "--config", str(path), env=_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "config OK: 3 panels"


@pytest.mark.e2e
def test_check_config_reads_the_file_from_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, panels_config(1))
    result = exporter("--check-config", env=_env(BRAINYCP_MAIL_CONFIG=str(path)))
    assert result.returncode == 0, result.stderr
    assert "config OK: 1 panels" in result.stdout


@pytest.mark.e2e
def test_check_config_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    data = panels_config(1, interval="soon", max_concurrency=0)
    data["panels"]["bad"] = {"url": "ftp://x"}
    path = write_config(tmp_path, data)
    result = exporter("--check-config", "--config", str(path), env=_env())
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("exporter.interval:") for line in lines), lines
    assert any(line.startswith("exporter.max_concurrency:") for line in lines), lines
    assert any(line.startswith("panels.bad.url:") for line in lines), lines


@pytest.mark.e2e
def test_missing_or_unreadable_config_exits_2_without_traceback(tmp_path: Path) -> None:
    for args in (["--once"], ["--once", "--config", str(tmp_path / "nope.yaml")]):
        result = exporter(*args, env=_env())
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_once_with_a_broken_config_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("panels: [\n")
    result = exporter("--once", "--config", str(path), env=_env())
    assert result.returncode == 2
    assert "broken.yaml" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.e2e
def test_inline_password_is_a_warning_on_stderr_not_an_error(tmp_path: Path) -> None:
    data = panels_config(1)
    data["defaults"] = {"username": "admin", "password": "hunter2"}
    path = write_config(tmp_path, data)
    result = exporter("--check-config", "--config", str(path), env=_env())
    assert result.returncode == 0
    assert "warning:" in result.stderr and "inline" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


@pytest.mark.e2e
def test_version_and_bad_listen(tmp_path: Path) -> None:
    result = exporter("--version")
    assert result.stdout.strip() == f"brainycp-mail-exporter {__version__}"
    path = write_config(tmp_path, panels_config(1))
    result = exporter("--config", str(path), "--listen", "nohost", env=_env())
    assert result.returncode == 2 and "--listen" in result.stderr


@pytest.mark.e2e
def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """As the remediator: no traceback, no poll started, the address and the reason."""
    with taken_port() as port:
        path = write_config(tmp_path, panels_config(1))
        result = exporter("--config", str(path), "--listen", f"127.0.0.1:{port}", env=_env())
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.endswith(f"exporter: cannot listen on 127.0.0.1:{port}: Address already in use")


def _env(**extra: str) -> dict[str, str]:
    import os

    return {**os.environ, "BRAINYCP_TEST_PW": "pw", **extra}


# ---------------------------------------------------------------------------- poller


class FakePanels:
    """An httpx transport answering every panel, counting requests in flight."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.per_panel_max: dict[str, int] = {}
        self._per_panel: dict[str, int] = {}

    async def handle(self, request: httpx.Request) -> httpx.Response:
        panel = request.url.path.split("/")[2]
        self.in_flight += 1
        self._per_panel[panel] = self._per_panel.get(panel, 0) + 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.per_panel_max[panel] = max(self.per_panel_max.get(panel, 0), self._per_panel[panel])
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
            self._per_panel[panel] -= 1
        form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
        if form.get("count_msg") == "1":
            return httpx.Response(200, content=json.dumps({"error": 0, "detail": "7"}))
        if form.get("list_msg") == "1":
            return httpx.Response(200, content=json.dumps({"error": 100, "detail": ""}))
        return httpx.Response(200, content=json.dumps({"error": 0, "detail": "active (running)"}))


def test_one_status_poll_sends_count_and_daemon_statuses_concurrently_and_bounds_panels() -> None:
    import os

    os.environ.setdefault("BRAINYCP_TEST_PW", "pw")
    config = parse_config(panels_config(6, max_concurrency=2, list_interval=0))
    fake = FakePanels()

    async def run() -> bool:
        state = initial_state(config)
        poller = Poller(
            config, state, transport_factory=lambda _p: httpx.MockTransport(fake.handle)
        )
        try:
            ok = await poller.poll_once()
        finally:
            await poller.aclose()
        assert all(p.queue_messages == 7 for p in state.panels.values())
        assert all(
            p.daemon_states == {"clamav": "running", "spamassassin": "running"}
            for p in state.panels.values()
        )
        return ok

    assert asyncio.run(run()) is True
    # count_msg + 2 statuses of one panel at once, and at most 2 panels at once.
    assert set(fake.per_panel_max.values()) == {3}
    assert fake.max_in_flight == 6


class RecordingScheduler:
    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []

    def add_job(self, func: Any, trigger: str, **kwargs: Any) -> None:
        first = kwargs.get("next_run_time") or kwargs.get("run_date")
        self.jobs.append({"trigger": trigger, "first": first, **kwargs})


def schedule_of(data: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    import os
    from datetime import UTC, datetime

    os.environ.setdefault("BRAINYCP_TEST_PW", "pw")
    config = parse_config(data)
    scheduler = RecordingScheduler()

    async def run() -> datetime:
        poller = Poller(config, initial_state(config))
        # Offsets count from the scheduling itself: building the poller of 300 panels takes
        # longer on a loaded machine (parallel tests), which is not what is measured.
        at = datetime.now(UTC)
        poller.schedule(scheduler)
        await poller.aclose()
        return at

    before = asyncio.run(run())
    for job in scheduler.jobs:
        job["offset"] = (job["first"] - before).total_seconds()
    return scheduler.jobs, before


def test_recurring_polls_are_spread_over_the_interval_and_never_pile_up() -> None:
    data = panels_config(300, interval="60s", list_interval="5m")
    data["panels"]["p00"]["list_interval"] = 0
    data["panels"]["p01"]["interval"] = "2s"
    jobs, _ = schedule_of(data)
    recurring = [j for j in jobs if j["trigger"] == "interval"]
    assert len(recurring) == 300 + 299
    assert all(j["max_instances"] == 1 and j["coalesce"] for j in recurring)
    status = [j["offset"] for j in recurring if j["id"].startswith("poll_status:")]
    assert all(-0.1 <= o <= 60.1 for o in status)
    # Spread over the whole minute: no 5-second slot holds more than a fifth of the panels.
    per_slot = [sum(1 for o in status if s <= o < s + 5) for s in range(0, 60, 5)]
    assert max(per_slot) < len(status) / 5, per_slot
    fast = next(j for j in recurring if j["id"] == "poll_status:p01")
    assert fast["seconds"] == 2 and fast["offset"] <= 2.1
    assert not any(j["id"].startswith("poll_list:p00") for j in jobs)


def test_every_panel_is_polled_within_the_start_window_spread_over_seconds() -> None:
    jobs, _ = schedule_of(panels_config(300, interval="60s", list_interval="5m"))
    first: dict[str, float] = {}
    for job in jobs:
        key = job["id"].removesuffix(":first")
        first[key] = min(first.get(key, float("inf")), job["offset"])
    assert len(first) == 600
    assert all(-0.1 <= o <= MAX_START_SPREAD + 0.5 for o in first.values())
    per_second = [sum(1 for o in first.values() if s <= o < s + 1) for s in range(5)]
    assert max(per_second) < len(first) / 3, per_second
    one_off = [j for j in jobs if j["trigger"] == "date"]
    assert one_off and all(j["id"].endswith(":first") for j in one_off)


def test_a_job_still_running_is_not_started_twice() -> None:
    import os

    os.environ.setdefault("BRAINYCP_TEST_PW", "pw")
    config = parse_config(panels_config(1, list_interval=0))
    fake = FakePanels(delay=0.2)

    async def run() -> None:
        poller = Poller(
            config,
            initial_state(config),
            transport_factory=lambda _p: httpx.MockTransport(fake.handle),
        )
        try:
            await asyncio.gather(
                poller._tracked(poller.poll_status, "p00"),
                poller._tracked(poller.poll_status, "p00"),
            )
        finally:
            await poller.aclose()

    asyncio.run(run())
    assert fake.per_panel_max == {"p00": 3}
    assert fake.max_in_flight == 3


def test_a_listing_the_parser_chokes_on_is_a_bad_detail_failure_not_a_crash(
    monkeypatch: Any,
) -> None:
    import os

    import brainycp.queue.worker as worker_module
    from brainycp.queue.worker import ListingReaders

    os.environ.setdefault("BRAINYCP_TEST_PW", "pw")
    config = parse_config(panels_config(1))
    fake = FakePanels(delay=0)

    def broken(job: Any, body: Any) -> Any:
        raise ValueError("parser bug")

    monkeypatch.setattr(worker_module, "read_body", broken)

    async def run() -> tuple[bool, Any]:
        state = initial_state(config)
        poller = Poller(
            config,
            state,
            transport_factory=lambda _p: httpx.MockTransport(fake.handle),
            readers=ListingReaders(0),  # in this process, where the patch applies
        )
        try:
            return await poller.poll_once(), state.panels["p00"]
        finally:
            await poller.aclose()

    ok, panel = asyncio.run(run())
    assert ok is False
    assert panel.summary is None
    assert panel.operations["list_msg"].errors == {"bad_detail": 1}
    assert panel.operations["count_msg"].success and panel.queue_messages == 7
