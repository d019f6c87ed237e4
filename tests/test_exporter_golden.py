"""Golden exposition files: the exact /metrics text for recorded panel answers.

A diff here is a bug or a deliberate change of the exposition. To regenerate after a
deliberate change (and explain it in the commit message)::

    BRAINYCP_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_exporter_golden.py
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from exporter.app import build_registry, create_app
from exporter.collector import render_text
from exporter.state import ExporterState, PanelState
from tests.golden_support import (
    NOW,
    exim_and_postfix,
)
from tests.support import require_binary

GOLDEN = Path(__file__).resolve().parent / "golden"
REGENERATE = os.environ.get("BRAINYCP_REGENERATE_GOLDEN") == "1"


def failing_after_success() -> ExporterState:
    state = exim_and_postfix()
    exim = state.panels["exim01"]
    exim.record_failure("count_msg", NOW - 5, 1.0, "timeout", "no answer in 1s")
    exim.record_failure("list_msg", NOW - 5, 0.004, "not_json", "HTML (162 bytes)")
    exim.record_failure("clamav", NOW - 5, 0.004, "auth", "rejected")
    never = PanelState(name="down01", daemons=("clamav",))
    never.record_failure("count_msg", NOW - 3, 0.002, "connect", "ConnectError")
    never.record_failure("clamav", NOW - 3, 0.002, "connect", "ConnectError")
    never.record_failure("list_msg", NOW - 3, 0.002, "connect", "ConnectError")
    state.panels["down01"] = never
    return state


def stale() -> ExporterState:
    state = failing_after_success()
    state.max_staleness = 10
    return state


CASES: dict[str, Callable[[], ExporterState]] = {
    "exim-and-postfix": exim_and_postfix,
    "top-senders": lambda: exim_and_postfix(top=3),
    "failing-after-success": failing_after_success,
    "stale": stale,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_exposition_matches_golden_file(case: str) -> None:
    registry = build_registry(CASES[case](), clock=lambda: NOW, process=False)
    text = generate_latest(registry).decode()
    text = text.replace(__import__("brainycp").__version__, "VERSION")
    path = GOLDEN / f"{case}.prom"
    if REGENERATE:
        path.write_text(text)
    assert path.exists(), f"{path} is missing; regenerate (see this module's docstring)"
    assert text == path.read_text(), f"{path.name} differs; see tests/golden/README.md"


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_text_writer_is_byte_identical_to_prometheus_client(case: str) -> None:
    state = CASES[case]()
    registry = build_registry(state, clock=lambda: NOW, process=False)
    assert render_text(state, NOW) == generate_latest(registry).decode()


def test_fast_text_writer_escapes_label_values_like_prometheus_client() -> None:
    state = exim_and_postfix(top=3)
    state.panels["exim01"].top_senders = (('we"ird\\x\nname', 2), ("ok@example.org", 1))
    state.panels['odd"panel\\'] = state.panels.pop("mx01")
    state.panels['odd"panel\\'].name = 'odd"panel\\'
    registry = build_registry(state, clock=lambda: NOW, process=False)
    assert render_text(state, NOW) == generate_latest(registry).decode()


def test_metrics_endpoint_serves_the_golden_text_then_the_process_collectors() -> None:
    state = exim_and_postfix()
    app = create_app(state, clock=lambda: NOW)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as client:
            return await client.get("/metrics")

    response = asyncio.run(get())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    body = response.text.replace(__import__("brainycp").__version__, "VERSION")
    golden = (GOLDEN / "exim-and-postfix.prom").read_text()
    assert body.startswith(golden)
    assert "process_resident_memory_bytes" in body[len(golden) :]


@pytest.mark.parametrize("case", sorted(CASES))
def test_exposition_passes_promtool_lint(case: str) -> None:
    promtool = require_binary("promtool", "apt-get install prometheus")
    text = render_text(CASES[case](), NOW)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout
