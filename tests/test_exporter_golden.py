"""Golden exposition files: the exact /metrics text for recorded panel answers, in the
text format (``*.prom``) and in OpenMetrics (``*.om``).

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
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)

from exporter.app import build_registry, create_app
from exporter.collector import LINE_CACHE
from exporter.state import ExporterState, PanelState
from tests.golden_support import (
    CONFIGURED,
    NOW,
    exim_and_postfix,
    render_text,
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
    never = PanelState(name="down01", daemons=("clamav",), created=CONFIGURED)
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


VERSION = __import__("brainycp").__version__
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def compare_with_golden(text: str, name: str) -> None:
    path = GOLDEN / name
    if REGENERATE:
        path.write_text(text)
    assert path.exists(), f"{path} is missing; regenerate (see this module's docstring)"
    assert text == path.read_text(), f"{path.name} differs; see tests/golden/README.md"


@pytest.mark.parametrize("case", sorted(CASES))
def test_exposition_matches_golden_file(case: str) -> None:
    registry = build_registry(CASES[case](), clock=lambda: NOW, process=False)
    text = generate_latest(registry).decode()
    compare_with_golden(text.replace(VERSION, "VERSION"), f"{case}.prom")


@pytest.mark.parametrize("case", sorted(CASES))
def test_openmetrics_exposition_matches_golden_file(case: str) -> None:
    registry = build_registry(CASES[case](), clock=lambda: NOW, process=False, created=True)
    text = openmetrics_latest(registry).decode()
    compare_with_golden(text.replace(VERSION, "VERSION"), f"{case}.om")


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_openmetrics_writer_is_byte_identical_to_prometheus_client(case: str) -> None:
    state = CASES[case]()
    registry = build_registry(state, clock=lambda: NOW, process=False, created=True)
    assert render_text(state, NOW, openmetrics=True) == openmetrics_latest(registry).decode()


def test_openmetrics_has_a_real_gauge_histogram_and_counters_with_created() -> None:
    # prometheus-client's OpenMetrics parser is strict: it refuses what the spec refuses.
    families = {
        f.name: f for f in parse_openmetrics(render_text(exim_and_postfix(), NOW, openmetrics=True))
    }
    ages = families["brainycp_mail_queue_message_age_seconds"]
    assert ages.type == "gaugehistogram"
    samples = {
        (s.name, s.labels.get("le")): s.value for s in ages.samples if s.labels["panel"] == "mx01"
    }
    assert samples[("brainycp_mail_queue_message_age_seconds_gcount", None)] == 10
    assert samples[("brainycp_mail_queue_message_age_seconds_gsum", None)] == 866936
    assert samples[("brainycp_mail_queue_message_age_seconds_bucket", "+Inf")] == 10
    # No stray gauges named after the histogram's parts.
    assert not any(
        name.startswith("brainycp_mail_queue_message_age_seconds_g") for name in families
    )
    errors = families["brainycp_poll_errors"]
    assert errors.type == "counter"
    timeout = {
        s.name: s.value
        for s in errors.samples
        if s.labels == {"panel": "mx01", "operation": "count_msg", "reason": "timeout"}
    }
    assert timeout == {"brainycp_poll_errors_total": 0, "brainycp_poll_errors_created": CONFIGURED}


def test_text_format_keeps_its_shape_without_created_series() -> None:
    text = render_text(exim_and_postfix(), NOW)
    assert "# TYPE brainycp_mail_queue_message_age_seconds histogram" in text
    assert "# TYPE brainycp_mail_queue_message_age_seconds_gcount gauge" in text
    assert "_created" not in text and "# EOF" not in text


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
    state.panels['odd"panel\\'].record_failure("count_msg", NOW, 1.0, "bad_detail", "x")
    registry = build_registry(state, clock=lambda: NOW, process=False)
    assert render_text(state, NOW) == generate_latest(registry).decode()
    registry = build_registry(state, clock=lambda: NOW, process=False, created=True)
    openmetrics = render_text(state, NOW, openmetrics=True)
    assert openmetrics == openmetrics_latest(registry).decode()
    senders = next(
        f for f in parse_openmetrics(openmetrics) if f.name == "brainycp_mail_queue_sender_messages"
    )
    assert 'we"ird\\x\nname' in {s.labels["sender"] for s in senders.samples}


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
    body = response.text.replace(VERSION, "VERSION")
    golden = (GOLDEN / "exim-and-postfix.prom").read_text()
    assert body.startswith(golden)
    assert "process_resident_memory_bytes" in body[len(golden) :]


@pytest.mark.parametrize("path", ["/metrics", "/probe?target=mx01"])
def test_metrics_and_probe_answer_openmetrics_when_prometheus_asks_for_it(path: str) -> None:
    state = exim_and_postfix()
    app = create_app(state, clock=lambda: NOW)

    async def get(accept: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as client:
            return await client.get(path, headers={"Accept": accept})

    response = asyncio.run(get(PROMETHEUS_ACCEPT))
    assert response.status_code == 200
    assert response.headers["content-type"] == OPENMETRICS
    body = response.text.replace(VERSION, "VERSION")
    assert body.endswith("# EOF\n") and body.count("# EOF") == 1
    families = {f.name: f for f in parse_openmetrics(body)}
    assert families["brainycp_mail_queue_message_age_seconds"].type == "gaugehistogram"
    if path == "/metrics":
        golden = (GOLDEN / "exim-and-postfix.om").read_text().removesuffix("# EOF\n")
        assert body.startswith(golden)
        assert "process_resident_memory_bytes" in families
    # A client that prefers the text format, or names no format, gets the text format.
    for accept in (
        "text/plain;version=0.0.4",
        "",
        "*/*",
        PROMETHEUS_ACCEPT.replace("1.0.0,", "1.0.0;q=0.1,"),
    ):
        answer = asyncio.run(get(accept))
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4"), accept
        assert "# EOF" not in answer.text


@pytest.mark.e2e
@pytest.mark.parametrize("case", sorted(CASES))
def test_exposition_passes_promtool_lint(case: str) -> None:
    promtool = require_binary("promtool", "apt-get install prometheus")
    text = render_text(CASES[case](), NOW)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_kept_lines_follow_changed_labels_and_stay_bounded() -> None:
    state = exim_and_postfix(top=3)
    first = {fmt: render_text(state, NOW, openmetrics=fmt) for fmt in (False, True)}
    for _ in range(2):  # warm: the same bytes from kept lines, in either order
        for fmt in (True, False):
            assert render_text(state, NOW, openmetrics=fmt) == first[fmt]
    # A changed label value is a new line, never an old one.
    state.panels["exim01"].top_senders = (("new@example.org", 9),)
    text = render_text(state, NOW)
    assert 'panel="exim01",sender="new@example.org"} 9.0' in text
    assert 'panel="exim01",sender="alice@example.org"' not in text
    registry = build_registry(state, clock=lambda: NOW, process=False)
    assert text == generate_latest(registry).decode()
    # Panels that come and go (a reload, /probe of many targets) do not grow it for ever.
    for round_ in range(1500):
        churn = PanelState(name=f"p{round_}", daemons=("clamav",), created=CONFIGURED)
        churn.record_failure("count_msg", NOW, 0.1, "timeout", "")
        render_text(ExporterState.for_panels([churn]), NOW)
    assert len(LINE_CACHE) <= 10_000 + 100
