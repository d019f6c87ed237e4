"""The parser against real captures, number by number, with the truth from the MTA's own tools.

tests/fixtures/real/README.md says how each capture was made. Exim: ``exim -bp`` against
``exipick`` (exact arrival time, size, sender, frozen flag, pending recipients) and
``exim -bpc``. Postfix: ``postqueue -p`` against ``postqueue -j`` (epoch arrival time,
exact size, queue name). No expectation below is computed by the code under test.
Every test runs with the compiled readers and with the Python readers.
"""

from __future__ import annotations

import bisect
import gzip
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import brainycp.queue as queue
from brainycp.queue import AGE_BUCKETS, QueueMessage
from tests.queue_support import COMPILED, READERS, iter_messages, summarize, use_reader

REAL = Path(__file__).resolve().parent / "fixtures" / "real"
EXIM_QUEUES = ("mixed", "large")
_VAR = re.compile(r"(\w+)='((?:[^'\\]|\\.)*)'")
_HEADER = re.compile(r"^ ?\s?(\d+[mhd]) +(\S+) (\S{16,23}) ", re.M)


@pytest.fixture(autouse=True, scope="module", params=READERS)
def reader(request: pytest.FixtureRequest) -> str:
    return use_reader(request.param)


def read(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8")
    with gzip.open(path.with_name(path.name + ".gz"), "rt", encoding="utf-8", newline="") as fh:
        return fh.read()


def bucket(age: float) -> int:
    return bisect.bisect_left(AGE_BUCKETS, age)


# ------------------------------------------------------------------ Exim's own rules


def exim_age_range(token: str) -> tuple[int, int]:
    """Ages [low, high) in seconds that ``exim -bp`` prints as ``token`` (Exim 4.96 queue.c:
    whole minutes floored up to 90, then hours rounded from minutes up to 72, then days
    rounded from hours). The captures check this rule against exipick's arrival times."""
    n, unit = int(token[:-1]), token[-1]
    if unit == "m":
        return 60 * n, 60 * n + 60
    if unit == "h":
        low_minute, high_minute = max(91, 60 * n - 30), 60 * n + 30
    else:
        low_hour, high_hour = max(73, 24 * n - 12), 24 * n + 12
        low_minute, high_minute = 60 * low_hour - 30, 60 * high_hour - 30
    return 60 * low_minute, 60 * high_minute


def exim_size_range(token: str) -> tuple[float, float]:
    """Sizes [low, high] that Exim prints as ``token``: exact below 1 KiB, ``%.1f`` of
    KiB/MiB below 10 of them, rounded whole KiB/MiB above."""
    if token[-1] not in "KM":
        return float(token), float(token)
    unit = 1024 if token[-1] == "K" else 1024 * 1024
    number = token[:-1]
    half = 0.05 if "." in number else 0.5
    return (float(number) - half) * unit, (float(number) + half) * unit


@dataclass(frozen=True)
class EximTruth:
    id: str
    age_token: str
    size_token: str
    received: int
    size: int
    sender: str
    frozen: bool
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class EximCapture:
    listing: str
    count: int
    before: float
    after: float
    truth: dict[str, EximTruth]

    def true_ages(self, message: EximTruth) -> tuple[int, int]:
        """The message's age when ``exim -bp`` read the clock (it ran between before/after)."""
        return int(self.before) - message.received, int(self.after) - message.received


@cache
def exim_capture(name: str) -> EximCapture:
    listing = read(REAL / "exim" / f"{name}-bp.txt")
    tokens = {m.group(3): (m.group(1), m.group(2)) for m in _HEADER.finditer(listing)}
    truth: dict[str, EximTruth] = {}
    for line in read(REAL / "exim" / f"{name}-exipick.txt").splitlines():
        fields = dict(_VAR.findall(line))
        message_id = fields["message_exim_id"]
        pending = fields["recipients_undel"]
        truth[message_id] = EximTruth(
            id=message_id,
            age_token=tokens[message_id][0],
            size_token=tokens[message_id][1],
            received=int(fields["received_time"]),
            size=int(fields["message_size"]),
            sender=fields["sender_address"],
            frozen=fields["deliver_freeze"] == "1",
            recipients=tuple(pending.split(", ")) if pending else (),
        )
    before, after = map(float, (REAL / "exim" / f"{name}-time.txt").read_text().split())
    count = int((REAL / "exim" / f"{name}-bpc.txt").read_text())
    return EximCapture(listing, count, before, after, truth)


@cache
def _exim_parsed(name: str, compiled: bool) -> dict[str, QueueMessage]:
    listing = exim_capture(name).listing
    return {m.id: m for m in queue.iter_messages(listing, use_compiled=compiled)}


def exim_parsed(name: str) -> dict[str, QueueMessage]:
    return _exim_parsed(name, COMPILED[0])


@pytest.mark.parametrize("name", EXIM_QUEUES)
def test_exim_captures_hold_what_they_claim(name: str) -> None:
    """The captures themselves: Exim's listing, exipick and exim -bpc agree; the age rule
    above matches every real arrival time (so the tests below test the parser, not us)."""
    capture = exim_capture(name)
    assert capture.count == len(capture.truth) == len(_HEADER.findall(capture.listing))
    for message in capture.truth.values():
        low, high = exim_age_range(message.age_token)
        first, last = capture.true_ages(message)
        assert low <= last and first < high, (message.id, message.age_token, first, last)
        size_low, size_high = exim_size_range(message.size_token)
        assert size_low - 1 <= message.size <= size_high + 1, (message.id, message.size_token)


@pytest.mark.parametrize("name", EXIM_QUEUES)
def test_exim_counts_equal_exims_own(name: str) -> None:
    capture = exim_capture(name)
    truth = capture.truth.values()
    summary = summarize(capture.listing)
    assert summary.flavour == "exim" and summary.unparsed_lines == 0
    assert summary.messages == capture.count
    assert summary.frozen == sum(m.frozen for m in truth)
    assert summary.bounces == sum(m.sender == "" for m in truth)
    assert summary.held == 0
    assert set(exim_parsed(name)) == set(capture.truth)


def ascii_lower(text: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


@pytest.mark.parametrize("name", EXIM_QUEUES)
def test_exim_top_senders_and_domains_equal_exipicks_counts(name: str) -> None:
    """One reading gives the senders (exact local part, ASCII-folded domain; bounces as
    ``<>``) and the recipient domains (pending recipients, once per message) that exipick's
    own fields give."""
    capture = exim_capture(name)
    senders: Counter[str] = Counter()
    domains: Counter[str] = Counter()
    for message in capture.truth.values():
        local, at, domain = message.sender.rpartition("@")
        senders[f"{local}@{ascii_lower(domain)}" if at else message.sender or "<>"] += 1
        domains.update({ascii_lower(r.rpartition("@")[2]) for r in message.recipients})
    options = queue.ReadOptions(top_senders=10**6, top_recipient_domains=10**6)
    reading = queue.read_listing(capture.listing, options=options, use_compiled=COMPILED[0])
    assert dict(reading.top_senders) == senders
    assert dict(reading.top_recipient_domains) == domains
    counts = [count for _, count in reading.top_senders]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize("name", EXIM_QUEUES)
def test_exim_senders_flags_and_pending_recipients(name: str) -> None:
    capture = exim_capture(name)
    parsed = exim_parsed(name)
    for message_id, true in capture.truth.items():
        message = parsed[message_id]
        assert message.sender == (true.sender or "<>"), message_id
        assert message.frozen == true.frozen and not message.held, message_id
        # Delivered recipients (-Mmd, shown with D) are not pending.
        assert Counter(message.recipients) == Counter(true.recipients), message_id


@pytest.mark.parametrize("name", EXIM_QUEUES)
def test_exim_sizes_are_inside_what_the_listing_shows(name: str) -> None:
    capture = exim_capture(name)
    parsed = exim_parsed(name)
    slack = 0.0
    for message_id, true in capture.truth.items():
        low, high = exim_size_range(true.size_token)
        size = parsed[message_id].size_bytes
        assert low - 1 <= size <= high + 1, (message_id, true.size_token, size)
        if true.size < 1024:
            assert size == true.size, message_id
        slack += (high - low) / 2 + 1
    summary = summarize(capture.listing)
    true_total = sum(m.size for m in capture.truth.values())
    assert summary.bytes == sum(m.size_bytes for m in parsed.values())
    assert abs(summary.bytes - true_total) <= slack
    # The listing rounds each size to about 5 %: the total is much closer than that.
    assert abs(summary.bytes - true_total) <= 0.01 * true_total


@pytest.mark.parametrize("name", EXIM_QUEUES)
def test_exim_ages_are_inside_their_tokens_and_in_the_true_bucket(name: str) -> None:
    capture = exim_capture(name)
    parsed = exim_parsed(name)
    straddling = 0
    wrong_bucket = 0
    for message_id, true in capture.truth.items():
        low, high = exim_age_range(true.age_token)
        age = parsed[message_id].age_seconds
        assert low <= age < high, (message_id, true.age_token, age)
        # The real age when Exim read its clock (the large listing took seconds to print).
        first, last = capture.true_ages(true)
        real = min(max(first, low), high - 1)
        assert first <= real <= last, (message_id, true.age_token, first, last)
        if bucket(low) == bucket(high - 1):
            # The token proves the bucket: it must be the true one.
            assert bucket(age) == bucket(real), (message_id, true.age_token, age, real)
        else:
            straddling += 1
            wrong_bucket += bucket(age) != bucket(real)
    assert wrong_bucket <= straddling


@pytest.mark.parametrize("name", EXIM_QUEUES)
def test_exim_histogram_sum_and_oldest_follow_the_true_ages(name: str) -> None:
    capture = exim_capture(name)
    summary = summarize(capture.listing)
    parsed = exim_parsed(name)
    # Both entry points agree.
    histogram = [0] * len(AGE_BUCKETS)
    for message in parsed.values():
        histogram[bucket(message.age_seconds)] += 1
    assert list(summary.age_buckets) == histogram
    assert summary.age_sum_seconds == pytest.approx(sum(m.age_seconds for m in parsed.values()))
    # Against the truth: the sum is within half a token of each real age.
    true_sum = sum(capture.true_ages(m)[0] for m in capture.truth.values())
    slack = sum(
        (exim_age_range(m.age_token)[1] - exim_age_range(m.age_token)[0]) / 2 + 1
        for m in capture.truth.values()
    )
    assert abs(summary.age_sum_seconds - true_sum) <= slack
    oldest = max(capture.truth.values(), key=lambda m: -m.received)
    low, high = exim_age_range(oldest.age_token)
    assert summary.oldest_age_seconds is not None
    assert low <= summary.oldest_age_seconds < high


def test_exim_boundary_messages_land_where_their_real_age_is() -> None:
    """mixed: 20 s either side of every bucket bound and display boundary (faketime)."""
    capture = exim_capture("mixed")
    parsed = exim_parsed("mixed")
    seen = 0
    for message_id, true in capture.truth.items():
        recipient = true.recipients[0] if true.recipients else ""
        if not recipient.startswith("age"):
            continue
        seen += 1
        first, _ = capture.true_ages(true)
        low, high = exim_age_range(true.age_token)
        if bucket(low) == bucket(high - 1):
            assert bucket(parsed[message_id].age_seconds) == bucket(first), (recipient, first)
    assert seen == 30


# ------------------------------------------------------------------ Postfix


@dataclass(frozen=True)
class PostfixCapture:
    listing: str
    jsonl: str
    now: float
    truth: dict[str, dict[str, Any]]


POSTFIX_QUEUES = ("postfix", "large")


@cache
def postfix_capture(name: str = "postfix") -> PostfixCapture:
    """``postfix``: 18 messages with every feature; ``large``: 20,000 messages."""
    folder = REAL / "postfix"
    jsonl = read(folder / f"{name}-postqueue-j.jsonl")
    truth = {row["queue_id"]: row for row in map(json.loads, jsonl.splitlines())}
    before, _ = map(float, (folder / f"{name}-time.txt").read_text().split())
    return PostfixCapture(read(folder / f"{name}-mailq.txt"), jsonl, math.floor(before), truth)


@pytest.mark.parametrize("name", POSTFIX_QUEUES)
def test_postfix_top_senders_and_domains_equal_postqueue_j(name: str) -> None:
    capture = postfix_capture(name)
    senders: Counter[str] = Counter()
    domains: Counter[str] = Counter()
    for row in capture.truth.values():
        sender = "<>" if row["sender"] in ("", "MAILER-DAEMON") else row["sender"]
        local, at, domain = sender.rpartition("@")
        senders[f"{local}@{ascii_lower(domain)}" if at else sender] += 1
        addresses = [r["address"] for r in row["recipients"]]
        domains.update({ascii_lower(a.rpartition("@")[2]) for a in addresses})
    options = queue.ReadOptions(top_senders=10**6, top_recipient_domains=10**6)
    for text in (capture.listing, capture.jsonl):
        reading = queue.read_listing(text, capture.now, options=options, use_compiled=COMPILED[0])
        assert dict(reading.top_senders) == senders
        assert dict(reading.top_recipient_domains) == domains


def postfix_true_age(capture: PostfixCapture, row: dict[str, Any]) -> float:
    return capture.now - int(row["arrival_time"])


def test_postfix_capture_holds_what_it_claims() -> None:
    rows = postfix_capture().truth.values()
    assert len(rows) == 18
    assert sum(r["queue_name"] == "hold" for r in rows) == 6
    assert sum(r["sender"] == "MAILER-DAEMON" for r in rows) == 4


@pytest.mark.parametrize("name", POSTFIX_QUEUES)
def test_postfix_counts_and_bytes_equal_postqueue_j(name: str) -> None:
    capture = postfix_capture(name)
    rows = capture.truth.values()
    for text in (capture.listing, capture.jsonl):
        summary = summarize(text, now=capture.now)
        assert summary.flavour == "postfix" and summary.unparsed_lines == 0
        assert summary.messages == len(capture.truth)
        assert summary.held == sum(r["queue_name"] == "hold" for r in rows)
        assert summary.bounces == sum(r["sender"] == "MAILER-DAEMON" for r in rows)
        assert summary.frozen == 0
        assert summary.bytes == sum(int(r["message_size"]) for r in rows)


@pytest.mark.parametrize("name", POSTFIX_QUEUES)
def test_postfix_messages_equal_postqueue_j(name: str) -> None:
    capture = postfix_capture(name)
    parsed = {m.id: m for m in iter_messages(capture.listing, now=capture.now)}
    assert set(parsed) == set(capture.truth)
    for queue_id, row in capture.truth.items():
        message = parsed[queue_id]
        sender = row["sender"]
        assert message.sender == ("<>" if sender == "MAILER-DAEMON" else sender), queue_id
        assert message.size_bytes == row["message_size"], queue_id
        assert message.held == (row["queue_name"] == "hold"), queue_id
        addresses = [r["address"] for r in row["recipients"]]
        assert Counter(message.recipients) == Counter(addresses), queue_id


@pytest.mark.parametrize("name", POSTFIX_QUEUES)
def test_postfix_ages_equal_the_epoch_arrival_times(name: str) -> None:
    """Includes arrivals 2 years ago, 376 days ago, in the previous calendar year on a later
    date than today (Dec 20 vs Dec 1), and on Jan 1: mailq prints no year."""
    capture = postfix_capture(name)
    parsed = {m.id: m for m in iter_messages(capture.listing, now=capture.now)}
    for queue_id, row in capture.truth.items():
        true_age = postfix_true_age(capture, row)
        assert parsed[queue_id].age_seconds == pytest.approx(true_age, abs=1), (queue_id, row)


@pytest.mark.parametrize("name", POSTFIX_QUEUES)
def test_postfix_histogram_and_oldest_equal_the_truth(name: str) -> None:
    capture = postfix_capture(name)
    ages = [postfix_true_age(capture, row) for row in capture.truth.values()]
    histogram = [0] * len(AGE_BUCKETS)
    for age in ages:
        histogram[bucket(age)] += 1
    for text in (capture.listing, capture.jsonl):
        summary = summarize(text, now=capture.now)
        assert list(summary.age_buckets) == histogram
        assert summary.oldest_age_seconds == pytest.approx(max(ages), abs=1)
        assert summary.age_sum_seconds == pytest.approx(sum(ages), abs=len(ages))
