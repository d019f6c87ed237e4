"""What the exporter counts, what an alert names and what the remediator deletes are the
same messages (brainycp/queue/identity.py): senders compare by their exact local part and
an ASCII-folded domain, and a sender longer than a label can hold stays selectable.

The seams are tested whole: the real exporter counts senders on the simulator, its label
values go into alerts, and the real remediator deletes on the simulator; then the same on
a real Exim queue, with Exim's own tools as the truth.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from brainycp.config.loader import parse_shared
from brainycp.panel.client import PanelClient
from brainycp.queue import QueueMessage, ReadOptions, read_listing
from brainycp.queue.identity import (
    LABEL_LIMIT,
    domain_key,
    is_cut_label,
    label_value,
    recipient_domain,
    sender_key,
    sender_matches,
)
from remediator.actions import messages as actions
from remediator.settings.rules import Rule, Selection
from tests.exim_support import EximQueue, temporary_queue
from tests.remediator_support import (
    TOKEN,
    am_alert,
    notification,
    only_result,
    remediator_cmd,
    write_config,
)
from tests.support import exporter_cmd, serving, sim_args, wait_until

KELVIN = "\u212aing@example.org"  # U+212A KELVIN SIGN: str.lower() makes it "king"
LONG_A = "a" * 300 + "@spam.example"
LONG_B = "a" * 300 + "b@spam.example"  # the same first 300 characters as LONG_A
LONG_C = "c" * 300 + "@" + "d" * 200 + ".example"  # no "@" in the cut label


def message(sender: str, *recipients: str) -> QueueMessage:
    return QueueMessage("1xW6VZ-0000xu-1S", 600.0, 500, sender, recipients, False, False)


# ------------------------------------------------------------------ the comparison


def test_the_kelvin_sign_is_not_k_and_only_ascii_domains_fold() -> None:
    assert KELVIN.lower() == "king@example.org"  # what went wrong before
    assert sender_key(KELVIN) == KELVIN
    assert sender_key("King@Example.ORG") == "King@example.org"
    assert sender_key("x@\u212a.example") == "x@\u212a.example"
    assert sender_key("<>") == "<>" and sender_key("root") == "root"
    assert domain_key("Big.\u212a.EXAMPLE") == "big.\u212a.example"
    assert recipient_domain("<Bob@Example.NET>") == "example.net"
    assert recipient_domain("@x") is None and recipient_domain("noat") is None


def test_selection_by_sender_takes_exactly_the_metrics_sender() -> None:
    select = {"sender": KELVIN}
    rule = Rule.model_validate(
        {"name": "r", "matchers": ['a="b"'], "action": "delete_messages", "select": select}
    )
    assert rule.select is not None
    assert actions.selected(message(KELVIN), rule.select)
    assert not actions.selected(message("king@example.org"), rule.select)
    assert not actions.selected(message("King@example.org"), rule.select)
    assert actions.selected(message("\u212aing@EXAMPLE.org"), rule.select)
    assert sender_matches("alice@example.org", "<alice@Example.ORG>")
    assert sender_matches("<>", "<>") and not sender_matches("a@b", "<>")


def test_recipient_domains_compare_the_same_way() -> None:
    select = {"recipient_domain": "k.example"}
    rule = Rule.model_validate(
        {"name": "r", "matchers": ['a="b"'], "action": "delete_messages", "select": select}
    )
    assert rule.select is not None
    assert actions.selected(message("a@b", "x@K.EXAMPLE"), rule.select)
    assert not actions.selected(message("a@b", "x@\u212a.example"), rule.select)


def test_a_long_sender_keeps_a_hash_of_itself_in_its_label() -> None:
    labels = {label_value(sender) for sender in (LONG_A, LONG_B, LONG_C)}
    assert len(labels) == 3
    for sender in (LONG_A, LONG_B, LONG_C):
        label = label_value(sender)
        assert len(label) == LABEL_LIMIT and is_cut_label(label)
        assert sender_matches(sender, label)
        assert sender_matches(sender.replace("@spam.example", "@SPAM.example"), label)
    # The domain of a long local part stays readable; a long domain is cut like the rest.
    assert re.fullmatch(r"a+\u2026@spam\.example\[sha256:[0-9a-f]{16}\]", label_value(LONG_A))
    assert re.fullmatch(r"c+\u2026\[sha256:[0-9a-f]{16}\]", label_value(LONG_C))
    assert not sender_matches(LONG_B, label_value(LONG_A))
    assert not sender_matches(LONG_A[:LABEL_LIMIT], label_value(LONG_A))
    assert label_value(KELVIN) == KELVIN and not is_cut_label(KELVIN)
    # A short sender shaped like a cut label cannot take another sender's label: its own
    # label carries its own hash.
    lookalike = label_value(LONG_A)  # as a sender of its own
    assert is_cut_label(lookalike) and label_value(lookalike) != lookalike
    assert sender_matches(lookalike, label_value(lookalike))
    assert not sender_matches(lookalike, label_value(LONG_A))


def test_an_alert_label_that_was_cut_is_accepted_as_a_selection() -> None:
    select = Selection(sender="{{ labels.sender }}")
    for sender in (LONG_A, LONG_C):  # LONG_C's label has no "@" left
        resolved = select.resolve({"sender": label_value(sender)})
        assert resolved.sender == label_value(sender)
    with pytest.raises(ValueError, match="not an e-mail address"):
        select.resolve({"sender": LONG_C[:200]})


def test_the_exporter_counts_spellings_as_the_remediator_selects_them() -> None:
    listing = "".join(
        f" 5m   350 1xW6VZ-{i:06d}-1S <{sender}>\n          r@example.net\n\n"
        for i, sender in enumerate(
            [KELVIN] * 3 + ["king@example.org"] * 2 + ["king@EXAMPLE.org", "King@example.org"]
        )
    )
    reading = read_listing(listing, options=ReadOptions(top_senders=10))
    assert reading.top_senders == (
        ("king@example.org", 3),
        (KELVIN, 3),
        ("King@example.org", 1),
    )


# ------------------------------------------------------------------ on the simulator


def sender_series(exporter: str) -> dict[str, float]:
    text = httpx.get(f"{exporter}/metrics", timeout=5).text
    return {
        sample.labels["sender"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "brainycp_mail_queue_sender_messages"
    }


@pytest.mark.e2e
def test_alerts_on_exported_senders_delete_exactly_those_senders_mail(tmp_path: Path) -> None:
    """Exporter metric -> alert labels -> remediator selection, on the simulator: an alert
    for the Kelvin-sign sender leaves king@'s mail alone, and an alert on a cut label
    deletes that long sender's mail and not the one that shares its first 300 characters."""
    rules = [
        {
            "name": "contain-sender",
            "matchers": ['alertname="BrainyCPMailSenderSurge"'],
            "action": "delete_messages",
            "select": {"sender": "{{ labels.sender }}"},
            "cooldown": "0s",
        }
    ]
    senders = {KELVIN: 3, "king@example.org": 2, "king@EXAMPLE.org": 1, LONG_A: 2, LONG_B: 1}
    sim_cmd = sim_args(0, "--panel", "spam:quiet:exim", "--messages", "0")
    with serving(sim_cmd, log=tmp_path / "sim.log") as simulator:
        sim = simulator.url
        config = write_config(
            tmp_path / "config.yml", simulator.port, None, tmp_path / "s.sqlite", rules,
            panels=("spam",),
        )  # fmt: skip
        data = yaml.safe_load(config.read_text())
        data["exporter"] = {"interval": "1s", "list_interval": "1s", "top_senders": 20}
        config.write_text(yaml.safe_dump(data))
        panel = f"{sim}/panel/spam/_sim"
        httpx.post(f"{panel}/pause", json={"paused": True}).raise_for_status()
        for sender, count in senders.items():
            body = {"add": count, "sender": sender, "recipient": "r@example.net"}
            httpx.post(f"{panel}/queue", json=body).raise_for_status()
        with (
            serving(exporter_cmd(config), log=tmp_path / "exp.log") as exporter_daemon,
            serving(remediator_cmd(config), log=tmp_path / "rem.log") as remediator_daemon,
        ):
            exporter, remediator = exporter_daemon.url, remediator_daemon.url
            counted = wait_until(
                lambda: (s := sender_series(exporter)) and sum(s.values()) == 9 and s,
                timeout=30,
                what="the exporter to count the nine messages by sender",
            )
            assert counted == {
                KELVIN: 3,
                "king@example.org": 3,
                label_value(LONG_A): 2,
                label_value(LONG_B): 1,
            }
            client = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

            def contain(label: str) -> dict[str, Any]:
                alert = am_alert("BrainyCPMailSenderSurge", "spam", starts_at=label[-8:])
                alert["labels"]["sender"] = label
                response = client.post(f"{remediator}/webhook", json=notification(alert))
                action_id = only_result(response)["action_id"]
                return dict(
                    wait_until(
                        lambda: (
                            (row := client.get(f"{remediator}/actions/{action_id}").json())
                            and row["outcome"] not in ("pending", "running")
                            and row
                        ),
                        what=f"the action on {label[:20]} to finish",
                    )
                )

            assert contain(KELVIN)["outcome"] == "succeeded"
            assert contain(label_value(LONG_A))["outcome"] == "succeeded"
            left = wait_until(
                lambda: (s := sender_series(exporter)) and sum(s.values()) == 4 and s,
                timeout=30,
                what="the exporter to count what is left",
            )
            assert left == {"king@example.org": 3, label_value(LONG_B): 1}
            client.close()


# ------------------------------------------------------------------ on a real Exim queue


@pytest.fixture
def queue() -> Iterator[EximQueue]:
    with temporary_queue() as exim_queue:
        yield exim_queue


@pytest.mark.e2e
def test_a_kelvin_sign_alert_leaves_kings_mail_in_a_real_exim_queue(
    queue: EximQueue, tmp_path: Path
) -> None:
    kelvin = {queue.submit(KELVIN, "r1@example.net") for _ in range(2)}
    king = {queue.submit("king@example.org", "r2@example.net") for _ in range(2)}
    # Exim refuses addresses over 256 characters: long senders are the simulator's test.
    other = queue.submit("King@Example.ORG", "r3@example.net")
    args = sim_args(0, "--mta", "exim", "--users", "admin:pw:root")
    args += ["--exim", queue.exim, "--exiqgrep", queue.exiqgrep]
    args += ["--exim-config", str(queue.config)]
    with serving(args, log=tmp_path / "sim.log") as simulator:
        sim = simulator.url
        panel = parse_shared(
            {"panels": {"mx": {"url": f"{sim}/api/api.php", "username": "admin", "password": "pw"}}}
        ).panels["mx"]

        async def run() -> tuple[Any, ...]:
            async with PanelClient(panel) as client:
                # The exporter's reading: the label values it exports.
                listing = await client.list_msg()
                exported = read_listing(listing.detail, time.time(), options=ReadOptions(10))
                outcomes = []
                for label in (KELVIN,):
                    assert label in dict(exported.top_senders)
                    rule = Rule.model_validate(
                        {
                            "name": "contain",
                            "matchers": ['alertname="X"'],
                            "action": "delete_messages",
                            "select": {"sender": "{{ labels.sender }}"},
                        }
                    )
                    assert rule.select is not None
                    resolved = rule.model_copy(
                        update={"select": rule.select.resolve({"sender": label})}
                    )
                    outcomes.append(await actions.run(client, resolved))
                return exported, outcomes

        exported, outcomes = asyncio.run(run())
    assert dict(exported.top_senders) == {KELVIN: 2, "king@example.org": 2, "King@example.org": 1}
    [outcome] = outcomes
    assert outcome.outcome == "succeeded", outcome.reason
    assert {m.id for m in outcome.messages} == kelvin
    # The truth, from Exim: only the Kelvin-sign sender's messages left the queue.
    assert set(queue.ids()) == king | {other}
