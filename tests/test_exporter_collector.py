"""The collector on hand-built state: no sockets, no clock, no panel."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from brainycp.queue import AGE_BUCKETS, QueueSummary, ReadOptions, read_listing, summarize
from exporter.app import build_registry
from exporter.collector import build_families
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
    assert not any(name == "brainycp_poll_errors_total" for name, _ in s)


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


def test_a_panel_never_polled_has_no_series_yet_but_its_info() -> None:
    s = scrape(state_of(PanelState(name="new", daemons=("clamav",)), healthy_panel()))
    assert [name for name, labels in s if dict(labels).get("panel") == "new"] == [
        "brainycp_panel_info"
    ]
    assert value(s, "brainycp_up", panel="web01") == 1


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
