"""The spam-outbreak and robustness families: recipient domains, deferral reasons and
unparsed lines, from real listings through the collector's text writer."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from brainycp.queue import DEFERRAL_REASONS, ReadOptions, read_listing, summarize
from brainycp.queue.identity import recipient_domain
from exporter.state import ExporterState, PanelState
from tests.golden_support import render_text
from tests.support import FIXTURES

NOW = 1_795_675_500.0  # just after the fixtures were captured


def listed(detail: object, top: int = 0, name: str = "web01") -> ExporterState:
    panel = PanelState(name=name, daemons=())
    panel.record_success("count_msg", NOW - 5, 0.01)
    panel.record_success("list_msg", NOW - 5, 0.02)
    panel.summary = summarize(detail, NOW)
    panel.queue_messages = panel.summary.messages
    reading = read_listing(detail, NOW, options=ReadOptions(top, top))
    panel.top_senders, panel.top_recipient_domains = (
        reading.top_senders,
        reading.top_recipient_domains,
    )
    return ExporterState.for_panels(
        [panel], max_staleness=600, top_senders=top, top_recipient_domains=top
    )


def samples(state: ExporterState) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render_text(state, NOW)
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def family(values: dict, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (metric, labels), v in values.items() if metric == name}


def test_recipient_domains_count_messages_once_per_domain() -> None:
    detail = (FIXTURES / "exim-bp.txt").read_text()
    reading = read_listing(detail, NOW, options=ReadOptions(2, 2))
    assert reading.top_senders == read_listing(detail, NOW, options=ReadOptions(2)).top_senders
    # exim-bp: 7 messages with a pending example.net recipient, 5 with example.com (the
    # staff message has both, and counts once in each; delivered recipients do not count).
    assert reading.top_recipient_domains == (("example.net", 7), ("example.com", 5))
    addresses = ["<Bob@Example.NET>", "carol@example.net", "root", "@x", "a@"]
    assert {recipient_domain(a) for a in addresses} == {"example.net", None}


def test_recipient_domain_family_only_when_enabled_and_bounded() -> None:
    detail = (FIXTURES / "postfix-mailq.txt").read_text()
    off = family(samples(listed(detail)), "brainycp_mail_queue_recipient_domain_messages")
    assert off == {}
    on = family(samples(listed(detail, top=2)), "brainycp_mail_queue_recipient_domain_messages")
    assert on == {
        (("domain", "example.net"), ("panel", "web01")): 6.0,
        (("domain", "example.com"), ("panel", "web01")): 4.0,
    }


def test_deferral_reasons_are_exported_for_postfix_and_absent_for_exim() -> None:
    postfix = samples(listed((FIXTURES / "postfix-mailq-active.txt").read_text()))
    reasons = family(postfix, "brainycp_mail_queue_deferral_reason_messages")
    assert {dict(labels)["reason"] for labels in reasons} == set(DEFERRAL_REASONS)
    assert reasons[(("panel", "web01"), ("reason", "other"))] == 10
    assert sum(reasons.values()) == 10
    exim = samples(listed((FIXTURES / "exim-bp.txt").read_text()))
    assert family(exim, "brainycp_mail_queue_deferral_reason_messages") == {}


def test_unparsed_lines_are_exported() -> None:
    detail = "exim: warning\n" + (FIXTURES / "exim-bp.txt").read_text() + "-- cut --\n"
    values = samples(listed(detail))
    assert values[("brainycp_mail_queue_unparsed_lines", (("panel", "web01"),))] == 2
    clean = samples(listed((FIXTURES / "exim-bp.txt").read_text()))
    assert clean[("brainycp_mail_queue_unparsed_lines", (("panel", "web01"),))] == 0


def test_hostile_listing_values_still_render() -> None:
    # A lone surrogate in an address (a JSON escape), a 5e30-byte size: /metrics renders,
    # the labels are valid UTF-8, and the huge message is an unparsed line, not bytes.
    lines = [
        {"queue_name": "deferred", "queue_id": "AAAAA11111", "arrival_time": NOW - 60,
         "message_size": 10, "sender": "sp\ud800m@example.org",
         "recipients": [{"address": "x@ex\udfffample.net", "delay_reason": "Connection refused"}]},
        {"queue_name": "deferred", "queue_id": "BBBBB22222", "arrival_time": NOW - 60,
         "message_size": 5e30, "sender": "a@example.org", "recipients": []},
    ]  # fmt: skip
    detail = "\n".join(json.dumps(line) for line in lines)
    state = listed(detail, top=5)
    text = render_text(state, NOW)
    text.encode("utf-8")
    values = samples(state)
    assert values[("brainycp_mail_queue_size_bytes", (("panel", "web01"),))] == 10
    assert values[("brainycp_mail_queue_unparsed_lines", (("panel", "web01"),))] == 1
    sender = (("panel", "web01"), ("sender", "sp\ufffdm@example.org"))
    assert values[("brainycp_mail_queue_sender_messages", sender)] == 1
    domain = (("domain", "ex\ufffdample.net"), ("panel", "web01"))
    assert values[("brainycp_mail_queue_recipient_domain_messages", domain)] == 1
    refused = (("panel", "web01"), ("reason", "connection_refused"))
    assert values[("brainycp_mail_queue_deferral_reason_messages", refused)] == 1
