"""The planner's new checks (issue 14) and their order, against an in-memory journal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainycp.config.errors import ConfigError
from remediator import journal as journal_module
from remediator.actions import MessageRecord
from remediator.journal import Journal
from remediator.journal.schema import SQLITE_TYPES
from remediator.manual import MANUAL_RULE, ManualError, parse_request, rule_for_row
from remediator.planner import Settings
from remediator.settings.config import parse_config
from remediator.settings.rules import CircuitBreaker, ManualSettings, Selection
from tests.planner_support import T0, Harness, alert, rule


def harness(*rules: object, panels: int = 2, **kw: object) -> Harness:
    names = {f"web{i:02d}" for i in range(1, panels + 1)}
    return Harness(Settings(rules=rules, panels=names, **kw))  # type: ignore[arg-type]


def fleet_behind(breaker: CircuitBreaker) -> Harness:
    """Ten panels and a rule acting on every alert A, behind ``breaker``."""
    return harness(rule("r", 'alertname="A"', cooldown=0), panels=10, circuit_breaker=breaker)


def test_max_runs_per_episode_exhausts_reruns_of_one_episode() -> None:
    h = harness(rule("r", 'alertname=~".+"', cooldown=0, rerun_after=10, max_runs_per_episode=2))
    assert h.send(alert(), T0).outcome == "pending"
    h.finish_all(T0 + 1)
    assert h.send(alert(), T0 + 5).outcome == "skipped_duplicate"  # rerun_after first
    assert h.send(alert(), T0 + 20).outcome == "pending"
    h.finish_all(T0 + 21)
    third = h.send(alert(), T0 + 40)
    assert third.outcome == "skipped_exhausted" and "max_runs_per_episode" in third.reason
    # A new episode starts counting again.
    assert h.send(alert(starts_at="later"), T0 + 41).outcome == "pending"


def test_pause_skips_without_closing_the_episode_and_dry_run_still_previews() -> None:
    h = harness(rule("r", 'alertname="A"', cooldown=0), rule("d", 'alertname="D"', dry_run=True))
    h.journal.set_control("paused", True, "ops", "", T0)
    assert h.send(alert("A"), T0).outcome == "skipped_paused"
    assert h.send(alert("D"), T0).outcome == "dry_run"  # a preview touches no panel
    h.journal.set_control("paused", False, "ops", "", T0 + 1)
    assert h.send(alert("A"), T0 + 2).outcome == "pending"  # not a duplicate


def test_cooldown_and_duplicates_read_as_such_while_paused() -> None:
    h = harness(rule("r", 'alertname="A"', cooldown=300))
    assert h.send(alert("A"), T0).outcome == "pending"
    h.journal.set_control("paused", True, "ops", "", T0)
    assert h.send(alert("A"), T0 + 1).outcome == "skipped_duplicate"
    assert h.send(alert("A", starts_at="x"), T0 + 2).outcome == "skipped_cooldown"


def test_breaker_opens_on_the_panel_past_the_limit_and_then_refuses_everything() -> None:
    h = fleet_behind(CircuitBreaker(share=0.2, window=600))
    assert h.send(alert("A", panel="web01"), T0).outcome == "pending"
    assert h.send(alert("A", panel="web02"), T0).outcome == "pending"
    # The same panel again does not widen the blast radius.
    assert h.send(alert("A", panel="web02", starts_at="b"), T0).outcome == "pending"
    third = h.send(alert("A", panel="web03"), T0)
    assert third.outcome == "skipped_circuit_open" and third.open_circuit
    assert "3 panels" in third.reason and "limit 2" in third.reason


def test_breaker_window_slides() -> None:
    h = fleet_behind(CircuitBreaker(max_panels=1, window=60))
    assert h.send(alert("A", panel="web01"), T0).outcome == "pending"
    assert h.send(alert("A", panel="web02"), T0 + 30).outcome == "skipped_circuit_open"
    assert h.send(alert("A", panel="web02", starts_at="n"), T0 + 61).outcome == "pending"


def test_an_open_breaker_refuses_until_closed() -> None:
    h = harness(rule("r", 'alertname="A"', cooldown=0))
    h.journal.set_control("circuit_open", True, "circuit_breaker", "storm", T0)
    d = h.send(alert("A"), T0)
    assert d.outcome == "skipped_circuit_open" and not d.open_circuit


def test_approval_comes_last_and_paused_rules_ask_nobody() -> None:
    h = harness(rule("r", 'alertname="A"', cooldown=0, approval="required"))
    assert h.send(alert("A"), T0).outcome == "awaiting_approval"
    # The awaiting request holds the episode.
    assert h.send(alert("A"), T0 + 1).outcome == "skipped_duplicate"
    h.journal.set_control("paused", True, "ops", "", T0)
    assert h.send(alert("A", starts_at="n"), T0 + 2).outcome == "skipped_paused"


def test_resolved_cancels_an_awaiting_approval() -> None:
    h = harness(rule("r", 'alertname="A"', cooldown=0, approval="required"))
    h.send(alert("A"), T0)
    d = h.send(alert("A", status="resolved"), T0 + 1)
    assert d.outcome == "cancelled" and d.cancel_ids


def test_label_templates_fill_the_selection_exactly_and_refuse_bad_values() -> None:
    r = rule(
        "spam", 'alertname="S"', action="delete_messages",
        select={"sender": "{{ labels.sender }}"},
    )  # fmt: skip
    h = harness(r)
    d = h.send(alert("S", sender="Spam@Example.com"), T0)
    assert d.outcome == "pending" and d.select is not None
    assert d.select.sender == "Spam@Example.com"
    for bad in ("", "   ", "*", "a b@c.d", "x" * 400 + "@e.f"):
        d = h.send(alert("S", sender=bad, starts_at=bad), T0)
        assert d.outcome == "rejected", bad
    assert h.send(alert("S", starts_at="none"), T0).outcome == "rejected"


@pytest.mark.parametrize(
    "select",
    [{"sender": "x{{ labels.sender }}"}, {"sender": "{{labels.}}"}, {"sender": "{{ sender }}"}],
)
def test_partial_or_malformed_templates_are_config_errors(select: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="whole value"):
        Selection.model_validate(select)


def _config(**remediator: object) -> dict[str, object]:
    return {"remediator": {"insecure_no_auth": True, **remediator}}


def test_config_names_bad_notify_breaker_and_manual_keys(tmp_path: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_config(
            notify=[{"name": "a", "type": "slack"},
                    {"name": "b", "type": "telegram", "chat_id": 1},
                    {"name": "c", "type": "webhook", "url": "ftp://x", "outcomes": ["nope"]}],
            circuit_breaker={"max_panels": 2, "share": 0.5},
            manual={"actions": ["delete_all"]},
            rules=[{"name": "r", "matchers": ['a="b"'], "action": "delete_frozen",
                    "notify": ["missing"]}],
        ))  # fmt: skip
    text = "\n".join(info.value.errors)
    assert "remediator.notify[0].url: a slack target needs exactly one of url or url_file" in text
    assert "remediator.notify[1].bot_token_file" in text
    assert "remediator.notify[2].url" in text and "remediator.notify[2].outcomes" in text
    assert "remediator.circuit_breaker.max_panels: set exactly one" in text
    assert "remediator.manual.allow_destructive" in text


def test_a_rule_naming_an_unknown_target_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            _config(
                rules=[
                    {
                        "name": "r",
                        "matchers": ['a="b"'],
                        "action": "delete_frozen",
                        "notify": ["missing"],
                    }
                ]
            )
        )
    assert info.value.errors == ["remediator.rules[0].notify: no notify target is named 'missing'"]


def test_journal_keeps_10000_message_records_and_the_exact_total() -> None:
    j = Journal(":memory:")
    action_id = j.insert(
        rule="r", panel="p", action="delete_messages", outcome="pending", reason="",
        received_at=T0, alertname="", fingerprint="f", starts_at="s", alert_status="firing",
        labels={}, dedupe_key="k",
    )  # fmt: skip
    j.claim(action_id, T0)
    records = [MessageRecord(id=f"m{i}", sender="s@x", recipients=1) for i in range(12_345)]
    j.finish(action_id, "succeeded", "", T0, messages=records, messages_total=12_345)
    detail = j.detail(action_id)
    assert detail["messages_total"] == 12_345 and len(detail["messages"]) == 10_000
    assert detail["messages"][0]["id"] == "m0" and detail["messages"][-1]["id"] == "m9999"


def test_a_version_1_journal_is_migrated_to_version_2_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    db = sqlite3.connect(path)
    for statement in journal_module.MIGRATIONS[0]:  # version 1
        db.execute(statement.format(**SQLITE_TYPES))
    db.execute(
        "INSERT INTO actions (rule, panel, action, outcome, received_at, fingerprint, "
        "starts_at, alert_status, dedupe_key, counts, episode) "
        "VALUES ('r', 'p', 'delete_frozen', 'succeeded', 1.0, 'f', 's', 'firing', 'k', 1, 1)"
    )
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    j = Journal(path)
    assert j._db.execute("PRAGMA user_version").fetchone()[0] == journal_module.SCHEMA_VERSION
    (row,) = j.list()
    assert row.outcome == "succeeded"
    assert j.detail(row.id)["origin"] == "alert" and j.detail(row.id)["messages"] == []
    assert not j.paused() and j.set_control("paused", True, "ops", "", 2.0)
    j.close()
    assert Journal(path).paused()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_KEYS = st.sampled_from(
    ["panel", "action", "select", "daemon", "dry_run", "by", "max_messages", "limit", "force",
     "allow_destructive", "sender", "older_than"]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        _JSON,
        st.dictionaries(_KEYS, _JSON, max_size=8),
        st.fixed_dictionaries(
            {"panel": st.just("web01"), "action": st.sampled_from(["delete_messages",
             "delete_frozen", "restart_service", "delete_all"])},
            optional={"select": st.dictionaries(st.sampled_from(
                ["sender", "bounce", "older_than", "larger_than", "frozen", "x"]), _JSON),
                "max_messages": _JSON, "dry_run": _JSON, "allow_destructive": _JSON,
                "daemon": _JSON, "limit": _JSON, "by": _JSON},
        ),
    )
)  # fmt: skip
def test_any_manual_request_is_accepted_or_refused_with_a_status(data: object) -> None:
    settings_ = ManualSettings(
        actions=["delete_messages", "delete_frozen", "restart_service"], allow_destructive=True
    )
    try:
        request = parse_request(data, settings_, {"web01": object()})
    except ManualError as exc:
        assert exc.status in (403, 422) and str(exc)
        return
    assert request.panel == "web01"
    if request.rule.action == "delete_messages":
        assert request.rule.select is not None and not request.rule.select.is_empty()
        assert request.dry_run or (isinstance(data, dict) and data["allow_destructive"] is True)
    # What the journal keeps rebuilds the same rule.
    rebuilt = rule_for_row(MANUAL_RULE, request.rule.action, request.params(), {})
    assert rebuilt == request.rule


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["sender", "panel", "x"]), st.text(max_size=40)))
def test_a_label_template_never_resolves_to_a_pattern_or_an_empty_value(
    labels: dict[str, str],
) -> None:
    select = Selection(sender="{{ labels.sender }}")
    try:
        resolved = select.resolve(labels)
    except ValueError as exc:
        assert "sender" in str(exc)
        return
    assert resolved.sender == labels["sender"].strip()
    assert "@" in resolved.sender and not any(c.isspace() for c in resolved.sender)


def test_rerun_after_never_asks_twice_while_a_request_is_undecided() -> None:
    h = harness(rule("r", 'alertname="A"', cooldown=0, rerun_after=60, approval="required"))
    assert h.send(alert("A"), T0).outcome == "awaiting_approval"
    later = h.send(alert("A"), T0 + 3600)
    assert later.outcome == "skipped_duplicate" and "awaiting_approval" in later.reason
