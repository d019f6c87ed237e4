"""Shared test helpers moved out of test_remediator_planner.py, so that no test imports another."""

from __future__ import annotations

from dataclasses import dataclass, field

from remediator.journal import Journal
from remediator.payload import Alert, fingerprint
from remediator.planner import Decision, Settings, plan
from remediator.settings.rules import Rule

T0 = 1_700_000_000.0


def rule(name: str, *matchers: str, **kw: object) -> Rule:
    data: dict[str, object] = {"name": name, "matchers": list(matchers), "action": "delete_frozen"}
    data.update(kw)
    return Rule.model_validate(data)


def alert(
    name: str = "BrainyCPMailFrozenMessages",
    panel: str | None = "web01",
    status: str = "firing",
    starts_at: str = "2026-11-25T08:00:00Z",
    **labels: str,
) -> Alert:
    all_labels = {"alertname": name, **labels}
    if panel is not None:
        all_labels["panel"] = panel
    return Alert(status, all_labels, {}, starts_at, "", "", fingerprint(all_labels))


@dataclass
class Harness:
    """Plans against a real in-memory journal, recording each decision like the webhook."""

    settings: Settings
    journal: Journal = field(default_factory=lambda: Journal(":memory:"))

    def send(self, a: Alert, now: float) -> Decision:
        d = plan(a, self.settings, self.journal, now)
        if d.cancel_ids:
            self.journal.cancel(d.cancel_ids, "resolved", now)
        if d.record and d.rule is not None:
            self.journal.insert(
                rule=d.rule.name, panel=d.panel, action=d.rule.action, outcome=d.outcome,
                reason=d.reason, received_at=now, alertname=a.alertname,
                fingerprint=a.fingerprint, starts_at=a.starts_at, alert_status=a.status,
                labels=dict(a.labels), dedupe_key=d.dedupe_key,
            )  # fmt: skip
        return d

    def finish_all(self, now: float) -> None:
        for row in self.journal.list(outcome="pending"):
            self.journal.claim(row.id, now)
            self.journal.finish(row.id, "succeeded", "", now)
