"""One panel never hurts another: absurd answers are failed polls with a reason, every
exception in a poll is recorded, and ``/metrics`` always renders.

In process, with an ``httpx.MockTransport`` per panel; the real processes against a
hostile panel server are in ``test_exporter_hostile.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from brainycp.queue import summarize
from exporter.app import create_app
from exporter.collector import render_bytes
from exporter.poller import Poller, initial_state
from exporter.settings import parse_config
from exporter.state import ExporterState

os.environ.setdefault("BRAINYCP_TEST_PW", "pw")

OK_STATUS = {"error": 0, "detail": "Active: active (running) since Mon"}
EXIM_LISTING = " 5m  1.2K 1a2B3c-000001-AB <alice@example.com>\n          bob@example.org\n"

Answer = bytes | dict[str, Any]
Panel = Callable[[str], Answer]


def operation_of(request: httpx.Request) -> str:
    form = parse_qs(request.content.decode())
    for op in ("count_msg", "list_msg", "clamav", "spamassassin"):
        if form.get(op) == ["1"]:
            return op
    raise AssertionError(f"no operation in {form}")


def healthy(op: str) -> Answer:
    if op == "count_msg":
        return {"error": 0, "detail": 1}
    if op == "list_msg":
        return {"error": 0, "detail": EXIM_LISTING}
    return OK_STATUS


def with_count(raw: bytes) -> Panel:
    """A panel whose count_msg answers ``raw`` (bytes as sent) and is otherwise healthy."""
    return lambda op: raw if op == "count_msg" else healthy(op)


def with_listing(detail: Any) -> Panel:
    return lambda op: {"error": 0, "detail": detail} if op == "list_msg" else healthy(op)


def handler(panel: Panel) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        answer = panel(operation_of(request))
        if isinstance(answer, bytes):
            return httpx.Response(200, content=answer)
        return httpx.Response(200, json=answer)

    return handle


def config_for(names: list[str], **exporter: Any) -> Any:
    return parse_config(
        {
            "defaults": {"username": "admin", "password_env": "BRAINYCP_TEST_PW"},
            "panels": {n: {"url": f"http://127.0.0.1:9/{n}/api/api.php"} for n in names},
            "exporter": exporter,
        }
    )


def poll(
    panels: dict[str, Panel],
    rounds: int = 1,
    between: Callable[[ExporterState], None] = lambda state: None,
    **exporter: Any,
) -> ExporterState:
    """Poll every panel ``rounds`` times in process, calling ``between`` with the state
    between two rounds; the state afterwards."""
    config = config_for(list(panels), **exporter)

    async def run() -> ExporterState:
        state = initial_state(config)
        poller = Poller(
            config,
            state,
            transport_factory=lambda p: httpx.MockTransport(handler(panels[p.name])),
        )
        try:
            for index in range(rounds):
                if index:
                    between(state)
                await poller.poll_once()
        finally:
            await poller.aclose()
        return state

    return asyncio.run(run())


def scrape(state: ExporterState) -> tuple[int, str]:
    """``/metrics`` of the app over ``state``: status and text."""

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(state))
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return await client.get("/metrics")

    response = asyncio.run(get())
    return response.status_code, response.text


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def reason_of(state: ExporterState, panel: str, operation: str) -> str:
    op = state.panels[panel].operations[operation]
    assert op.attempted
    return op.last_reason if not op.success else "ok"


ABSURD_COUNTS = {
    "float_overflow": (b'{"error": 0, "detail": 1e400}', "bad_detail"),
    "over_2_53": (b'{"error": 0, "detail": 9007199254740993}', "bad_detail"),
    "superscript_two": ('{"error": 0, "detail": "\u00b2"}'.encode(), "bad_detail"),
    "5000_digit_string": (b'{"error": 0, "detail": "' + b"9" * 5000 + b'"}', "bad_detail"),
    "5000_digit_number": (b'{"error": 0, "detail": ' + b"9" * 5000 + b"}", "not_json"),
    "nan": (b'{"error": 0, "detail": NaN}', "bad_detail"),
    "negative": (b'{"error": 0, "detail": -1}', "bad_detail"),
    "error_infinity": (b'{"error": Infinity, "detail": 1}', "bad_detail"),
    "error_nan": (b'{"error": NaN, "detail": 1}', "bad_detail"),
    "deep_json": (b'{"error": 0, "detail": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not_json"),
    "not_utf8": (b'{"error": 0, "detail": "\xff\xfe"}', "not_json"),
}


@pytest.mark.parametrize("case", sorted(ABSURD_COUNTS))
def test_an_absurd_count_is_a_failed_poll_with_its_reason_and_the_scrape_renders(
    case: str,
) -> None:
    raw, reason = ABSURD_COUNTS[case]
    state = poll({"good": with_count(b'{"error": 0, "detail": 4}'), "bad": with_count(raw)})
    assert reason_of(state, "bad", "count_msg") == reason
    status, text = scrape(state)
    assert status == 200
    s = samples(text)
    # A panel that never succeeded has brainycp_up 0: BrainyCPPanelDown can fire.
    assert s[("brainycp_up", (("panel", "bad"),))] == 0
    assert s[("brainycp_up", (("panel", "good"),))] == 1
    assert s[("brainycp_mail_queue_messages", (("panel", "good"),))] == 4
    assert ("brainycp_mail_queue_messages", (("panel", "bad"),)) not in s
    key = (
        "brainycp_poll_errors_total",
        (("operation", "count_msg"), ("panel", "bad"), ("reason", reason)),
    )
    assert s[key] == 1


def test_a_panel_that_worked_goes_down_when_its_answer_turns_absurd() -> None:
    answers = {"count": b'{"error": 0, "detail": 3}'}
    panel: Panel = lambda op: answers["count"] if op == "count_msg" else healthy(op)  # noqa: E731

    def turn_absurd(state: ExporterState) -> None:
        assert state.panels["p"].operations["count_msg"].success
        answers["count"] = '{"error": 0, "detail": "\u00b2"}'.encode()

    state = poll({"p": panel}, rounds=2, between=turn_absurd)
    s = samples(scrape(state)[1])
    assert s[("brainycp_up", (("panel", "p"),))] == 0
    # The last good value stays while fresh: unknown is not empty.
    assert s[("brainycp_mail_queue_messages", (("panel", "p"),))] == 3


def test_sizes_adding_past_the_float_range_are_bad_detail() -> None:
    huge = [{"id": f"m{i}", "size": 1.5e308, "age": 10, "sender": "a@b"} for i in range(3)]
    state = poll({"p": with_listing(huge), "q": with_listing(EXIM_LISTING)})
    status, text = scrape(state)
    assert status == 200
    assert reason_of(state, "q", "list_msg") == "ok"
    # A parser that caps a message's size may count these as unparsed instead: either
    # way no absurd size reaches the exposition.
    if reason_of(state, "p", "list_msg") == "ok":
        assert samples(text)[("brainycp_mail_queue_size_bytes", (("panel", "p"),))] <= 2**53
    else:
        assert reason_of(state, "p", "list_msg") == "bad_detail"


def test_ages_adding_past_the_float_range_are_bad_detail() -> None:
    old = [{"id": f"m{i}", "size": 10, "age": 1.7e308, "sender": "a@b"} for i in range(3)]
    state = poll({"p": with_listing(old)})
    assert scrape(state)[0] == 200
    assert reason_of(state, "p", "list_msg") in ("bad_detail", "ok")
    summary = state.panels["p"].summary
    assert summary is None or summary.age_sum_seconds < float("inf")


def test_a_sender_with_a_lone_surrogate_is_exported_with_a_replacement_character() -> None:
    # JSON escapes can spell a lone surrogate, which UTF-8 cannot encode.
    raw = (
        b'{"error": 0, "detail": [{"id": "m1", "size": 10, "age": 5, "sender": "ev\\ud800il@x"},'
        b' {"id": "m2", "size": 10, "age": 5, "sender": "ok@x"}]}'
    )
    panels: dict[str, Panel] = {
        "p": lambda op: raw if op == "list_msg" else healthy(op),
        "q": healthy,
    }
    state = poll(panels, top_senders=5)
    assert reason_of(state, "p", "list_msg") == "ok"
    status, text = scrape(state)
    assert status == 200
    s = samples(text)
    assert (
        s[("brainycp_mail_queue_sender_messages", (("panel", "p"), ("sender", "ev\ufffdil@x")))]
        == 1
    )
    assert s[("brainycp_up", (("panel", "q"),))] == 1


def test_a_panel_whose_series_cannot_render_is_left_out_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Values that the checks would refuse, put into the state behind their back: the
    # renderer is the last line of defence.
    state = poll({"p": healthy, "q": healthy, "r": healthy}, top_senders=3)
    state.panels["p"].queue_messages = 10**400
    state.panels["r"].top_senders = (("bad\udc80", 1),)
    with caplog.at_level(logging.ERROR, logger="exporter.collector"):
        for _ in range(3):
            status, text = scrape(state)
            assert status == 200
    s = samples(text)
    assert not any(
        dict(labels).get("panel") in ("p", "r")
        for name, labels in s
        if name != "brainycp_exporter_render_errors_total"
    )
    assert s[("brainycp_up", (("panel", "q"),))] == 1
    assert s[("brainycp_exporter_render_errors_total", (("panel", "p"),))] == 3
    assert s[("brainycp_exporter_render_errors_total", (("panel", "r"),))] == 3
    # Logged once per panel, not once per scrape.
    assert len([r for r in caplog.records if "left out" in r.getMessage()]) == 2


def test_an_exception_from_our_own_code_is_an_internal_failure_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from brainycp.panel.client import PanelClient

    async def broken(self: PanelClient) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(PanelClient, "count_msg", broken)
    with caplog.at_level(logging.WARNING, logger="exporter.poller"):
        state = poll({"p": healthy}, rounds=3)
    op = state.panels["p"].operations["count_msg"]
    assert (op.success, op.last_reason, op.errors) == (False, "internal", {"internal": 3})
    assert op.last_detail == "RuntimeError"
    with_traceback = [r for r in caplog.records if r.exc_info]
    assert len(with_traceback) == 1
    assert samples(scrape(state)[1])[("brainycp_up", (("panel", "p"),))] == 0


def test_a_crash_outside_one_call_still_marks_the_panel_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = config_for(["p"])

    async def run() -> ExporterState:
        state = initial_state(config)
        poller = Poller(
            config, state, transport_factory=lambda p: httpx.MockTransport(handler(healthy))
        )

        async def crash(name: str) -> bool:
            raise KeyError(name)

        crash.__name__ = "poll_status"
        try:
            await poller._tracked(crash, "p")
        finally:
            await poller.aclose()
        return state

    state = asyncio.run(run())
    assert reason_of(state, "p", "count_msg") == "internal"


# ------------------------------------------------------------------------------ hypothesis

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["\ud800", "\u00b2", "9" * 400, "1e400", "-0", " 12 "])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
listing_objects = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.text(max_size=8) | st.integers(),
            "size": json_scalars,
            "age": json_scalars,
            "sender": st.text(max_size=10) | json_scalars,
            "frozen": json_scalars,
            "recipients": json_values,
        },
    ),
    max_size=5,
)
answers = st.one_of(
    st.fixed_dictionaries({"error": json_scalars, "detail": json_values}),
    st.fixed_dictionaries({"error": st.just(0), "detail": listing_objects}),
    st.fixed_dictionaries({"error": st.just(0), "detail": st.text(max_size=200)}),
    json_values,
)


def _encode(answer: Any) -> bytes:
    # allow_nan: NaN and Infinity are what a PHP panel can print; surrogates as escapes.
    return json.dumps(answer, allow_nan=True).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(count=answers, listing=answers, status=answers)
def test_any_panel_answer_is_a_result_or_a_failed_poll_and_the_scrape_renders(
    count: Any, listing: Any, status: Any
) -> None:
    by_op = {"count_msg": count, "list_msg": listing, "clamav": status, "spamassassin": status}
    panels: dict[str, Panel] = {"odd": lambda op: _encode(by_op[op]), "good": healthy}
    state = poll(panels, top_senders=3)
    for name in ("count_msg", "list_msg", "clamav", "spamassassin"):
        assert state.panels["odd"].operations[name].attempted
        assert state.panels["odd"].operations[name].last_reason != "internal"
    body = render_bytes(state, 0.0)
    assert body.decode("utf-8")
    s = samples(body.decode())
    assert s[("brainycp_up", (("panel", "good"),))] == 1
    assert ("brainycp_up", (("panel", "odd"),)) in s
    assert not state.render_errors


@settings(max_examples=100, deadline=None)
@given(detail=st.text(max_size=300) | st.lists(st.text(max_size=60), max_size=6) | listing_objects)
def test_the_parser_and_the_checks_turn_any_listing_into_a_summary_or_bad_value(
    detail: Any,
) -> None:
    from exporter.state import PanelState
    from exporter.values import BadValue, check_summary

    try:
        summary = check_summary(summarize(detail, 1e9))
    except BadValue:
        return
    # What passes the checks renders.
    panel = PanelState(name="p", summary=summary)
    panel.record_success("list_msg", 1e9, 0.1)
    state = ExporterState.for_panels([panel])
    assert 'panel="p"' in render_bytes(state, 1e9).decode()
    assert not state.render_errors
