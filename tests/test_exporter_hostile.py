"""The real exporter against every hostile panel at once, beside a healthy simulator panel.

Every scrape answers 200 quickly, the exporter's peak RSS stays bounded, the healthy
panel stays up, and every hostile panel's poll fails with its own reason
(``tests/hostile_panel.py`` lists them).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.hostile_panel import MODES
from tests.support import PYTHON, REPO, exporter_cmd, serving, sim_args, wait_until

pytestmark = pytest.mark.e2e

PASSWORD = "hostile-test-pw"
PEAK_RSS_LIMIT_MB = 250
"""A bomb inflated whole would take 512 MB; a healthy exporter needs well under 100."""


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def scrape(port: int) -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], float]:
    started = time.monotonic()
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    took = time.monotonic() - started
    assert response.status_code == 200, response.text[:500]
    out = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out, took


def reason(s: dict[Any, float], panel: str, operation: str) -> str | None:
    """``ok`` after a successful last poll, else the one reason its polls failed with."""
    if s.get(("brainycp_poll_success", (("operation", operation), ("panel", panel)))) == 1:
        return "ok"
    seen = {
        dict(labels)["reason"]
        for (name, labels), value in s.items()
        if name == "brainycp_poll_errors_total"
        and dict(labels).get("panel") == panel
        and dict(labels)["operation"] == operation
        and value > 0
    }
    return seen.pop() if len(seen) == 1 else f"several: {sorted(seen)}" if seen else None


def test_hostile_panels_fail_with_their_reason_and_hurt_nobody(tmp_path: Path) -> None:
    modes = MODES
    with ExitStack() as stack:
        sim = stack.enter_context(
            serving(
                sim_args(0, "--users", f"admin:{PASSWORD}:root", "--panel", "healthy:quiet:exim"),
                log=tmp_path / "sim.log",
            )
        ).url
        hostile = stack.enter_context(
            serving(
                [PYTHON, "-m", "tests.hostile_panel", "--listen", "127.0.0.1:0"],
                log=tmp_path / "hostile.log",
                cwd=REPO,
                timeout=60,
            )
        ).url
        panels: dict[str, Any] = {
            "healthy": {"url": f"{sim}/panel/healthy/api/api.php"},
        }
        for mode, spec in modes.items():
            panels[mode] = {
                "url": f"{hostile}/{mode}/api/api.php",
                "daemons": [],
                "max_response_bytes": "1MB",
                "list_interval": "1s" if spec.operation == "list_msg" else "0s",
            }
        config = tmp_path / "exporter.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "defaults": {"username": "admin", "password_env": "SIM_PW", "timeout": "2s"},
                    "panels": panels,
                    "exporter": {
                        "interval": "1s",
                        "list_interval": "1s",
                        "top_senders": 5,
                    },
                }
            )
        )
        exporter = stack.enter_context(
            serving(
                exporter_cmd(config),
                log=tmp_path / "exporter.log",
                env={"SIM_PW": PASSWORD},
                cwd=REPO,
            )
        )
        port, proc = exporter.port, exporter.proc
        slowest = 0.0

        def settled() -> dict[Any, float] | None:
            nonlocal slowest
            s, took = scrape(port)
            slowest = max(slowest, took)
            wanted = {m: reason(s, m, spec.operation) for m, spec in modes.items()}
            done = all(wanted[m] == spec.reason for m, spec in modes.items())
            return s if done and reason(s, "healthy", "list_msg") == "ok" else None

        s = wait_until(settled, timeout=45, interval=0.2, what="every hostile panel's reason")
        # A few more cycles of every hostile answer, scraping throughout.
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            s, took = scrape(port)
            slowest = max(slowest, took)
        for mode, spec in modes.items():
            assert reason(s, mode, spec.operation) == spec.reason, mode
            if spec.operation == "count_msg":
                assert s[("brainycp_up", (("panel", mode),))] == 0, mode
        assert s[("brainycp_up", (("panel", "healthy"),))] == 1
        assert reason(s, "healthy", "count_msg") == "ok"
        overflow = (("panel", "sizes-overflow"),)
        assert s[("brainycp_mail_queue_unparsed_lines", overflow)] == 4
        assert s[("brainycp_mail_queue_size_bytes", overflow)] == 0
        sender = ("sender", "ev\ufffdil@example.com")
        assert (
            s[("brainycp_mail_queue_sender_messages", (("panel", "lone-surrogate-sender"), sender))]
            == 1
        )
        assert not any(name == "brainycp_exporter_render_errors_total" for name, _ in s)
        assert slowest < 1.0, f"a scrape took {slowest:.2f}s"
        peak = vm_hwm_mb(proc.pid)
        assert peak < PEAK_RSS_LIMIT_MB, f"peak RSS {peak:.0f} MB"
        log = (tmp_path / "exporter.log").read_text()
        assert "internal" not in log
