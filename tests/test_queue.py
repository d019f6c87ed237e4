"""brainycp.queue: real Exim/Postfix listings (tests/fixtures/README.md is the truth) and
generated ones (hypothesis), read by summarize and by iter_messages, which must agree.

Every test runs twice: with the compiled readers and with the Python readers, which must
both give what the test says (tests/test_queue_readers.py holds both to a reference)."""

from __future__ import annotations

import calendar
import datetime
import json
import math
import random
import string
import time
from dataclasses import asdict, replace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainycp.queue import (
    AGE_BUCKETS,
    DEFERRAL_REASONS,
    MAX_MESSAGE_BYTES,
    QueueMessage,
    QueueSummary,
    deferral_reason,
)
from brainycp.queue.tokens import age_token_range
from tests.queue_support import (
    ODD_EXIM_HEADERS,
    READERS,
    iter_messages,
    summarize,
    use_reader,
)
from tests.support import FIXTURES

# The Postfix fixtures were captured on 2026-11-25 (UTC); their last arrival is 06:44:34.
NOW = calendar.timegm((2026, 11, 25, 6, 50, 0))
K, M = 1024, 1024 * 1024


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture(autouse=True, scope="module", params=READERS)
def reader(request: pytest.FixtureRequest) -> str:
    return use_reader(request.param)


def reference(messages: list[QueueMessage], unparsed: int = 0, flavour: str = "") -> QueueSummary:
    """What summarize must say, computed from iter_messages' records."""
    buckets = [0] * len(AGE_BUCKETS)
    for msg in messages:
        buckets[next(i for i, bound in enumerate(AGE_BUCKETS) if msg.age_seconds <= bound)] += 1
    return QueueSummary(
        messages=len(messages),
        frozen=sum(m.frozen for m in messages),
        bounces=sum(m.sender == "<>" for m in messages),
        held=sum(m.held for m in messages),
        bytes=sum(m.size_bytes for m in messages),
        oldest_age_seconds=max((m.age_seconds for m in messages), default=None),
        age_buckets=tuple(buckets),
        age_sum_seconds=float(sum(m.age_seconds for m in messages)),
        unparsed_lines=unparsed,
        flavour=flavour,  # type: ignore[arg-type]
    )


def assert_agrees(detail: Any, now: float = NOW) -> QueueSummary:
    summary = summarize(detail, now=now)
    expected = reference(list(iter_messages(detail, now=now)), summary.unparsed_lines)
    # Messages do not carry deferral reasons: those are checked on their own.
    same = {"flavour": summary.flavour, "deferral_reasons": summary.deferral_reasons}
    assert summary == QueueSummary(**{**asdict(expected), **same})
    return summary


# --------------------------------------------------------------------------------------------
# Exim fixtures

EXIM_BP_BYTES = (
    350 + 364 + 476 + round(3.3 * K) + 330 + 147 * K + round(1.9 * M) + 286 + 312 + 11 * M + 361
) + 350
EXIM_BP_IDS = [
    "1xW6VZ-0000xu-1S",
    "1xW6VZ-0000xw-1U",
    "1xW6VZ-0000xy-1X",
    "1xW6Vj-00011B-1w",
    "1xW6Vj-00011E-1y",
    "1xW6Z0-0001Hq-2q",
    "1xW6Z0-0001Ht-2t",
    "1xW6Z0-0001Hw-30",
    "1xW6Z0-0001Hy-31",
    "1xW6bW-0001Oy-1N",
    "1xW6bW-0001Pn-23",
    "1xW6bW-0001Pp-25",
]


def test_exim_bp_counts_twelve_messages_three_frozen_three_bounces() -> None:
    summary = summarize(fixture("exim-bp.txt"))
    assert summary == QueueSummary(
        messages=12,
        frozen=3,
        bounces=3,
        held=0,
        bytes=EXIM_BP_BYTES,
        # 6m x5, 2m x4, 0m x3, each at the middle of its range (6m: 360-419 s).
        oldest_age_seconds=390.0,
        age_buckets=(7, 5, 0, 0, 0, 0, 0, 0, 0),
        age_sum_seconds=5 * 390.0 + 4 * 150.0 + 3 * 30.0,
        unparsed_lines=0,
        flavour="exim",
    )
    assert summary.cumulative_buckets() == (7, 12, 12, 12, 12, 12, 12, 12, 12)


def test_exim_bp_messages_keep_only_pending_recipients() -> None:
    messages = {m.id: m for m in iter_messages(fixture("exim-bp.txt"))}
    assert list(messages) == EXIM_BP_IDS
    assert messages["1xW6VZ-0000xw-1U"].recipients == ("carol@example.net", "erin@example.com")
    assert messages["1xW6bW-0001Pn-23"].recipients == (
        "staff1@example.com",
        "staff2@example.com",
        "staff4@example.net",
        "staff5@example.net",
    )
    frozen = [m.id for m in messages.values() if m.frozen]
    assert frozen == ["1xW6VZ-0000xy-1X", "1xW6Z0-0001Ht-2t", "1xW6bW-0001Pp-25"]
    bounces = [m.id for m in messages.values() if m.sender == "<>"]
    assert bounces == ["1xW6VZ-0000xy-1X", "1xW6Vj-00011E-1y", "1xW6bW-0001Pp-25"]
    long_sender = messages["1xW6bW-0001Pn-23"].sender
    assert long_sender == "very.long.sender.name+tag@subdomain.department.example.org"
    assert messages["1xW6Z0-0001Ht-2t"].size_bytes == round(1.9 * M)
    assert messages["1xW6bW-0001Oy-1N"].size_bytes == 11 * M
    assert messages["1xW6VZ-0000xu-1S"].age_seconds == 390.0
    assert messages["1xW6VZ-0000xu-1S"].age_min_seconds == 360.0
    assert not any(m.held for m in messages.values())


@pytest.mark.parametrize("name", ["exim-bpr.txt", "exim-bpu.txt"])
def test_unsorted_and_undelivered_only_listings_summarize_like_bp(name: str) -> None:
    assert summarize(fixture(name)) == summarize(fixture("exim-bp.txt"))
    by_id = {m.id: m.recipients for m in iter_messages(fixture(name))}
    assert by_id == {m.id: m.recipients for m in iter_messages(fixture("exim-bp.txt"))}


def test_listing_after_removing_a_frozen_bounce_has_eleven_messages() -> None:
    summary = summarize(fixture("exim-bp-after-rm.txt"))
    assert (summary.messages, summary.frozen, summary.bounces) == (11, 2, 2)
    assert summary.bytes == EXIM_BP_BYTES - 476
    assert "1xW6VZ-0000xy-1X" not in {m.id for m in iter_messages(fixture("exim-bp-after-rm.txt"))}


def test_aged_exim_listing_puts_days_hours_and_minutes_in_the_right_buckets() -> None:
    summary = summarize(fixture("exim-bp-aged.txt"))
    tokens = ["130d", "12d", "4d", "50h", "5h", "2h", "85m", "0m"]
    ages = [sum(exim_token_range(token)) / 2 for token in tokens]
    # The fixture's messages were back-dated by 130d, 12d, 4d, 50h, 5h, 95m, 85m and 0.
    assert ages[5] == (91 + 150) * 30 and ages[6] == 85 * 60 + 30 and ages[7] == 30
    assert [m.age_seconds for m in iter_messages(fixture("exim-bp-aged.txt"))] == ages
    lows = [m.age_min_seconds for m in iter_messages(fixture("exim-bp-aged.txt"))]
    assert lows == [exim_token_range(token)[0] for token in tokens]
    assert summary.oldest_age_seconds == ages[0]
    # <=5m: 0m | <=4h: 2h, 85m | <=12h: 5h | <=3d: 50h | <=7d: 4d | +Inf: 12d, 130d
    assert summary.age_buckets == (1, 0, 0, 2, 1, 0, 1, 1, 2)
    assert summary.age_sum_seconds == sum(ages)
    assert (summary.messages, summary.frozen, summary.bounces) == (8, 2, 2)
    four_days = next(m for m in iter_messages(fixture("exim-bp-aged.txt")) if m.id.endswith("2w"))
    assert four_days.recipients == ("bob@example.net",)


def test_exiqgrep_long_format_with_tab_indented_recipients() -> None:
    messages = list(iter_messages(fixture("exiqgrep-z.txt")))
    assert [m.id for m in messages] == ["1xW6VZ-0000xy-1X", "1xW6Z0-0001Ht-2t", "1xW6bW-0001Pp-25"]
    assert messages[1].recipients == ("accounts@example.com", "ledger@example.com")
    summary = summarize(fixture("exiqgrep-z.txt"))
    assert (summary.messages, summary.frozen, summary.bounces, summary.unparsed_lines) == (
        3,
        3,
        2,
        0,
    )
    older = summarize(fixture("exiqgrep-z-o-86400.txt"))
    assert (older.messages, older.frozen, older.age_buckets[-1]) == (2, 2, 2)


def long_ids(text: str) -> str:
    """The same listing as Exim 4.97+ would print it: 6-11-4 message ids."""
    out = []
    for line in text.split("\n"):
        words = line.split(" ")
        for i, word in enumerate(words):
            if len(word) == 16 and word.count("-") == 2 and word[6] == "-" and word[13] == "-":
                words[i] = f"{word[:13]}00000-{word[14:]}Zz"
        out.append(" ".join(words))
    return "\n".join(out)


@pytest.mark.parametrize("name", ["exim-bp.txt", "exim-bp-aged.txt", "exiqgrep-z.txt"])
def test_frozen_count_survives_long_exim_ids(name: str) -> None:
    text = long_ids(fixture(name))
    assert "0000xu00000-1SZz" in text or name != "exim-bp.txt"
    assert summarize(text) == summarize(fixture(name))
    assert all(len(m.id) == 23 for m in iter_messages(text))
    assert_agrees(text)


def test_empty_exim_queue_is_an_empty_unknown_summary() -> None:
    summary = summarize(fixture("exim-bp-empty.txt"))
    assert summary.messages == 0 and summary.oldest_age_seconds is None
    assert summary.flavour == "unknown" and summary.unparsed_lines == 0


@pytest.mark.parametrize(
    ("name", "lines"),
    [
        ("exim-bpc.txt", 1),
        ("exiqgrep-i.txt", 21),
        ("exiqsumm.txt", 8),
        ("exim-Mf.txt", 3),
        ("exim-Mrm-missing.txt", 5),
        ("postfix-postsuper-h.txt", 6),
        ("postfix-mailq-down-stderr.txt", 1),
    ],
)
def test_command_output_that_is_not_a_listing_is_counted_not_read(name: str, lines: int) -> None:
    summary = summarize(fixture(name))
    assert (summary.messages, summary.unparsed_lines, summary.flavour) == (0, lines, "unknown")
    assert list(iter_messages(fixture(name))) == []


# --------------------------------------------------------------------------------------------
# Postfix fixtures

MAILQ_BYTES = 329 + 364 + 383 + 1314 + 101612 + 2026279 + 291 + 317 + 355 + 306


def test_postfix_mailq_counts_held_and_mailer_daemon_bounces() -> None:
    summary = summarize(fixture("postfix-mailq.txt"), now=NOW)
    assert (summary.messages, summary.held, summary.bounces, summary.frozen) == (10, 2, 2, 0)
    assert summary.bytes == MAILQ_BYTES
    assert summary.flavour == "postfix" and summary.unparsed_lines == 0
    first = calendar.timegm((2026, 11, 25, 6, 38, 58))
    assert summary.oldest_age_seconds == NOW - first
    messages = {m.id: m for m in iter_messages(fixture("postfix-mailq.txt"), now=NOW)}
    assert {i for i, m in messages.items() if m.held} == {"517C7164083", "5E594164074"}
    assert messages["EAE211640C3"].sender == "<>"
    assert messages["E9AB21640AD"].recipients == (
        "dave@example.com",
        "erin@example.com",
        "carol@example.net",
    )
    assert messages["5BF4516404C"].age_seconds == NOW - calendar.timegm((2026, 11, 25, 6, 41, 22))


@pytest.mark.parametrize(
    ("zone", "when", "ahead"),
    [
        ("Europe/Moscow", (2026, 11, 25, 9, 0, 0), 3 * 3600),
        ("America/New_York", (2026, 1, 15, 12, 0, 0), -5 * 3600),  # standard time
        ("America/New_York", (2026, 7, 15, 12, 0, 0), -4 * 3600),  # daylight saving
        ("Asia/Kolkata", (2026, 3, 1, 0, 10, 0), 5 * 3600 + 1800),  # crosses midnight
    ],
)
def test_postfix_local_times_are_read_in_the_panels_zone(
    zone: str, when: tuple[int, ...], ahead: int
) -> None:
    """mailq prints the panel's local time with no zone; ``zone`` says which one."""
    arrival = calendar.timegm((*when, 0, 0, 0))  # a UTC instant
    now = arrival + 600
    local = time.gmtime(arrival + ahead)  # the wall clock of the panel at that instant
    stamp = time.strftime("%a %b %e %H:%M:%S", local)
    listing = f"1A2B3C4D5E      4242 {stamp}  alice@example.org\n    bob@example.net\n"
    tz = ZoneInfo(zone)
    assert summarize(listing, now=now, zone=tz).oldest_age_seconds == 600
    assert [m.age_seconds for m in iter_messages(listing, now=now, zone=tz)] == [600]
    # Read as UTC, the age is off by the zone's offset (clamped at 0 when in the future).
    assert summarize(listing, now=now).oldest_age_seconds == max(0, 600 - ahead)


def test_mailq_command_prints_the_same_as_postqueue() -> None:
    assert summarize(fixture("postfix-mailq-cmd.txt"), now=NOW) == summarize(
        fixture("postfix-mailq.txt"), now=NOW
    )


def test_forced_expiry_marker_keeps_a_held_message_held() -> None:
    summary = summarize(fixture("postfix-mailq-after-d.txt"), now=NOW)
    assert (summary.messages, summary.held, summary.bounces) == (9, 2, 2)
    held = [m.id for m in iter_messages(fixture("postfix-mailq-after-d.txt"), now=NOW) if m.held]
    assert held == ["517C7164083", "5E594164074"]


def test_active_messages_and_reason_lines() -> None:
    messages = {m.id: m for m in iter_messages(fixture("postfix-mailq-active.txt"), now=NOW)}
    assert len(messages) == 12
    assert messages["6BB9716404D"].recipients == ("bob@example.net", "noc@slow.example.com")
    summary = summarize(fixture("postfix-mailq-active.txt"), now=NOW)
    assert (summary.messages, summary.held, summary.bounces, summary.unparsed_lines) == (
        12,
        2,
        2,
        0,
    )


def test_long_postfix_queue_ids_and_wider_columns() -> None:
    messages = {m.id: m for m in iter_messages(fixture("postfix-mailq-longid.txt"), now=NOW)}
    assert len(messages) == 15
    assert {"4jZ9BP4K3zzBydM", "4jZ9BP4DLlzByfB", "4jZ9BP4LgbzByfK"} <= set(messages)
    assert messages["4jZ9BP4LgbzByfK"].held and messages["4jZ9BP4LgbzByfK"].sender == "<>"
    summary = summarize(fixture("postfix-mailq-longid.txt"), now=NOW)
    assert (summary.messages, summary.held, summary.bounces) == (15, 3, 3)


def test_postfix_stopped_maildrop_listing_parses() -> None:
    messages = list(iter_messages(fixture("postfix-mailq-down.txt"), now=NOW))
    assert [m.id for m in messages] == ["4jZ9C64DT7zBydf", "4jZ9C6495wzBydd"]
    assert messages[0].sender == "<>"
    assert messages[0].recipients == ("carol@example.net", "dave@example.com")
    summary = summarize(fixture("postfix-mailq-down.txt"), now=NOW)
    assert (summary.messages, summary.bounces, summary.bytes) == (2, 1, 253)


def test_stderr_warning_before_a_listing_is_one_unparsed_line() -> None:
    text = fixture("postfix-mailq-down-stderr.txt") + fixture("postfix-mailq-down.txt")
    summary = summarize(text, now=NOW)
    assert (summary.messages, summary.unparsed_lines, summary.flavour) == (2, 1, "postfix")


def test_empty_postfix_queue() -> None:
    summary = summarize(fixture("postfix-mailq-empty.txt"), now=NOW)
    assert (summary.messages, summary.unparsed_lines, summary.flavour) == (0, 0, "postfix")
    assert summary.oldest_age_seconds is None
    assert summarize(fixture("postfix-postqueue-j-empty.jsonl"), now=NOW).messages == 0


@pytest.mark.parametrize(
    ("jsonl", "text"),
    [
        ("postfix-postqueue-j.jsonl", "postfix-mailq.txt"),
        ("postfix-postqueue-j-active.jsonl", "postfix-mailq-active.txt"),
        ("postfix-postqueue-j-longid.jsonl", "postfix-mailq-longid.txt"),
        ("postfix-postqueue-j-down.jsonl", "postfix-mailq-down.txt"),
    ],
)
def test_postqueue_json_lines_say_what_the_text_listing_says(jsonl: str, text: str) -> None:
    assert summarize(fixture(jsonl), now=NOW) == summarize(fixture(text), now=NOW)
    from_json = {m.id: m for m in iter_messages(fixture(jsonl), now=NOW)}
    from_text = {m.id: m for m in iter_messages(fixture(text), now=NOW)}
    assert from_json == from_text
    objects = [json.loads(line) for line in fixture(jsonl).splitlines()]
    assert summarize(objects, now=NOW) == summarize(fixture(text), now=NOW)


@pytest.mark.parametrize(
    "name",
    [
        "exim-bp.txt",
        "exim-bpr.txt",
        "exim-bp-aged.txt",
        "exiqgrep-z.txt",
        "postfix-mailq.txt",
        "postfix-mailq-active.txt",
        "postfix-mailq-longid.txt",
        "postfix-mailq-down.txt",
        "postfix-postqueue-j-longid.jsonl",
    ],
)
def test_three_detail_shapes_give_the_same_summary(name: str) -> None:
    text = fixture(name)
    as_text = assert_agrees(text)
    assert summarize(text.split("\n"), now=NOW) == as_text
    objects = [
        {
            "id": m.id,
            "age": m.age_seconds,
            "size": m.size_bytes,
            "sender": m.sender,
            "recipients": list(m.recipients),
            "frozen": m.frozen,
            "held": m.held,
        }
        for m in iter_messages(text, now=NOW)
    ]
    from_objects = summarize(objects, now=NOW)
    assert from_objects == replace(as_text, deferral_reasons=from_objects.deferral_reasons)
    # A number of seconds is an exact age: only the text knows an Exim token's range.
    exact = [replace(m, age_min_seconds=None) for m in iter_messages(text, now=NOW)]
    assert list(iter_messages(objects, now=NOW)) == exact


def test_objects_accept_exim_tokens_for_age_and_size() -> None:
    objects = [
        {"id": "1xW6VZ-0000xu-1S", "age": "3h", "size": "2.1K", "sender": "<>", "frozen": True},
        {"id": "1xW6VZ-0000xw-1U", "age": 45, "size": 812, "recipients": ["a@example.org"]},
    ]
    summary = summarize(objects)
    assert (summary.messages, summary.frozen, summary.bounces) == (2, 1, 1)
    assert summary.bytes == round(2.1 * K) + 812
    assert summary.oldest_age_seconds == 3 * 3600 and summary.flavour == "exim"
    messages = list(iter_messages(objects))
    assert [m.age_min_seconds for m in messages] == [2.5 * 3600, None]


# --------------------------------------------------------------------------------------------
# Junk and garbage


def test_junk_lines_are_counted_and_do_not_break_the_messages_around_them() -> None:
    lines = fixture("exim-bp.txt").split("\n")
    lines.insert(0, "exim: warning: queue listing follows")
    lines.insert(3, "LOG: junk between a header's recipients")  # inside 1xW6VZ-0000xu-1S
    lines.insert(8, "6m   364 not-an-id <alice@example.org>")  # header-shaped, but no id
    lines.append("-- truncated --")
    text = "\n".join(lines)
    summary = assert_agrees(text)
    clean = summarize(fixture("exim-bp.txt"))
    assert summary == QueueSummary(**{**asdict(clean), "unparsed_lines": 4})
    messages = {m.id: m for m in iter_messages(text)}
    assert messages["1xW6VZ-0000xu-1S"].recipients == ("bob@example.net",)
    assert messages["1xW6VZ-0000xw-1U"].recipients == ("carol@example.net", "erin@example.com")


def test_windows_line_endings_read_the_same() -> None:
    text = fixture("exim-bp.txt").replace("\n", "\r\n")
    assert summarize(text) == summarize(fixture("exim-bp.txt"))
    pf = fixture("postfix-mailq.txt").replace("\n", "\r\n")
    assert summarize(pf, now=NOW) == summarize(fixture("postfix-mailq.txt"), now=NOW)


@pytest.mark.parametrize(
    ("detail", "unparsed"),
    [
        (None, 0),
        (42, 1),
        (3.5, 1),
        ("", 0),
        ("   \n\n", 0),
        ([], 0),
        ([1, [2, 3], None], 3),
        ([{"nested": {"x": 1}}, {"id": []}, {"age": "soon"}, "line"], 4),
        ({"id": {"deep": True}}, 1),
        ("{not json", 1),
        ('{"a": 1}\n[1, 2]\n', 2),
        (b"\xff\xfe junk", 1),
        (object(), 1),
    ],
)
def test_garbage_gives_an_unknown_summary_never_an_exception(detail: Any, unparsed: int) -> None:
    summary = summarize(detail)
    assert summary.messages == 0 and summary.oldest_age_seconds is None
    assert summary.unparsed_lines == unparsed
    assert summary.flavour in ("unknown", "postfix")
    assert list(iter_messages(detail)) == []


def test_summarize_builds_no_message_records(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("summarize built a QueueMessage")

    for module in ("exim", "postfix", "objects", "compiled"):
        monkeypatch.setattr(f"brainycp.queue.{module}.QueueMessage", refuse)
    objects = [json.loads(line) for line in fixture("postfix-postqueue-j.jsonl").splitlines()]
    for detail in (
        fixture("exim-bp.txt"),
        fixture("exim-bp.txt").split("\n"),
        fixture("postfix-mailq.txt"),
        fixture("postfix-postqueue-j.jsonl"),
        objects,
    ):
        assert summarize(detail, now=NOW).messages > 0


# --------------------------------------------------------------------------------------------
# Deferral reasons, implausible sizes, invalid text

# Deferral reasons as Postfix prints them (typical SMTP replies), with the class each is.
REASON_SAMPLES: list[tuple[str, str | None]] = [
    ("deferred transport", "other"),
    ("reason unavailable", None),
    ("connect to mx.example.net[192.0.2.7]:25: Connection refused", "connection_refused"),
    ("connect to mx.example.net[192.0.2.7]:25: Connection timed out", "timed_out"),
    (
        "delivery temporarily suspended: connect to mx.example.net[192.0.2.7]:25: "
        "Connection timed out",
        "timed_out",
    ),
    (
        "host mx.example.net[192.0.2.7] said: 450 4.7.1 <bob@example.net>: Recipient address "
        "rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.net.html "
        "(in reply to RCPT TO command)",
        "greylisted",
    ),
    (
        "host mx.example.net[192.0.2.7] said: 554 5.7.1 Service unavailable; Client host "
        "[198.51.100.4] blocked using zen.spamhaus.org (in reply to RCPT TO command)",
        "blocklisted",
    ),
    (
        "host mx.example.net[192.0.2.7] said: 451 4.7.1 Rejected for policy reasons "
        "(in reply to end of DATA command)",
        "blocklisted",
    ),
    (
        "host mx.example.net[192.0.2.7] said: 552 5.2.2 <bob@example.net>: mailbox full "
        "(in reply to RCPT TO command)",
        "mailbox_full",
    ),
    ("host mx.example.net[192.0.2.7] said: 452 4.2.2 Over quota", "mailbox_full"),
    (
        "host mx.example.net[192.0.2.7] said: 550 5.1.1 <nobody@example.net>: Recipient "
        "address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)",
        "user_unknown",
    ),
    (
        "Host or domain name not found. Name service error for name=nowhere.example type=MX: "
        "Host not found, try again",
        "other",
    ),
    (
        "lost connection with mx.example.net[192.0.2.7] while receiving the initial server "
        "greeting",
        "other",
    ),
]


def reason_line(text: str) -> str:
    """A reason line as Postfix prints it: ending in column 78, or unindented when long."""
    return " " * max(0, 76 - len(text)) + f"({text})"


@pytest.mark.parametrize(("text", "expected"), REASON_SAMPLES)
def test_deferral_reasons_are_classified(text: str, expected: str | None) -> None:
    assert deferral_reason(text) == expected
    if expected is not None:  # Postfix's own "reason unavailable" is spelled exactly so
        assert deferral_reason(text.upper()) == expected


LONG_REASON = REASON_SAMPLES[6][0]  # blocklisted, longer than 76 characters


def test_postfix_reason_lines_count_each_message_once_per_class() -> None:
    listing = (
        "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
        "AAAAA11111      500 Wed Nov 25 06:40:00  a@example.org\n"
        f"{reason_line(LONG_REASON)}\n"
        f"{' ' * 41}bob@example.net\n"
        f"{reason_line('connect to mx.example.com[192.0.2.9]:25: Connection refused')}\n"
        f"{' ' * 41}carol@example.com\n"
        f"{reason_line(LONG_REASON.replace('198.51.100.4', '198.51.100.5'))}\n"
        f"{' ' * 41}dave@example.net\n"
        "\n"
        "BBBBB22222      500 Wed Nov 25 06:40:00  MAILER-DAEMON\n"
        f"{reason_line('deferred transport')}\n"
        f"{' ' * 41}erin@example.org\n"
        f"{reason_line('reason unavailable')}\n"
        f"{' ' * 41}frank@example.org\n"
        "\n"
        "CCCCC33333*     500 Wed Nov 25 06:40:00  a@example.org\n"
        f"{' ' * 41}grace@example.org\n"
        "\n-- 1 Kbytes in 3 Requests.\n"
    )
    assert reason_line(LONG_REASON).startswith("(host ")  # unindented: longer than 76
    summary = summarize(listing, now=NOW)
    assert (summary.messages, summary.unparsed_lines) == (3, 0)
    by_class = dict(zip(DEFERRAL_REASONS, summary.deferral_reasons, strict=True))
    assert by_class == {
        "connection_refused": 1,
        "timed_out": 0,
        "greylisted": 0,
        "blocklisted": 1,
        "mailbox_full": 0,
        "user_unknown": 0,
        "other": 1,
    }
    messages = list(iter_messages(listing, now=NOW))
    assert [m.recipients for m in messages] == [
        ("bob@example.net", "carol@example.com", "dave@example.net"),
        ("erin@example.org", "frank@example.org"),
        ("grace@example.org",),
    ]
    # A line at column 0 that starts like a reason but is not one is junk.
    broken = listing.replace(f"{reason_line(LONG_REASON)}\n", "(not closed\n", 1)
    assert summarize(broken, now=NOW).unparsed_lines == 1
    assert next(iter_messages(broken, now=NOW)).recipients[0] == "bob@example.net"


def test_postqueue_json_delay_reasons_are_classified_like_the_text() -> None:
    jsonl = fixture("postfix-postqueue-j-active.jsonl")
    text = fixture("postfix-mailq-active.txt")
    assert summarize(jsonl, now=NOW).deferral_reasons == summarize(text, now=NOW).deferral_reasons
    objects = [json.loads(line) for line in jsonl.splitlines()]
    other = DEFERRAL_REASONS.index("other")
    assert summarize(objects, now=NOW).deferral_reasons[other] == 10  # all but 2 active ones


def test_exim_listings_show_no_deferral_reasons() -> None:
    assert summarize(fixture("exim-bp.txt")).deferral_reasons == ()
    assert summarize(fixture("postfix-mailq-empty.txt"), now=NOW).deferral_reasons == (0,) * 7


@pytest.mark.parametrize(
    "detail",
    [
        " 5m 2000000M 1xW6VZ-0000xu-1S <a@example.org>\n          b@example.org\n",
        "ABCDEF12345  5000000000000000 Wed Nov 25 06:40:00  a@example.org\n"
        f"{' ' * 41}b@example.org\n",
        '{"queue_name": "deferred", "queue_id": "ABCDEF12345", "arrival_time": 1795588738, '
        '"message_size": 5e30, "sender": "a@example.org", "recipients": []}\n',
        [{"id": "1xW6VZ-0000xu-1S", "size": 5e30}],
        [{"id": "1xW6VZ-0000xu-1S", "size": "5000000000000000"}],
    ],
)
def test_sizes_above_a_tebibyte_are_unparsed_not_exported(detail: Any) -> None:
    good = " 5m   350 1xW6VZ-0000xw-1U <a@example.org>\n          b@example.org\n\n"
    summary = summarize(detail, now=NOW)
    assert (summary.messages, summary.bytes, summary.unparsed_lines) == (0, 0, 1)
    assert list(iter_messages(detail, now=NOW)) == []
    if isinstance(detail, str) and detail.startswith(" 5m"):
        both = summarize(good + detail + good.replace("xw-1U", "xy-1X"))
        assert (both.messages, both.bytes, both.unparsed_lines) == (2, 700, 1)
        ids = [m.id for m in iter_messages(good + detail + good.replace("xw-1U", "xy-1X"))]
        assert ids == ["1xW6VZ-0000xw-1U", "1xW6VZ-0000xy-1X"]
        assert next(iter_messages(good + detail)).recipients == ("b@example.org",)
    assert MAX_MESSAGE_BYTES == 2**40
    # Exactly 1 TiB is still a message.
    assert summarize([{"id": "m", "size": 2**40}]).bytes == 2**40


def test_lone_surrogates_in_addresses_become_replacement_characters() -> None:
    line = json.dumps(
        {"queue_name": "deferred", "queue_id": "ABCDEF12345", "arrival_time": NOW - 60,
         "message_size": 10, "sender": "sp\ud800m@example.org",
         "recipients": [{"address": "x\udfff@example.net"}]}
    )  # fmt: skip
    detail = json.loads(line)
    assert "\ud800" in detail["sender"]
    for shape in (line, [detail], _mailq("Wed Nov 25 06:49:00").replace("a@", "sp\ud800m@")):
        messages = list(iter_messages(shape, now=NOW))
        assert len(messages) == 1
        message = messages[0]
        message.sender.encode("utf-8")
        for recipient in message.recipients:
            recipient.encode("utf-8")
        assert message.sender == "sp\ufffdm@example.org"
    exim = " 5m   350 1xW6VZ-0000xu-1S <sp\ud800m@example.org>\n          b\udc00@example.org\n"
    [message] = iter_messages(exim)
    assert (message.sender, message.recipients) == (
        "sp\ufffdm@example.org",
        ("b\ufffd@example.org",),
    )


# --------------------------------------------------------------------------------------------
# Postfix arrival years


def _mailq(stamp: str) -> str:
    return f"ABCDEF12345     500 {stamp}  a@example.org\n{' ' * 41}b@x.org\n"


def test_postfix_arrival_just_before_new_year_belongs_to_the_old_year() -> None:
    now = calendar.timegm((2027, 1, 1, 0, 10, 0))
    summary = summarize(_mailq("Thu Dec 31 23:50:00"), now=now)
    assert summary.oldest_age_seconds == 20 * 60


def test_postfix_arrival_a_little_in_the_future_is_age_zero() -> None:
    now = calendar.timegm((2026, 12, 31, 23, 59, 0))
    summary = summarize(_mailq("Fri Jan  1 00:30:00"), now=now)
    assert summary.oldest_age_seconds == 0.0 and summary.messages == 1


def test_postfix_february_29_goes_back_to_the_last_leap_year() -> None:
    now = calendar.timegm((2027, 3, 1, 0, 0, 0))
    summary = summarize(_mailq("Thu Feb 29 12:00:00"), now=now)
    assert summary.oldest_age_seconds == now - calendar.timegm((2024, 2, 29, 12, 0, 0))


def _stamp(instant: float, zone: str | None = None) -> str:
    """The arrival column mailq prints for a UTC instant on a panel in ``zone``."""
    when = datetime.datetime.fromtimestamp(instant, ZoneInfo(zone) if zone else datetime.UTC)
    return when.strftime("%a %b %e %H:%M:%S")


@pytest.mark.parametrize(
    ("arrival", "now"),
    [
        # Held for more than a year: the same date this year is another weekday.
        ((2025, 6, 10, 8, 0, 0), (2026, 11, 25, 6, 50, 0)),
        ((2024, 11, 25, 6, 0, 0), (2026, 11, 25, 6, 50, 0)),
        # Last year, on a date later than today (tomorrow's date, within the clock slack).
        ((2025, 11, 26, 1, 0, 0), (2026, 11, 25, 6, 50, 0)),
        ((2025, 12, 20, 12, 0, 0), (2026, 11, 25, 6, 50, 0)),
        # Feb 29, a leap year back (two back in the next test: in some zones its local date
        # is Sun Mar 1, which 2026 has too: the weekday tells years apart only so far).
        ((2024, 2, 29, 12, 0, 0), (2026, 11, 25, 6, 50, 0)),
        # Ordinary cases stay as they were.
        ((2026, 11, 25, 6, 40, 0), (2026, 11, 25, 6, 50, 0)),
        ((2026, 12, 31, 23, 50, 0), (2027, 1, 1, 0, 10, 0)),
        ((2026, 1, 2, 0, 0, 0), (2026, 12, 31, 23, 0, 0)),
    ],
)
@pytest.mark.parametrize("zone", [None, "Europe/Moscow", "America/New_York", "Pacific/Auckland"])
def test_postfix_year_is_the_latest_on_the_printed_weekday(
    arrival: tuple[int, ...], now: tuple[int, ...], zone: str | None
) -> None:
    instant = calendar.timegm((*arrival, 0, 0, 0))
    clock = calendar.timegm((*now, 0, 0, 0))
    listing = _mailq(_stamp(instant, zone))
    tz = ZoneInfo(zone) if zone else None
    assert summarize(listing, now=clock, zone=tz).oldest_age_seconds == clock - instant
    assert [m.age_seconds for m in iter_messages(listing, now=clock, zone=tz)] == [clock - instant]


def test_postfix_february_29_two_leap_years_back() -> None:
    instant = calendar.timegm((2020, 2, 29, 12, 0, 0))
    summary = summarize(_mailq("Sat Feb 29 12:00:00"), now=NOW)
    assert summary.oldest_age_seconds == NOW - instant


def test_postfix_weekday_settles_the_year_across_new_year_in_the_panels_zone() -> None:
    # Tokyo's Thu Jan 1 2026 05:00 is Dec 31 2025 20:00 UTC; a year later our UTC clock says
    # 2026 while the panel's says 2027, a Friday: the Thursday is 2026's, one year back.
    instant = calendar.timegm((2025, 12, 31, 20, 0, 0))
    clock = calendar.timegm((2026, 12, 31, 20, 30, 0))
    listing = _mailq(_stamp(instant, "Asia/Tokyo"))
    assert listing.split()[1:5] == ["500", "Thu", "Jan", "1"]
    summary = summarize(listing, now=clock, zone=ZoneInfo("Asia/Tokyo"))
    assert summary.oldest_age_seconds == clock - instant == 365 * 86400 + 1800


def test_postfix_age_over_a_year_lands_in_the_oldest_bucket_with_its_real_age() -> None:
    now = NOW
    old = NOW - 400 * 86400
    fresh = NOW - 120
    listing = _mailq(_stamp(old)) + "\n" + _mailq(_stamp(fresh))
    summary = summarize(listing, now=now)
    assert summary.oldest_age_seconds == 400 * 86400
    assert summary.age_buckets == (1, 0, 0, 0, 0, 0, 0, 0, 1)
    assert summary.age_sum_seconds == 400 * 86400 + 120


def test_postfix_impossible_dates_are_unparsed_lines() -> None:
    summary = summarize(_mailq("Mon Apr 31 12:00:00"), now=NOW)
    # The header is one unparsed line; its recipient lines go with it.
    assert (summary.messages, summary.unparsed_lines) == (0, 1)


# --------------------------------------------------------------------------------------------
# Exim age tokens are ranges


def test_every_exim_age_token_stands_for_the_middle_of_its_range() -> None:
    for token, (low, high) in EXIM_TOKEN_RANGES.items():
        listing = f"{token:>3} 350 1xW6VZ-0000xu-1S <a@example.org>\n          b@example.org\n"
        [message] = iter_messages(listing)
        assert (message.age_seconds, message.age_min_seconds) == ((low + high) / 2, low), token
        assert summarize(listing).age_sum_seconds == (low + high) / 2


@pytest.mark.parametrize(
    ("token", "low", "high"),
    [
        ("0m", 0, 60),
        ("5m", 300, 360),
        ("90m", 5400, 5460),
        ("2h", 91 * 60, 150 * 60),
        ("3h", 150 * 60, 210 * 60),
        ("72h", 4290 * 60, 4350 * 60),
        ("3d", 4350 * 60, (83 * 60 + 30) * 60),
        ("4d", (83 * 60 + 30) * 60, (107 * 60 + 30) * 60),
    ],
)
def test_exim_age_ranges_are_the_documented_ones(token: str, low: int, high: int) -> None:
    assert exim_token_range(token) == (low, high)
    assert age_token_range(token) == (low, high)


def test_exim_tokens_that_straddle_a_bucket_bound_go_by_their_middle() -> None:
    # 4h covers 3.5-4.5 h: its middle is the 4 h bound itself (le is inclusive);
    # 7d covers 155.5-179.5 h: its middle, 167.5 h, is under the 7 d bound.
    tokens = [" 4m", " 5m", "15m", "60m", " 4h", "12h", "24h", "72h", " 3d", " 7d", " 8d"]
    listing = "".join(
        f"{token} 350 1xW6VZ-0000x{i:x}-1S <a@example.org>\n          b@example.org\n\n"
        for i, token in enumerate(tokens)
    )
    summary = assert_agrees(listing)
    # <=5m: 4m | <=15m: 5m | <=1h: 15m | <=4h: 60m, 4h | <=12h: 12h | <=1d: 24h | <=3d: 72h
    # | <=7d: 3d, 7d | +Inf: 8d
    assert summary.age_buckets == (1, 1, 1, 2, 1, 1, 1, 2, 1)


def test_older_than_selects_only_messages_the_listing_proves_older() -> None:
    from remediator.actions.messages import selected
    from remediator.settings.rules import Selection

    listing = "".join(
        f"{token} 350 1xW6VZ-0000x{i}-1S <a@example.org>\n          b@example.org\n\n"
        for i, token in enumerate((" 5m", " 6m", " 2h", " 3h"))
    )
    messages = {m.id[12]: m for m in iter_messages(listing)}
    # 5m is 300-359 s: it may be exactly 300 s old, so "older than 5m" leaves it alone;
    # 3h is 2.5-3.5 h: older than 2 h for sure, not surely older than 3 h.
    assert [k for k, m in messages.items() if selected(m, Selection(older_than=300))] == list("123")
    assert [k for k, m in messages.items() if selected(m, Selection(older_than=7200))] == ["3"]
    assert [k for k, m in messages.items() if selected(m, Selection(older_than=10800))] == []
    postfix = next(iter_messages(_mailq(_stamp(NOW - 301)), now=NOW))
    assert postfix.age_min_seconds is None and postfix.proven_age_seconds == 301
    assert selected(postfix, Selection(older_than=300))


def test_exim_4_97_ids_are_read_and_other_shapes_are_not() -> None:
    good = ["16VDhn-000000001bo-D342", "1xW6VZ-0000xu-1S"]
    bad = [
        "16VDhn-000000001bo-D34",
        "16VDhn-00000001bo-D342",
        "1xW6VZ-0000xu-1SX",
        "1xW6VZ_0000xu-1S",
    ]
    listing = "".join(
        f" 5m   350 {msg_id} <a@example.org>\n          b@example.org\n\n" for msg_id in good + bad
    )
    assert [m.id for m in iter_messages(listing)] == good
    summary = assert_agrees(listing)
    assert (summary.messages, summary.unparsed_lines) == (2, 4)
    objects = [{"id": "16VDhn-000000001bo-D342", "age": 60}]
    assert summarize(objects).flavour == "exim"


def test_age_buckets_bounds_are_the_documented_ones() -> None:
    assert (300, 900, 3600, 14400, 43200, 86400, 259200, 604800, math.inf) == AGE_BUCKETS
    objects = [{"id": f"m{i}", "age": age} for i, age in enumerate((300, 301, 86400, 10**9))]
    assert summarize(objects).age_buckets == (1, 1, 0, 0, 0, 1, 0, 0, 1)


# --------------------------------------------------------------------------------------------
# Generated listings

_ALNUM = string.ascii_letters + string.digits
ADDRESSES = st.from_regex(r"[a-z][a-z0-9.+]{0,12}@[a-z]{1,8}\.(?:org|net|example)", fullmatch=True)
JUNK = st.one_of(
    st.from_regex(r"[A-Za-z:\-][ -~]{0,40}", fullmatch=True),
    st.sampled_from(["12", "5m junk", "exim: warning: x", "-- 3 Kbytes", "*** spool error ***"]),
)


def exim_age_token(seconds: int) -> str:
    """What exim -bp prints for an age (Exim 4.96 queue.c, checked against exipick)."""
    minutes = seconds // 60
    if minutes > 90:
        hours = (minutes + 30) // 60
        return f"{(hours + 12) // 24:2d}d" if hours > 72 else f"{hours:2d}h"
    return f"{minutes:2d}m"


def _token_ranges() -> dict[str, tuple[float, float]]:
    """Every token exim_age_token prints up to 200 days, with the ages [low, high) it covers,
    found by trying every minute (independent of the parser's arithmetic)."""
    ranges: dict[str, list[int]] = {}
    last = 200 * 1440
    for minute in range(last):
        token = exim_age_token(minute * 60).strip()
        seen = ranges.setdefault(token, [minute, minute])
        seen[1] = minute
    # The last token's range runs past the minutes tried.
    return {
        token: (low * 60.0, (high + 1) * 60.0)
        for token, (low, high) in ranges.items()
        if high < last - 1
    }


EXIM_TOKEN_RANGES = _token_ranges()


def exim_token_range(token: str) -> tuple[float, float]:
    return EXIM_TOKEN_RANGES[token.strip()]


def exim_token_age(token: str) -> float:
    low, high = exim_token_range(token)
    return (low + high) / 2


def exim_size_token(size: int) -> tuple[str, int]:
    """What Exim prints for a size, and the bytes that token stands for."""
    if size < 1024:
        return f"{size:5d}", size
    if size < 10 * K:
        token = f"{size / K:4.1f}"
        return token + "K", round(float(token) * K)
    if size < M:
        return f"{(size + 512) // K:4d}K", (size + 512) // K * K
    if size < 10 * M:
        token = f"{size / M:4.1f}"
        return token + "M", round(float(token) * M)
    return f"{(size + M // 2) // M:4d}M", (size + M // 2) // M * M


@st.composite
def exim_listings(draw: st.DrawFn) -> tuple[str, dict[str, float]]:
    count = draw(st.integers(0, 12))
    long_ids = draw(st.booleans())
    tab = draw(st.booleans())
    truth: dict[str, float] = {"messages": count, "frozen": 0, "bounces": 0, "bytes": 0}
    truth["age_sum"] = 0.0
    lines: list[str] = []
    for _ in range(count):
        age = draw(st.integers(0, 40 * 86400))
        age_token = exim_age_token(age)
        size_token, size = exim_size_token(draw(st.integers(1, 30 * M)))
        rng = random.Random(draw(st.integers(0, 2**32)))
        parts = (6, 11, 4) if long_ids else (6, 6, 2)
        msg_id = "-".join("".join(rng.choices(_ALNUM, k=n)) for n in parts)
        sender = draw(st.one_of(st.just(""), ADDRESSES))
        frozen = draw(st.booleans())
        lines.append(
            f"{age_token} {size_token} {msg_id} <{sender}>" + (" *** frozen ***" if frozen else "")
        )
        for address in draw(st.lists(ADDRESSES, max_size=3)):
            delivered = draw(st.booleans())
            lines.append(("\t" if tab else "        ") + ("D " if delivered else "  ") + address)
        lines.append("")
        truth["frozen"] += frozen
        truth["bounces"] += sender == ""
        truth["bytes"] += size
        truth["age_sum"] += exim_token_age(age_token)
    junk = draw(st.lists(st.tuples(st.integers(0, len(lines)), JUNK), max_size=4))
    for position, line in sorted(junk, reverse=True):
        lines.insert(position, line)
    truth["unparsed"] = len(junk)
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"])), truth


POSTFIX_IDS = st.one_of(
    st.from_regex(r"[0-9A-F]{10,11}", fullmatch=True),
    st.from_regex(r"[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{12,15}", fullmatch=True),
)


@st.composite
def postfix_listings(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    count = draw(st.integers(0, 10))
    lines = ["-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"]
    truth: dict[str, Any] = {"messages": count, "held": 0, "bounces": 0, "bytes": 0}
    truth["age_sum"] = 0.0
    reasons = [0] * len(DEFERRAL_REASONS)
    total = 0
    for _ in range(count):
        age = draw(st.integers(0, 300 * 86400))
        stamp = NOW - age
        tm = datetime.datetime.fromtimestamp(stamp, tz=datetime.UTC)
        flags = draw(st.sampled_from(["", "*", "!", "!#", "#"]))
        size = draw(st.integers(0, 50 * M))
        sender = draw(st.one_of(st.just("MAILER-DAEMON"), ADDRESSES))
        lines.append(
            f"{draw(POSTFIX_IDS)}{flags} {size:>7} {tm.strftime('%a %b %e %H:%M:%S')}  {sender}"
        )
        classes: set[str] = set()
        for address in draw(st.lists(ADDRESSES, min_size=1, max_size=3)):
            if draw(st.booleans()):
                text, kind = draw(st.sampled_from(REASON_SAMPLES))
                lines.append(reason_line(text))
                if kind is not None:
                    classes.add(kind)
            lines.append(" " * 41 + address)
        lines.append("")
        for kind in classes:
            reasons[DEFERRAL_REASONS.index(kind)] += 1
        total += size
        truth["held"] += "!" in flags
        truth["bounces"] += sender == "MAILER-DAEMON"
        truth["bytes"] += size
        truth["age_sum"] += NOW - stamp
    lines.append(f"-- {total // 1024} Kbytes in {count} Requests.")
    junk = draw(st.lists(st.tuples(st.integers(1, len(lines)), JUNK), max_size=4))
    for position, line in sorted(junk, reverse=True):
        lines.insert(position, line)
    truth["unparsed"] = len(junk)
    truth["reasons"] = tuple(reasons)
    return "\n".join(lines) + "\n", truth


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(exim_listings())
def test_generated_exim_listings_match_the_generator(listing: tuple[str, dict[str, float]]) -> None:
    text, truth = listing
    summary = summarize(text)
    assert summary.messages == truth["messages"]
    assert summary.frozen == truth["frozen"]
    assert summary.bounces == truth["bounces"]
    assert summary.bytes == truth["bytes"]
    assert summary.age_sum_seconds == truth["age_sum"]
    assert summary.unparsed_lines == truth["unparsed"]
    assert summary.held == 0
    assert summary.flavour == ("exim" if truth["messages"] else summary.flavour)
    assert_agrees(text)


@PROPERTY
@given(postfix_listings())
def test_generated_postfix_listings_match_the_generator(
    listing: tuple[str, dict[str, Any]],
) -> None:
    text, truth = listing
    summary = summarize(text, now=NOW)
    assert summary.messages == truth["messages"]
    assert summary.held == truth["held"]
    assert summary.bounces == truth["bounces"]
    assert summary.bytes == truth["bytes"]
    assert summary.frozen == 0
    assert summary.age_sum_seconds == pytest.approx(truth["age_sum"])
    assert summary.unparsed_lines == truth["unparsed"]
    assert summary.flavour == "postfix"
    assert summary.deferral_reasons == truth["reasons"]
    assert_agrees(text)


def glued(listings: list[tuple[str, Any]], as_lines: int) -> Any:
    """The listings' texts one after another: one text, or (``as_lines``) its lines."""
    text = "\n".join(text for text, _ in listings)
    return text.split("\n") if as_lines else text


@settings(max_examples=60, deadline=None)
@given(st.lists(exim_listings(), min_size=2, max_size=4), st.sampled_from([0, 1]))
def test_glued_exim_listings_read_as_the_sum_of_their_parts(
    listings: list[tuple[str, dict[str, float]]], as_lines: int
) -> None:
    summary = assert_agrees(glued(listings, as_lines))
    assert summary.messages == sum(summarize(part).messages for part, _ in listings)
    assert summary.bytes == sum(summarize(part).bytes for part, _ in listings)


@settings(max_examples=60, deadline=None)
@given(st.lists(postfix_listings(), min_size=2, max_size=4), st.sampled_from([0, 1]))
def test_glued_postfix_listings_read_as_the_sum_of_their_parts(
    listings: list[tuple[str, dict[str, Any]]], as_lines: int
) -> None:
    summary = summarize(glued(listings, as_lines), now=NOW)
    assert summary.messages == sum(summarize(part, now=NOW).messages for part, _ in listings)
    assert sum(truth["reasons"][0] for _, truth in listings) == summary.deferral_reasons[0]


# Each odd header: (messages, frozen, bounces, unparsed, sender) it adds to exim-bp.txt.
ODD_HEADER_READINGS = {
    " 6m   350 1xW6VZ-0000xu-1S <>x>": (1, 0, 0, 0, ">x"),
    " 6m   350 1xW6VZ-0000xu-1S <x <>": (1, 0, 0, 0, "x <"),
    " 6m   350 1xW6VZ-0000xu-1S <> *** frozen ***>": (1, 0, 0, 0, "> *** frozen ***"),
    " 6m   350 1xW6VZ-0000xu-1S <a> (alice) *** frozen ***": (1, 1, 0, 0, "a"),
    " 6m   350 1xW6VZ-0000xu-1S <a> *** frozen *** ": (1, 1, 0, 0, "a"),
    " 6m  1.2.3 1xW6VZ-0000xu-1S <a>": (0, 0, 0, 1, None),
    " 6m       1xW6VZ-0000xu-1S <a>": (1, 0, 0, 0, "a"),
    " 6m   350 1xW6VZ-0000xu-1S <": (0, 0, 0, 1, None),
    " 6m   350 1xW6VZ-0000xu-1S": (1, 0, 0, 0, ""),
}


def test_odd_headers_are_all_pinned() -> None:
    assert set(ODD_HEADER_READINGS) == set(ODD_EXIM_HEADERS)


@pytest.mark.parametrize("header", ODD_EXIM_HEADERS)
def test_odd_headers_read_as_the_grammar_says(header: str) -> None:
    base = summarize(fixture("exim-bp.txt"))
    text = fixture("exim-bp.txt") + header + "\n          bob@example.net\n\n"
    summary = assert_agrees(text)
    messages, frozen, bounces, unparsed, sender = ODD_HEADER_READINGS[header]
    assert summary.messages - base.messages == messages
    assert summary.frozen - base.frozen == frozen
    assert summary.bounces - base.bounces == bounces
    assert summary.unparsed_lines == unparsed
    last = list(iter_messages(text))[-1]
    if sender is None:  # junk: its recipient line goes nowhere
        assert last.id != "1xW6VZ-0000xu-1S" or last.recipients != ("bob@example.net",)
    else:
        assert (last.sender, last.recipients) == (sender, ("bob@example.net",))
