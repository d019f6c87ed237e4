"""Actions against a fake panel client: live re-read, selection, limits, verification."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from brainycp.panel.answers import QueueListing, ServiceStatus
from brainycp.panel.errors import PanelTimeout
from remediator import actions
from remediator.settings.rules import Rule
from tests.actions_support import FakePanel, Msg, mid, panel_config, rule


def run(panel: FakePanel, r: Rule) -> actions.Outcome:
    return asyncio.run(actions.run(panel, r))  # type: ignore[arg-type]


def test_delete_frozen_with_nothing_frozen_does_not_call_the_panel_action() -> None:
    panel = FakePanel(queue=[Msg(mid(1))])
    out = run(panel, rule("delete_frozen"))
    assert out.outcome == "skipped_nothing_to_do"
    assert panel.calls == [("list_msg",)]


def test_delete_frozen_deletes_and_verifies() -> None:
    panel = FakePanel(queue=[Msg(mid(1), frozen=True), Msg(mid(2), frozen=True), Msg(mid(3))])
    out = run(panel, rule("delete_frozen"))
    assert out.outcome == "succeeded" and "2 -> 0" in out.reason
    assert [c[0] for c in panel.calls] == ["list_msg", "delete_frozen_msg", "list_msg"]


def test_delete_frozen_code_100_is_nothing_to_do() -> None:
    panel = FakePanel(queue=[Msg(mid(1), frozen=True)], frozen_applicable=False)
    assert run(panel, rule("delete_frozen")).outcome == "skipped_nothing_to_do"


def test_delete_all_force_sends_force() -> None:
    panel = FakePanel(queue=[Msg(mid(1))])
    out = run(panel, rule("delete_all", allow_destructive=True, force=True))
    assert out.outcome == "succeeded" and ("delete_all_msg", "True") in panel.calls


def test_delete_all_counts_with_count_msg_so_a_huge_listing_does_not_block_it() -> None:
    panel = FakePanel(queue=[Msg(mid(n)) for n in range(3)], listing_too_large=True)
    out = run(panel, rule("delete_all", allow_destructive=True))
    assert out.outcome == "succeeded" and "3 -> 0" in out.reason
    assert panel.calls == [("count_msg",), ("delete_all_msg", "False"), ("count_msg",)]


def test_delete_all_on_an_empty_queue_is_nothing_to_do() -> None:
    panel = FakePanel()
    assert run(panel, rule("delete_all", allow_destructive=True)).outcome == (
        "skipped_nothing_to_do"
    )
    assert panel.calls == [("count_msg",)]


def test_restart_is_status_off_on_status_and_needs_running_at_the_end() -> None:
    panel = FakePanel(daemons={"clamav": "stopped"})
    out = run(panel, rule("restart_service", daemon="clamav"))
    assert out.outcome == "succeeded"
    assert panel.calls == [
        ("clamav", "status"), ("clamav", "off"), ("clamav", "on"), ("clamav", "status"),
    ]  # fmt: skip


def test_restart_of_a_running_service_is_nothing_to_do() -> None:
    panel = FakePanel()
    assert run(panel, rule("restart_service", daemon="clamav")).outcome == "skipped_nothing_to_do"
    assert panel.calls == [("clamav", "status")]


def test_restart_that_leaves_the_service_stopped_fails() -> None:
    panel = FakePanel(daemons={"clamav": "stopped"}, stuck_on=True)
    out = run(panel, rule("restart_service", daemon="clamav"))
    assert out.outcome == "failed" and "stopped" in out.reason


def test_stop_service() -> None:
    panel = FakePanel()
    assert run(panel, rule("stop_service", daemon="clamav")).outcome == "succeeded"
    assert panel.daemons["clamav"] == "stopped"


def test_delete_messages_selects_by_every_criterion() -> None:
    queue = [
        Msg(mid(1), age_minutes=3000, sender="<>"),  # old bounce: selected
        Msg(mid(2), age_minutes=10, sender="<>"),  # young bounce
        Msg(mid(3), age_minutes=3000),  # old, not a bounce
        Msg(mid(4), age_minutes=4000, sender="<>", recipient="x@other.org"),
    ]
    panel = FakePanel(queue=queue)
    r = rule(
        "delete_messages",
        select={"bounce": True, "older_than": "2d", "recipient_domain": "example.net"},
    )
    out = run(panel, r)
    assert out.outcome == "succeeded"
    assert [c for c in panel.calls if c[0] == "controll_msg"] == [
        ("controll_msg", mid(1), "delete")
    ]


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        ({"sender": "spammer@bad.example"}, {2}),
        ({"sender_domain": "BAD.example"}, {2, 3}),
        ({"larger_than": 1000}, {3}),
        ({"frozen": True}, {1}),
    ],
)
def test_reship_selection(select: dict[str, Any], expected: set[int]) -> None:
    queue = [
        Msg(mid(1), frozen=True),
        Msg(mid(2), sender="spammer@bad.example"),
        Msg(mid(3), sender="other@bad.example", size=5000),
    ]
    panel = FakePanel(queue=queue)
    run(panel, rule("reship_messages", select=select))
    assert {int(c[1][7:13]) for c in panel.calls if c[0] == "controll_msg"} == expected
    assert all(c[2] == "reship" for c in panel.calls if c[0] == "controll_msg")


def test_too_many_messages_refuses_and_touches_nothing() -> None:
    panel = FakePanel(queue=[Msg(mid(i), sender="<>") for i in range(5)])
    out = run(panel, rule("delete_messages", select={"bounce": True}, max_messages=4))
    assert out.outcome == "failed" and out.reason.startswith("too_many_messages")
    assert panel.calls == [("list_msg",)] and len(panel.queue) == 5


def test_limit_first_acts_on_the_oldest() -> None:
    panel = FakePanel(queue=[Msg(mid(i), sender="<>", age_minutes=i * 10) for i in range(1, 6)])
    r = rule("delete_messages", select={"bounce": True}, max_messages=2, limit="first")
    out = run(panel, r)
    assert out.outcome == "succeeded"
    assert [c[1] for c in panel.calls if c[0] == "controll_msg"] == [mid(5), mid(4)]


def test_panel_errors_become_failed_with_the_reason_word() -> None:
    class Broken(FakePanel):
        async def list_msg(self) -> QueueListing:
            raise PanelTimeout("web01", "list_msg", "no answer in 10s")

    out = run(Broken(), rule("delete_frozen"))
    assert out.outcome == "failed" and out.reason.startswith("timeout: list_msg")


@pytest.mark.parametrize(("zone", "chosen"), [("Europe/Moscow", ["A1B2C3D4E5"]), ("UTC", [])])
def test_older_than_reads_postfix_times_in_the_panels_zone(zone: str, chosen: list[str]) -> None:
    """A message queued 2 h ago on a Moscow-time panel: older than 1 h only in its own zone."""

    class MoscowPostfix(FakePanel):
        async def list_msg(self) -> QueueListing:
            self.calls.append(("list_msg",))
            if not self.queue:
                return QueueListing("Mail queue is empty\n", True, 0)
            local = time.gmtime(time.time() - 7200 + 3 * 3600)  # the panel's wall clock
            stamp = time.strftime("%a %b %e %H:%M:%S", local)
            return QueueListing(
                f"A1B2C3D4E5      900 {stamp}  alice@example.org\n    bob@example.net\n", False, 0
            )

    panel = MoscowPostfix(queue=[Msg("A1B2C3D4E5")])
    panel.panel = panel_config(timezone=zone)
    run(panel, rule("delete_messages", select={"older_than": "1h"}))
    assert [c[1] for c in panel.calls if c[0] == "controll_msg"] == chosen


def test_a_failed_read_back_after_a_deletion_is_unverified_and_keeps_the_record() -> None:
    """The panel deleted the messages, then its listing failed: not ``failed`` (that says
    nothing happened), and every deleted message was handed over for the journal before
    the read-back was even asked."""

    class ReadBackFails(FakePanel):
        listed = 0

        async def list_msg(self) -> QueueListing:
            self.listed += 1
            if self.listed == 2:
                self.calls.append(("list_msg", "fails"))
                raise PanelTimeout("p", "list_msg", "no answer in 10s")
            return await super().list_msg()

    for action, select in (("delete_messages", {"sender": "alice@example.org"}),
                           ("delete_frozen", None)):  # fmt: skip
        panel = ReadBackFails(queue=[Msg(mid(n), frozen=True) for n in range(3)])
        seen: list[tuple[str, int]] = []

        async def confirmed(
            records: object,
            total: int | None,
            panel: FakePanel = panel,
            seen: list[tuple[str, int]] = seen,
        ) -> None:
            seen.extend((r.id, len(panel.calls)) for r in records)  # type: ignore[attr-defined]

        extra = {"select": select} if select else {}
        out = asyncio.run(actions.run(panel, rule(action, **extra), confirmed))  # type: ignore[arg-type]
        assert out.outcome == "unverified", (action, out)
        assert "the read-back failed: timeout: list_msg" in out.reason
        assert [m.id for m in out.messages] == [mid(n) for n in range(3)] and not panel.queue
        read_back = panel.calls.index(("list_msg", "fails"))
        assert sorted(i for i, _ in seen) == [mid(n) for n in range(3)]
        assert all(at <= read_back for _, at in seen), (action, seen, panel.calls)


def test_a_service_whose_status_cannot_be_read_back_is_unverified() -> None:
    class StatusFails(FakePanel):
        async def service(self, daemon: str, command: str) -> ServiceStatus:
            if command == "status" and any(c[1] == "on" for c in self.calls):
                raise PanelTimeout("p", "clamav", "no answer in 10s")
            return await super().service(daemon, command)

    panel = StatusFails(daemons={"clamav": "stopped"})
    out = run(panel, rule("start_service", daemon="clamav"))
    assert out.outcome == "unverified" and "the read-back failed" in out.reason
