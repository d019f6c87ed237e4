"""End to end: the real exporter process against real simulator processes, over HTTP.

One simulator process serves several panels (``--panel NAME:SCENARIO:FLAVOUR``): a healthy
Exim panel, one that answers too slowly, one answering an HTML 502, one the exporter logs
into with a wrong password, a Postfix panel, and one used for the staleness test. Every
scenario is paused so the simulator's ``/_sim/state`` is stable while we compare. The
panels' clocks are on Moscow time (UTC+3), which only Postfix listings show.
"""

from __future__ import annotations

import math
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import prometheus_args, serving, serving_on_free_port
from tests.support import PYTHON, REPO, exporter_cmd, require_binary, sim_args, wait_until

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-panel-pw"
WRONG_PASSWORD = "not-the-password"
PANELS = {
    "web01": "quiet:exim",
    "slow": "quiet:exim",
    "html": "quiet:exim",
    "auth": "quiet:exim",
    "mx": "quiet:postfix",
    "stale": "quiet:exim",
}
PANEL_ZONE = "Europe/Moscow"
OPERATIONS = ("count_msg", "list_msg", "clamav", "spamassassin")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Sim:
    base: str

    def url(self, panel: str, path: str) -> str:
        return f"{self.base}/panel/{panel}/{path}"

    def api(self, panel: str) -> str:
        return self.url(panel, "api/api.php")

    def state(self, panel: str) -> dict[str, Any]:
        response = httpx.get(self.url(panel, "_sim/state"), timeout=5)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def post(self, panel: str, what: str, body: dict[str, Any]) -> None:
        response = httpx.post(self.url(panel, f"_sim/{what}"), json=body, timeout=5)
        assert response.status_code == 200, response.text

    def clear_fault(self, panel: str) -> None:
        httpx.delete(self.url(panel, "_sim/fault"), timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    log = tmp_path_factory.mktemp("sim") / "sim.log"
    args = sim_args(0, "--users", f"admin:{PASSWORD}:root", "--seed", "7")
    args += ["--timezone", PANEL_ZONE]
    for name, spec in PANELS.items():
        args += ["--panel", f"{name}:{spec}"]
    with serving(args, log=log) as simulator:
        s = Sim(simulator.url)
        for name in PANELS:
            s.post(name, "pause", {"paused": True})
        s.post("web01", "queue", {"add": 3, "frozen": True, "age": 7200})
        s.post("web01", "queue", {"add": 2, "bounce": True, "sender": "<>"})
        s.post("web01", "daemon", {"clamav": "stopped"})
        s.post("mx", "queue", {"add": 2, "held": True})
        s.post("mx", "queue", {"add": 1, "bounce": True})
        s.post("mx", "daemon", {"spamassassin": "stopped"})
        s.post("slow", "fault", {"latency": 3})
        s.post("html", "fault", {"status": 502, "html": True})
        yield s


def config_for(sim: Sim, panels: dict[str, dict[str, Any]], **exporter: Any) -> dict[str, Any]:
    return {
        "defaults": {"username": "admin", "password_env": "SIM_PW", "timeout": "2s"},
        "panels": {name: {"url": sim.api(name), **extra} for name, extra in panels.items()},
        "exporter": {"interval": "1s", "list_interval": "1s", **exporter},
    }


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "exporter.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


ENV = {"SIM_PW": PASSWORD, "WRONG_PW": WRONG_PASSWORD}


@dataclass
class Exporter:
    base: str
    log: Path
    proc: subprocess.Popen[bytes]

    def scrape(self) -> Samples:
        response = httpx.get(f"{self.base}/metrics", timeout=5)
        response.raise_for_status()
        out: Samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def text(self) -> str:
        return httpx.get(f"{self.base}/metrics", timeout=5).text

    def wait_polled_ok(self, *panels: str, timeout: float, what: str) -> Samples:
        """Scrape until the last poll of every operation of ``panels`` succeeded."""
        return wait_until(
            lambda: (
                (s := self.scrape())
                and all(
                    get(s, "brainycp_poll_success", panel=p, operation=op) == 1
                    for p in panels
                    for op in OPERATIONS
                )
                and s
            ),
            timeout=timeout,
            what=what,
        )


def get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@contextmanager
def start_exporter(tmp_path: Path, data: dict[str, Any]) -> Iterator[Exporter]:
    config = write(tmp_path, data)
    log = tmp_path / "exporter.log"
    args = exporter_cmd(config, "--log-level", "info")
    with serving(args, log=log, env=ENV, cwd=REPO) as served:
        yield Exporter(served.url, log, served.proc)


@pytest.fixture(scope="module")
def exporter(sim: Sim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    tmp = tmp_path_factory.mktemp("exporter")
    panels: dict[str, dict[str, Any]] = {
        "web01": {},
        "slow": {"timeout": "1s"},
        "html": {},
        "auth": {"password_env": "WRONG_PW"},
        "mx": {"timezone": PANEL_ZONE},
    }
    with start_exporter(tmp, config_for(sim, panels, max_staleness="10m")) as exp:

        def everything_polled() -> bool:
            s = exp.scrape()
            return all(
                get(s, "brainycp_poll_success", panel=p, operation=op) is not None
                for p in panels
                for op in OPERATIONS
            )

        wait_until(everything_polled, timeout=20, what="a first poll of every panel")
        yield exp


def assert_matches_simulator(samples: Samples, sim: Sim, panel: str) -> None:
    state = sim.state(panel)
    queue = state["queue"]
    assert get(samples, "brainycp_up", panel=panel) == 1
    assert get(samples, "brainycp_mail_queue_messages", panel=panel) == queue["messages"]
    assert get(samples, "brainycp_mail_queue_frozen_messages", panel=panel) == queue["frozen"]
    assert get(samples, "brainycp_mail_queue_bounce_messages", panel=panel) == queue["bounces"]
    assert get(samples, "brainycp_mail_queue_held_messages", panel=panel) == queue["held"]
    gcount = get(samples, "brainycp_mail_queue_message_age_seconds_gcount", panel=panel)
    assert gcount == queue["messages"]
    inf = get(samples, "brainycp_mail_queue_message_age_seconds_bucket", panel=panel, le="+Inf")
    assert inf == queue["messages"]
    size = get(samples, "brainycp_mail_queue_size_bytes", panel=panel)
    assert size is not None and (size > 0) == (queue["messages"] > 0)
    for daemon, daemon_state in state["daemons"].items():
        up = get(samples, "brainycp_mail_daemon_up", panel=panel, daemon=daemon)
        assert up == (1 if daemon_state == "running" else 0), (panel, daemon)
        unknown = get(samples, "brainycp_mail_daemon_status_unknown", panel=panel, daemon=daemon)
        assert unknown == 0
    for op in OPERATIONS:
        assert get(samples, "brainycp_poll_success", panel=panel, operation=op) == 1


def assert_web01_and_mx_match(samples: Samples, sim: Sim) -> None:
    """Both of the usual panels match the simulator; mx (Postfix, PANEL_ZONE) to the second."""
    assert_matches_simulator(samples, sim, "web01")
    assert_matches_simulator(samples, sim, "mx")
    # Postfix prints local arrival times with no zone: read in the panel's zone, the
    # oldest age is right to the second (read as UTC it would be 3 h off).
    oldest = get(samples, "brainycp_mail_queue_oldest_message_age_seconds", panel="mx")
    true_oldest = sim.state("mx")["oldest_age_seconds"]
    assert oldest is not None and true_oldest is not None
    assert abs(oldest - true_oldest) <= 5, (oldest, true_oldest)


def value_series(samples: Samples, panel: str) -> Samples:
    """A panel's series that carry panel data (not poll durations, timestamps or counters)."""
    return {
        key: v
        for key, v in samples.items()
        if dict(key[1]).get("panel") == panel
        and not key[0].startswith(("brainycp_poll_duration", "brainycp_poll_last_success"))
        and key[0] not in ("brainycp_poll_errors_total", "brainycp_polls_total")
    }


def assert_failing(samples: Samples, panel: str, reason: str) -> None:
    assert get(samples, "brainycp_up", panel=panel) == 0
    assert get(samples, "brainycp_poll_success", panel=panel, operation="count_msg") == 0
    errors = get(
        samples, "brainycp_poll_errors_total", panel=panel, operation="count_msg", reason=reason
    )
    assert errors is not None and errors >= 1, (panel, reason)
    # Never read successfully: unknown, so no queue series at all (not a 0).
    for name in ("brainycp_mail_queue_messages", "brainycp_mail_queue_frozen_messages"):
        assert get(samples, name, panel=panel) is None, (panel, name)


def test_every_value_matches_the_simulator_and_failures_are_reasons_not_zeros(
    exporter: Exporter, sim: Sim
) -> None:
    samples = wait_until(
        lambda: (
            (s := exporter.scrape())
            and get(
                s,
                "brainycp_poll_errors_total",
                panel="slow",
                operation="count_msg",
                reason="timeout",
            )
            and s
        ),
        timeout=15,
        what="the slow panel's timeout",
    )
    assert_web01_and_mx_match(samples, sim)
    assert sim.state("web01")["queue"]["frozen"] >= 3
    assert sim.state("mx")["queue"]["held"] >= 2
    assert_failing(samples, "slow", "timeout")
    assert_failing(samples, "html", "http_status")
    assert_failing(samples, "auth", "auth")
    version = get(
        samples, "brainycp_exporter_build_info", version=__import__("brainycp").__version__
    )
    assert version == 1
    assert any(name == "process_resident_memory_bytes" for name, _ in samples)

    text = exporter.text()
    log = exporter.log.read_text()
    for secret in (PASSWORD, WRONG_PASSWORD):
        assert secret not in text and secret not in log
    failed = [line for line in log.splitlines() if "poll failing" in line]
    assert any("panel=html" in line and "reason=http_status" in line for line in failed)
    assert any("panel=auth" in line and "reason=auth" in line for line in failed)
    assert not any("panel=web01" in line for line in failed)

    page = httpx.get(f"{exporter.base}/", timeout=5).text
    assert "/metrics" in page and "http_status" in page and "web01" in page
    assert httpx.get(f"{exporter.base}/healthz", timeout=5).text == "ok"


def test_one_panels_garbage_changes_no_other_panel(exporter: Exporter, sim: Sim) -> None:
    before = exporter.scrape()
    web_before = value_series(before, "web01")
    mx_before = value_series(before, "mx")
    sim.post("mx", "fault", {"truncated_json": True})

    def failed(s: Samples, operation: str) -> float:
        return get(s, "brainycp_poll_success", panel="mx", operation=operation) == 0 and (
            get(s, "brainycp_poll_errors_total", panel="mx", operation=operation, reason="not_json")
            or 0
        )

    try:
        after = wait_until(
            lambda: (
                (s := exporter.scrape()) and failed(s, "count_msg") and failed(s, "list_msg") and s
            ),
            timeout=10,
            what="mx to fail on truncated JSON",
        )
        assert get(after, "brainycp_up", panel="mx") == 0
        assert value_series(after, "web01") == web_before
        # A poll that was in flight when the fault came may have stored newer values than
        # `before`: compare what the failing polls leave, over more failed polls.
        counts = (failed(after, "count_msg"), failed(after, "list_msg"))
        later = wait_until(
            lambda: (
                (s := exporter.scrape())
                and failed(s, "count_msg") > counts[0]
                and failed(s, "list_msg") > counts[1]
                and s
            ),
            timeout=10,
            what="more failed polls of mx",
        )
        # The failed panel keeps its last good queue values: unknown is not empty.
        mail = [key for key in mx_before if key[0].startswith("brainycp_mail_")]
        assert mail
        for key in mail:
            assert later.get(key) == after.get(key) is not None, key
        assert (
            get(
                after,
                "brainycp_poll_errors_total",
                panel="mx",
                operation="count_msg",
                reason="not_json",
            )
            or 0
        ) >= 1
    finally:
        sim.clear_fault("mx")
    recovered = exporter.wait_polled_ok("mx", timeout=10, what="mx to recover")
    assert_matches_simulator(recovered, sim, "mx")


def test_prometheus_scrapes_the_exporter(exporter: Exporter, sim: Sim, tmp_path: Path) -> None:
    prometheus = require_binary("prometheus", "apt-get install prometheus")
    target = exporter.base.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "brainycp-mail", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )

    args = prometheus_args(prometheus, config, tmp_path / "tsdb")
    api = ""

    def query(expr: str) -> float | None:
        data = httpx.get(api, params={"query": expr}, timeout=5).json()
        result = data["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    expected = sim.state("web01")["queue"]["messages"]
    with serving_on_free_port(args, log=tmp_path / "prometheus.log", ready_path="/-/ready") as p:
        api = f"{p.url}/api/v1/query"
        wait_until(
            lambda: query('brainycp_mail_queue_messages{panel="web01"}') == expected,
            timeout=30,
            what="Prometheus to have brainycp_mail_queue_messages for web01",
        )
        assert query('brainycp_up{panel="web01"}') == 1
        assert query('brainycp_up{panel="auth"}') == 0
        frozen = query('brainycp_mail_queue_frozen_messages{panel="web01"}')
        assert frozen == sim.state("web01")["queue"]["frozen"]
        gcount = query('brainycp_mail_queue_message_age_seconds_gcount{panel="web01"}')
        assert gcount == expected


def test_a_failing_panel_recovers(exporter: Exporter, sim: Sim) -> None:
    sim.clear_fault("html")
    samples = exporter.wait_polled_ok("html", timeout=10, what="the html panel to recover")
    assert_matches_simulator(samples, sim, "html")
    # The counter of past failures stays.
    errors = get(
        samples,
        "brainycp_poll_errors_total",
        panel="html",
        operation="count_msg",
        reason="http_status",
    )
    assert errors is not None and errors >= 1


def test_values_disappear_after_max_staleness_and_sigterm_exits_0(sim: Sim, tmp_path: Path) -> None:
    sim.clear_fault("stale")
    data = config_for(sim, {"stale": {"timeout": "1s"}}, max_staleness="3s")
    with start_exporter(tmp_path, data) as exp:
        good = wait_until(
            lambda: (
                (s := exp.scrape())
                and get(s, "brainycp_mail_queue_frozen_messages", panel="stale") is not None
                and get(s, "brainycp_mail_queue_messages", panel="stale") is not None
                and s
            ),
            timeout=10,
            what="a first good poll",
        )
        messages = get(good, "brainycp_mail_queue_messages", panel="stale")
        sim.post("stale", "fault", {"status": 503})
        failing = wait_until(
            lambda: (s := exp.scrape()) and get(s, "brainycp_up", panel="stale") == 0 and s,
            timeout=10,
            what="the first failed poll",
        )
        # Down at once, but the last good value is still there (it is under 3s old).
        assert get(failing, "brainycp_mail_queue_messages", panel="stale") == messages
        gone = wait_until(
            lambda: (
                (s := exp.scrape())
                and get(s, "brainycp_mail_queue_messages", panel="stale") is None
                and get(s, "brainycp_mail_queue_frozen_messages", panel="stale") is None
                and s
            ),
            timeout=15,
            what="the stale values to disappear",
        )
        assert get(gone, "brainycp_up", panel="stale") == 0
        assert get(gone, "brainycp_mail_daemon_up", panel="stale", daemon="clamav") is None
        assert (
            get(gone, "brainycp_mail_daemon_status_unknown", panel="stale", daemon="clamav") is None
        )
        last = get(
            gone,
            "brainycp_poll_last_success_timestamp_seconds",
            panel="stale",
            operation="count_msg",
        )
        assert last is not None and not math.isnan(last)

        exp.proc.send_signal(signal.SIGTERM)
        assert exp.proc.wait(timeout=5) == 0
    sim.clear_fault("stale")
    assert "exporter stopped" in exp.log.read_text()


def run_once(tmp_path: Path, data: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    config = write(tmp_path, data)
    import os

    return subprocess.run(
        [PYTHON, "-m", "exporter.cli", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **ENV},
    )


def test_once_prints_metrics_and_exits_0_when_every_poll_succeeds(sim: Sim, tmp_path: Path) -> None:
    result = run_once(tmp_path, config_for(sim, {"web01": {}, "mx": {"timezone": PANEL_ZONE}}))
    assert result.returncode == 0, result.stderr
    samples: Samples = {}
    for family in text_string_to_metric_families(result.stdout):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert_web01_and_mx_match(samples, sim)
    assert "poll failing" not in result.stderr


def test_once_exits_1_when_a_poll_fails_and_2_on_a_config_error(sim: Sim, tmp_path: Path) -> None:
    result = run_once(
        tmp_path, config_for(sim, {"web01": {}, "auth": {"password": WRONG_PASSWORD}})
    )
    assert result.returncode == 1, result.stderr
    assert 'brainycp_up{panel="auth"} 0.0' in result.stdout
    assert 'brainycp_up{panel="web01"} 1.0' in result.stdout
    assert "poll failing" in result.stderr and "panel=auth" in result.stderr
    assert WRONG_PASSWORD not in result.stderr + result.stdout

    broken = config_for(sim, {"web01": {}}, max_staleness="later")
    result = run_once(tmp_path, broken)
    assert result.returncode == 2
    assert "exporter.max_staleness" in result.stderr and "Traceback" not in result.stderr


def test_long_intervals_still_poll_every_panel_soon_after_start(sim: Sim, tmp_path: Path) -> None:
    data = config_for(sim, {"web01": {}, "mx": {}}, interval="60s", list_interval="10m")
    with start_exporter(tmp_path, data) as exp:
        samples = exp.wait_polled_ok(
            "web01", "mx", timeout=15, what="a first poll of both panels within the start window"
        )
        assert_matches_simulator(samples, sim, "web01")
        assert_matches_simulator(samples, sim, "mx")
