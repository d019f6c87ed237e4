"""The planner's safety rules, with an in-memory journal and an injected clock."""

from __future__ import annotations

import pytest

from remediator.planner import Settings
from remediator.settings.rules import RateLimit, Rule
from tests.planner_support import (
    T0,
    Harness,
    alert,
    rule,
)


def harness(*rules: Rule, **kw: object) -> Harness:
    settings = Settings(rules=rules, panels={"web01", "web02"}, **kw)  # type: ignore[arg-type]
    return Harness(settings)


def test_first_matching_rule_wins_even_when_a_later_rule_also_matches() -> None:
    h = harness(
        rule("first", 'alertname=~"BrainyCP.*"', cooldown=0),
        rule("second", 'alertname="BrainyCPMailFrozenMessages"', cooldown=0),
    )
    assert h.send(alert(), T0).rule.name == "first"  # type: ignore[union-attr]


def test_regex_matchers_are_anchored_and_negative_matchers_exclude() -> None:
    h = harness(
        rule("warn", 'alertname="BrainyCPMailFrozenMessages"', 'severity=~"warn"'),
        rule("not-test", 'alertname="BrainyCPMailFrozenMessages"', 'env!~"test|dev"'),
    )
    # "warning" does not match the anchored "warn"; env=prod passes !~.
    d = h.send(alert(severity="warning", env="prod"), T0)
    assert d.rule is not None and d.rule.name == "not-test"
    d = h.send(alert(severity="warning", env="test", starts_at="x"), T0)
    assert d.outcome == "ignored" and d.rule is None and not d.record


def test_three_identical_notifications_accept_one_action() -> None:
    h = harness(rule("clean", 'alertname="BrainyCPMailFrozenMessages"'))
    outcomes = [h.send(alert(), T0 + i).outcome for i in range(3)]
    assert outcomes == ["pending", "skipped_duplicate", "skipped_duplicate"]


def test_duplicate_of_a_finished_episode_is_still_a_duplicate_without_rerun_after() -> None:
    h = harness(rule("clean", 'alertname="BrainyCPMailFrozenMessages"', cooldown=0))
    h.send(alert(), T0)
    h.finish_all(T0 + 1)
    d = h.send(alert(), T0 + 86400)
    assert d.outcome == "skipped_duplicate" and "succeeded" in d.reason


def test_rerun_after_runs_the_same_episode_again_once_it_has_passed() -> None:
    h = harness(
        rule("clean", 'alertname="BrainyCPMailFrozenMessages"', rerun_after=3600, cooldown=60)
    )
    assert h.send(alert(), T0).outcome == "pending"
    assert h.send(alert(), T0 + 100).outcome == "skipped_duplicate"  # still pending
    h.finish_all(T0 + 200)
    assert h.send(alert(), T0 + 3599).outcome == "skipped_duplicate"
    assert h.send(alert(), T0 + 3600).outcome == "pending"


def test_new_episode_inside_cooldown_is_skipped_and_after_cooldown_runs() -> None:
    h = harness(rule("clean", 'alertname="BrainyCPMailFrozenMessages"', cooldown=1800))
    assert h.send(alert(starts_at="a"), T0).outcome == "pending"
    d = h.send(alert(starts_at="b"), T0 + 1799)
    assert d.outcome == "skipped_cooldown"
    assert h.send(alert(starts_at="c"), T0 + 1800).outcome == "pending"


def test_cooldown_is_per_rule_and_panel() -> None:
    h = harness(rule("clean", 'alertname="BrainyCPMailFrozenMessages"', cooldown=1800))
    assert h.send(alert(panel="web01"), T0).outcome == "pending"
    assert h.send(alert(panel="web02"), T0 + 1).outcome == "pending"


def test_global_rate_limit_is_a_sliding_window_over_accepted_actions() -> None:
    h = harness(
        rule("clean", 'alertname="BrainyCPMailFrozenMessages"', cooldown=0),
        rate_limit=RateLimit(max_actions=2, per=60),
    )
    got = [h.send(alert(starts_at=str(i)), T0 + i).outcome for i in range(3)]
    assert got == ["pending", "pending", "skipped_rate_limit"]
    # Skips do not count; the first action leaves the window at T0 + 60.
    assert h.send(alert(starts_at="late"), T0 + 60).outcome == "pending"


def test_resolved_cancels_a_pending_action_of_the_same_episode() -> None:
    h = harness(rule("clean", 'alertname="BrainyCPMailFrozenMessages"'))
    h.send(alert(), T0)
    d = h.send(alert(status="resolved"), T0 + 5)
    assert d.outcome == "cancelled" and len(d.cancel_ids) == 1
    assert h.journal.list()[0].outcome == "cancelled"
    # A copy of the firing notification after that is still a duplicate: one episode, one action.
    assert h.send(alert(), T0 + 6).outcome == "skipped_duplicate"


def test_resolved_without_pending_action_is_ignored_and_not_recorded() -> None:
    h = harness(rule("clean", 'alertname="BrainyCPMailFrozenMessages"'))
    d = h.send(alert(status="resolved"), T0)
    assert d.outcome == "ignored" and not d.record and h.journal.list() == []


def test_rule_on_resolved_runs_on_resolved_and_ignores_firing() -> None:
    h = harness(rule("after", 'alertname="BrainyCPMailFrozenMessages"', on=["resolved"]))
    assert h.send(alert(), T0).outcome == "ignored"
    assert h.send(alert(status="resolved"), T0 + 1).outcome == "pending"


def test_dry_run_global_and_per_rule() -> None:
    h = harness(rule("clean", 'alertname="BrainyCPMailFrozenMessages"', dry_run=True))
    d = h.send(alert(), T0)
    assert d.outcome == "dry_run" and "for this rule" in d.reason
    h2 = harness(rule("clean", 'alertname="BrainyCPMailFrozenMessages"'), dry_run=True)
    assert h2.send(alert(), T0).outcome == "dry_run"
    # A dry run holds the episode like a real run would.
    assert h2.send(alert(), T0 + 1).outcome == "skipped_duplicate"


@pytest.mark.parametrize(
    ("panel", "reason"),
    [(None, "has no 'panel' label"), ("nowhere", "'nowhere' is not configured")],
)
def test_missing_or_unknown_panel_is_rejected_with_the_reason(
    panel: str | None, reason: str
) -> None:
    h = harness(rule("clean", 'alertname="BrainyCPMailFrozenMessages"'))
    d = h.send(alert(panel=panel), T0)
    assert d.outcome == "rejected" and reason in d.reason and d.record
    # A rejection holds nothing: the same alert on a real panel is still accepted.
    assert h.send(alert(), T0).outcome == "pending"


def test_two_alerts_of_one_notification_see_each_other() -> None:
    h = harness(rule("clean", 'alertname="BrainyCPMailFrozenMessages"', cooldown=600))
    a = alert(instance="a")
    b = alert(instance="b")
    assert a.fingerprint != b.fingerprint
    assert [h.send(a, T0).outcome, h.send(b, T0).outcome] == ["pending", "skipped_cooldown"]
