"""The collector on hand-built state: no sockets, no clock, no panel."""

from __future__ import annotations

import asyncio
import math
import time

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from brainycp.queue import AGE_BUCKETS, QueueSummary, ReadOptions, read_listing, summarize
from exporter.app import build_registry
from exporter.collector import ZERO_REASONS, build_families
from exporter.poller import Poller, initial_state
from exporter.settings import Config, parse_config
from exporter.state import ExporterState, PanelState
from tests.support import FIXTURES

NOW = 1_800_000_000.0
STALE = 600.0


def summary(**overrides: object) -> QueueSummary:
    values: dict[str, object] = {
        "messages": 3,
        "frozen": 1,
        "bounces": 1,
        "held": 0,
        "bytes": 4096,
        "oldest_age_seconds": 7200.0,
        "age_buckets": (1, 0, 1, 1, 0, 0, 0, 0, 0),
        "age_sum_seconds": 60.0 + 1800.0 + 7200.0,
        "unparsed_lines": 0,
        "flavour": "exim",
    }
    values.update(overrides)
    return QueueSummary(**values)  # type: ignore[arg-type]


def healthy_panel(name: str = "web01", at: float = NOW - 10) -> PanelState:
    panel = PanelState(name=name, daemons=("clamav", "spamassassin"))
    panel.record_success("count_msg", at, 0.05)
    panel.queue_messages = 3
    panel.record_success("list_msg", at, 0.07)
    panel.summary = summary()
    panel.record_success("clamav", at, 0.04)
    panel.daemon_states["clamav"] = "running"
    panel.record_success("spamassassin", at, 0.04)
    panel.daemon_states["spamassassin"] = "stopped"
    return panel


def scrape(
    state: ExporterState, now: float = NOW
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    for family in build_families(state, now):
        registry.register(_Fixed(family))
    from prometheus_client import generate_latest

    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


class _Fixed:
    def __init__(self, family: object) -> None:
        self.family = family

    def collect(self) -> list[object]:
        return [self.family]


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def state_of(*panels: PanelState, top: int = 0) -> ExporterState:
    return ExporterState.for_panels(panels, max_staleness=STALE, top_senders=top)


def test_healthy_panel_exports_every_value_from_its_last_polls() -> None:
    s = scrape(state_of(healthy_panel()))
    assert value(s, "brainycp_up", panel="web01") == 1
    assert value(s, "brainycp_mail_queue_messages", panel="web01") == 3
    assert value(s, "brainycp_mail_queue_frozen_messages", panel="web01") == 1
    assert value(s, "brainycp_mail_queue_bounce_messages", panel="web01") == 1
    assert value(s, "brainycp_mail_queue_held_messages", panel="web01") == 0
    assert value(s, "brainycp_mail_queue_size_bytes", panel="web01") == 4096
    assert value(s, "brainycp_mail_queue_oldest_message_age_seconds", panel="web01") == 7200
    assert value(s, "brainycp_mail_daemon_up", panel="web01", daemon="clamav") == 1
    assert value(s, "brainycp_mail_daemon_up", panel="web01", daemon="spamassassin") == 0
    assert value(s, "brainycp_mail_daemon_status_unknown", panel="web01", daemon="clamav") == 0
    for op in ("count_msg", "list_msg", "clamav", "spamassassin"):
        assert value(s, "brainycp_poll_success", panel="web01", operation=op) == 1
        assert (
            value(s, "brainycp_poll_last_success_timestamp_seconds", panel="web01", operation=op)
            == NOW - 10
        )
    assert value(s, "brainycp_poll_duration_seconds", panel="web01", operation="list_msg") == 0.07
    assert value(s, "brainycp_exporter_build_info", version=__import__("brainycp").__version__) == 1
    # Every polled operation has its error counters for the common reasons, all at 0.
    errors = {labels: v for (name, labels), v in s.items() if name == "brainycp_poll_errors_total"}
    assert len(errors) == 4 * len(ZERO_REASONS) and set(errors.values()) == {0}
    assert value(s, "brainycp_polls_total", panel="web01", operation="list_msg") == 1


def test_failed_count_drops_up_but_keeps_the_last_good_queue_value() -> None:
    panel = healthy_panel()
    panel.record_failure("count_msg", NOW - 1, 1.0, "timeout", "no answer in 1s")
    panel.record_failure("count_msg", NOW, 1.0, "timeout", "no answer in 1s")
    panel.record_failure("list_msg", NOW, 0.01, "not_json", "HTML (120 bytes)")
    s = scrape(state_of(panel))
    assert value(s, "brainycp_up", panel="web01") == 0
    assert value(s, "brainycp_mail_queue_messages", panel="web01") == 3
    assert value(s, "brainycp_mail_queue_frozen_messages", panel="web01") == 1
    assert value(s, "brainycp_poll_success", panel="web01", operation="count_msg") == 0
    assert value(s, "brainycp_poll_success", panel="web01", operation="clamav") == 1
    assert (
        value(
            s, "brainycp_poll_errors_total", panel="web01", operation="count_msg", reason="timeout"
        )
        == 2
    )
    assert (
        value(
            s, "brainycp_poll_errors_total", panel="web01", operation="list_msg", reason="not_json"
        )
        == 1
    )
    # The success timestamp is that of the last good poll, not of the failure.
    assert (
        value(
            s, "brainycp_poll_last_success_timestamp_seconds", panel="web01", operation="count_msg"
        )
        == NOW - 10
    )


def test_values_disappear_after_max_staleness_but_up_and_poll_series_stay() -> None:
    panel = healthy_panel(at=NOW - STALE - 1)
    panel.record_failure("count_msg", NOW, 1.0, "connect", "ConnectError")
    s = scrape(state_of(panel))
    assert value(s, "brainycp_up", panel="web01") == 0
    for name in (
        "brainycp_mail_queue_messages",
        "brainycp_mail_queue_frozen_messages",
        "brainycp_mail_queue_size_bytes",
        "brainycp_mail_queue_oldest_message_age_seconds",
        "brainycp_mail_queue_message_age_seconds_gcount",
    ):
        assert value(s, name, panel="web01") is None, name
    assert value(s, "brainycp_mail_daemon_up", panel="web01", daemon="clamav") is None
    assert value(s, "brainycp_poll_success", panel="web01", operation="count_msg") == 0
    assert (
        value(
            s, "brainycp_poll_last_success_timestamp_seconds", panel="web01", operation="count_msg"
        )
        == NOW - STALE - 1
    )


def test_values_exactly_max_staleness_old_are_still_exported() -> None:
    s = scrape(state_of(healthy_panel(at=NOW - STALE)))
    assert value(s, "brainycp_mail_queue_messages", panel="web01") == 3


def test_unknown_daemon_status_has_no_daemon_up_series() -> None:
    panel = healthy_panel()
    panel.daemon_states["clamav"] = "unknown"
    s = scrape(state_of(panel))
    assert value(s, "brainycp_mail_daemon_up", panel="web01", daemon="clamav") is None
    assert value(s, "brainycp_mail_daemon_status_unknown", panel="web01", daemon="clamav") == 1
    assert (
        value(s, "brainycp_mail_daemon_status_unknown", panel="web01", daemon="spamassassin") == 0
    )


def test_age_histogram_is_cumulative_with_seconds_buckets_and_inf_last() -> None:
    s = scrape(state_of(healthy_panel()))
    expected = [1, 1, 2, 3, 3, 3, 3, 3, 3]
    for bound, count in zip(AGE_BUCKETS, expected, strict=True):
        le = "+Inf" if math.isinf(bound) else f"{bound:.1f}"
        got = value(s, "brainycp_mail_queue_message_age_seconds_bucket", panel="web01", le=le)
        assert got == count, le
    assert value(s, "brainycp_mail_queue_message_age_seconds_gcount", panel="web01") == 3
    assert value(s, "brainycp_mail_queue_message_age_seconds_gsum", panel="web01") == 9060


def test_empty_queue_exports_zero_oldest_age_and_zero_buckets() -> None:
    panel = healthy_panel()
    panel.summary = summarize("", NOW)
    panel.queue_messages = 0
    s = scrape(state_of(panel))
    assert value(s, "brainycp_mail_queue_oldest_message_age_seconds", panel="web01") == 0
    assert value(s, "brainycp_mail_queue_message_age_seconds_gcount", panel="web01") == 0
    assert value(s, "brainycp_mail_queue_messages", panel="web01") == 0


def test_a_panel_never_polled_has_only_its_info_and_its_counters_at_zero() -> None:
    s = scrape(state_of(PanelState(name="new", daemons=("clamav",)), healthy_panel()))
    new = {
        (name, labels): v for (name, labels), v in s.items() if dict(labels).get("panel") == "new"
    }
    assert {name for name, _ in new} == {
        "brainycp_panel_info",
        "brainycp_polls_total",
        "brainycp_poll_errors_total",
    }
    # Created at 0 before the first poll, so that increase() counts the first failure.
    for op in ("count_msg", "list_msg", "clamav"):
        assert value(s, "brainycp_polls_total", panel="new", operation=op) == 0
        for reason in ("timeout", "connect", "http_status"):
            labels = {"panel": "new", "operation": op, "reason": reason}
            assert value(s, "brainycp_poll_errors_total", **labels) == 0
    assert value(s, "brainycp_up", panel="new") is None
    assert value(s, "brainycp_up", panel="web01") == 1


def test_polls_count_every_poll_and_a_rare_reason_appears_at_its_first_failure() -> None:
    panel = PanelState(name="web01", daemons=(), created=NOW - 100)
    panel.record_success("count_msg", NOW - 20, 0.01)
    panel.record_failure("count_msg", NOW - 10, 0.01, "bad_detail", "not a count")
    panel.record_failure("count_msg", NOW - 5, 0.01, "timeout", "no answer")
    s = scrape(state_of(panel))
    assert value(s, "brainycp_polls_total", panel="web01", operation="count_msg") == 3
    labels = {"panel": "web01", "operation": "count_msg"}
    assert value(s, "brainycp_poll_errors_total", reason="bad_detail", **labels) == 1
    assert value(s, "brainycp_poll_errors_total", reason="timeout", **labels) == 1
    assert value(s, "brainycp_poll_errors_total", reason="connect", **labels) == 0
    assert value(s, "brainycp_poll_errors_total", reason="auth", **labels) is None
    # OpenMetrics: a counter's _created is when it started counting from 0.
    families = build_families(state_of(panel), NOW, created=True)
    errors = next(f for f in families if f.name == "brainycp_poll_errors")
    created = {
        s.labels["reason"]: s.value
        for s in errors.samples
        if s.name.endswith("_created") and s.labels["operation"] == "count_msg"
    }
    assert created == {
        "bad_detail": NOW - 10,
        "connect": NOW - 100,
        "http_status": NOW - 100,
        "timeout": NOW - 100,
    }


def test_an_operation_added_or_removed_at_reload_adds_or_removes_its_counters() -> None:
    configured = time.time() - 100
    panel = PanelState(name="web01", daemons=("clamav",), created=configured)
    panel.record_failure("clamav", configured + 50, 0.01, "timeout", "no answer")
    panel.daemons = ("spamassassin",)
    s = scrape(state_of(panel))
    assert not any(dict(k).get("operation") == "clamav" for _, k in s)
    assert value(s, "brainycp_polls_total", panel="web01", operation="spamassassin") == 0
    op = panel.operations["spamassassin"]
    assert op.created >= configured + 100  # the reload time, not when the panel entered
    panel.list_enabled = False
    s = scrape(state_of(panel))
    assert not any(dict(k).get("operation") == "list_msg" for _, k in s)


def test_one_panels_failure_does_not_touch_another_panels_series() -> None:
    good_alone = scrape(state_of(healthy_panel()))
    bad = healthy_panel("bad")
    for op in ("count_msg", "list_msg", "clamav", "spamassassin"):
        bad.record_failure(op, NOW, 1.0, "not_json", "garbage")
    both = scrape(state_of(healthy_panel(), bad))
    assert {k: v for k, v in both.items() if dict(k[1]).get("panel") == "web01"} == {
        k: v for k, v in good_alone.items() if dict(k[1]).get("panel") == "web01"
    }


def test_top_senders_only_when_enabled() -> None:
    panel = healthy_panel()
    panel.top_senders = (("<>", 2), ("alice@example.org", 1))
    off = scrape(state_of(panel, top=0))
    assert not any(name == "brainycp_mail_queue_sender_messages" for name, _ in off)
    on = scrape(state_of(panel, top=2))
    assert value(on, "brainycp_mail_queue_sender_messages", panel="web01", sender="<>") == 2


def test_top_senders_counts_messages_per_sender_from_the_exim_fixture() -> None:
    detail = (FIXTURES / "exim-bp.txt").read_text()
    ranked = read_listing(detail, NOW, options=ReadOptions(top_senders=2)).top_senders
    assert ranked == (("<>", 3), ("alice@example.org", 2))


def test_disabled_list_has_no_list_series_and_no_list_operation() -> None:
    panel = PanelState(name="web01", daemons=(), list_enabled=False)
    panel.record_success("count_msg", NOW, 0.01)
    panel.queue_messages = 5
    s = scrape(state_of(panel))
    assert value(s, "brainycp_mail_queue_messages", panel="web01") == 5
    assert not any(dict(k).get("operation") == "list_msg" for _, k in s)


def test_own_registry_has_process_metrics_and_no_global_state() -> None:
    from prometheus_client import REGISTRY, generate_latest

    text = generate_latest(build_registry(state_of(healthy_panel()))).decode()
    assert "brainycp_up" in text
    assert "process_resident_memory_bytes" in text
    assert "python_info" in text
    assert "brainycp_up" not in generate_latest(REGISTRY).decode()


def test_a_reload_gives_new_panels_and_daemons_their_counters_at_zero_and_drops_removed_ones() -> (
    None
):
    def config(panels: dict[str, list[str]]) -> Config:
        return parse_config(
            {
                "defaults": {"username": "a", "password_env": "HOME"},
                "panels": {
                    name: {"url": f"http://127.0.0.1:9/{name}", "daemons": daemons}
                    for name, daemons in panels.items()
                },
            },
            require_panels=True,
        )

    async def reload() -> ExporterState:
        first = config({"web01": ["clamav"], "web02": []})
        state = initial_state(first)
        poller = Poller(first, state)
        state.panels["web01"].record_failure("clamav", NOW, 0.1, "timeout", "")
        state.panels["web02"].record_failure("count_msg", NOW, 0.1, "timeout", "")
        poller.apply(config({"web01": ["spamassassin"], "web03": ["clamav"]}))
        await poller.aclose()
        return state

    s = scrape(asyncio.run(reload()))
    polls = {
        (dict(labels)["panel"], dict(labels)["operation"]): v
        for (name, labels), v in s.items()
        if name == "brainycp_polls_total"
    }
    assert polls == {
        ("web01", "count_msg"): 0,
        ("web01", "list_msg"): 0,
        ("web01", "spamassassin"): 0,
        ("web03", "count_msg"): 0,
        ("web03", "list_msg"): 0,
        ("web03", "clamav"): 0,
    }
    errors = {labels for (name, labels), _ in s.items() if name == "brainycp_poll_errors_total"}
    assert len(errors) == 6 * len(ZERO_REASONS)
    assert not any(dict(labels)["panel"] == "web02" for labels in errors)
