"""Both readers of each text format (compiled and Python) against a plain reference reader
written here from the documented grammar (brainycp/queue/exim.py and postfix.py), on
generated listings full of edge cases, and against the truth of a generated outbreak.

The reference is deliberately naive: one regular expression per line, one dict per
message, and its own sender and domain keys. Token meanings (Exim ages and sizes, Postfix
years) come from brainycp.queue.tokens, which tests/test_queue.py checks on their own.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainycp.queue import AGE_BUCKETS, DEFERRAL_REASONS, ReadOptions, read_listing
from brainycp.queue.tokens import (
    MONTHS,
    WEEKDAYS,
    age_token_values,
    exim_size_bytes,
    postfix_hour_epoch,
)
from tests.support import require_c_reader

NOW = 1795589400.0  # 2026-11-25 06:50 UTC
ALL = ReadOptions(top_senders=10**6, top_recipient_domains=10**6)


@pytest.fixture(params=["compiled", "python"])
def compiled(request: pytest.FixtureRequest) -> bool:
    if request.param == "compiled":
        require_c_reader("exim")
        require_c_reader("postfix")
    return request.param == "compiled"


# ------------------------------------------------------------------ the reference


def ascii_lower(text: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def no_surrogates(text: str) -> str:
    return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)


def sender_key(sender: str) -> str:
    sender = no_surrogates(sender)
    local, at, domain = sender.rpartition("@")
    return local + "@" + ascii_lower(domain) if at else sender


def domain_of(address: str) -> str | None:
    local, at, domain = address.strip().strip("<>").rpartition("@")
    return ascii_lower(no_surrogates(domain)) if at and local and domain else None


EXIM_HEADER = re.compile(
    r" {0,3}([0-9]+[smhd]) +(?:([0-9]+(?:\.[0-9]+)?[KMG]?) +)?"
    r"([0-9A-Za-z]{6}-(?:[0-9A-Za-z]{6}-[0-9A-Za-z]{2}|[0-9A-Za-z]{11}-[0-9A-Za-z]{4}))"
    r"(?: <(.*)>(?: \([^()]*\))?)?( \*\*\* frozen \*\*\*)? *"
)


def bare_lines(text: str) -> list[str]:
    """The lines of ``text`` without their ``\\n`` or ``\\r\\n``."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def new_message(
    message_id: str, age: float, size: int, sender: str, bounce: bool, *, frozen: bool, held: bool
) -> dict[str, Any]:
    """A message as the reference readers keep it, without recipients yet."""
    return {
        "id": message_id,
        "age": age,
        "size": size,
        "sender": sender,
        "bounce": bounce,
        "frozen": frozen,
        "held": held,
        "recipients": [],
    }


def reference_exim(text: str) -> tuple[list[dict[str, Any]], int]:
    messages: list[dict[str, Any]] = []
    unparsed, seen = 0, False
    current: dict[str, Any] | None = None
    for line in bare_lines(text):
        m = EXIM_HEADER.fullmatch(line) if line[:1] in tuple(" 0123456789") else None
        if m:
            seen = True
            size = 0 if m.group(2) is None else exim_size_bytes(m.group(2))
            current = None
            if size is None:
                unparsed += 1
                continue
            raw = m.group(4)
            current = new_message(
                m.group(3),
                (age_token_values(m.group(1)) or (0.0, 0.0))[0],
                size,
                "" if raw is None else "<>" if raw == "" else no_surrogates(raw),
                raw == "",
                frozen=m.group(5) is not None,
                held=False,
            )
            messages.append(current)
        elif not line.strip():
            continue
        elif line[:1] in (" ", "\t") and seen and not re.match(r" {1,3}[0-9]+[smhd] ", line):
            address = line.strip()
            if current is not None and not address.startswith(("D ", "+D ", "***")):
                current["recipients"].append(address)
        else:
            unparsed += 1
    return messages, unparsed


POSTFIX_HEADER = re.compile(
    r"([0-9A-Za-z]{5,32})([*!#]*) +([0-9]+) +(Mon|Tue|Wed|Thu|Fri|Sat|Sun) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +([0-9]{1,2}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?: +(\S(?:.*\S)?))? *"
)
KNOWN_LINES = (
    re.compile(r"-+Queue ID-+ .*"),
    re.compile(r"-- [0-9]+ Kbytes in [0-9]+ Requests?\.\s*"),
)


def _arrival(m: re.Match[str]) -> int | None:
    hh, mm, ss = int(m.group(7)), int(m.group(8)), int(m.group(9))
    if int(m.group(3)) > 2**40 or hh > 23 or mm > 59 or ss > 60:
        return None
    weekday, month = WEEKDAYS.index(m.group(4)), MONTHS.index(m.group(5)) + 1
    start = postfix_hour_epoch(weekday, month, int(m.group(6)), hh, NOW, None)
    return None if start is None else start + mm * 60 + ss


def reference_postfix(text: str) -> tuple[list[dict[str, Any]], int]:
    messages: list[dict[str, Any]] = []
    unparsed, seen = 0, False
    current: dict[str, Any] | None = None
    for line in bare_lines(text):
        m = POSTFIX_HEADER.fullmatch(line) if line[:1] not in ("", " ", "\t", "(") else None
        if m:
            seen, current = True, None
            arrival = _arrival(m)
            if arrival is None:
                unparsed += 1
                continue
            raw = m.group(10) or ""
            null = raw in ("", "<>", "MAILER-DAEMON")
            current = new_message(
                m.group(1),
                max(0.0, NOW - arrival),
                int(m.group(3)),
                "<>" if null else no_surrogates(raw),
                null,
                frozen=False,
                held="!" in m.group(2),
            )
            current["reasons"] = set()
            messages.append(current)
            continue
        stripped = line.strip()
        if not stripped:
            continue
        if line[0] in " \t(" and seen:
            if current is not None and stripped[0] == "(" and stripped[-1] == ")":
                current["reasons"].add(stripped[1:-1])
            elif current is not None and line[0] != "(":
                current["recipients"].append(stripped)
            elif line[0] == "(":
                unparsed += 1
        elif line[0] in " \t" or not (
            any(k.fullmatch(line) for k in KNOWN_LINES) or stripped == "Mail queue is empty"
        ):
            unparsed += 1
    return messages, unparsed


def reference_read(text: str) -> tuple[list[dict[str, Any]], int]:
    """The first line that names a format starts the listing; other lines before it are
    unparsed (all of them when none does)."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        bare = line[:-1] if line.endswith("\r") else line
        if EXIM_HEADER.fullmatch(bare):
            reader = reference_exim
        elif (
            POSTFIX_HEADER.fullmatch(bare)
            or KNOWN_LINES[0].fullmatch(bare)
            or bare.strip() == "Mail queue is empty"
        ):
            reader = reference_postfix
        else:
            continue
        messages, unparsed = reader("\n".join(lines[index:]))
        return messages, unparsed + sum(1 for before in lines[:index] if before.strip())
    return [], sum(1 for line in lines if line.strip())


def expected(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """What a reading must give for the reference's messages."""
    buckets = [0] * len(AGE_BUCKETS)
    for message in messages:
        buckets[next(i for i, b in enumerate(AGE_BUCKETS) if message["age"] <= b)] += 1
    senders = Counter(sender_key(m["sender"]) for m in messages if m["sender"])
    domains: Counter[str] = Counter()
    for message in messages:
        domains.update({d for r in message["recipients"] if (d := domain_of(r)) is not None})
    return {
        "messages": len(messages),
        "frozen": sum(m["frozen"] for m in messages),
        "bounces": sum(m["bounce"] for m in messages),
        "held": sum(m["held"] for m in messages),
        "bytes": sum(m["size"] for m in messages),
        "buckets": tuple(buckets),
        "senders": dict(senders),
        "domains": dict(domains),
        "records": [
            (m["id"], m["sender"], tuple(no_surrogates(r) for r in m["recipients"]), m["size"])
            for m in messages
        ],
    }


def reading_of(text: str, compiled: bool) -> dict[str, Any]:
    reading = read_listing(text, NOW, options=ALL, use_compiled=compiled)
    summary = reading.summary
    from brainycp.queue import iter_messages

    records = [
        (m.id, m.sender, m.recipients, m.size_bytes)
        for m in iter_messages(text, NOW, use_compiled=compiled)
    ]
    return {
        "messages": summary.messages,
        "frozen": summary.frozen,
        "bounces": summary.bounces,
        "held": summary.held,
        "bytes": summary.bytes,
        "buckets": summary.age_buckets,
        "senders": dict(reading.top_senders),
        "domains": dict(reading.top_recipient_domains),
        "records": records,
        "unparsed": summary.unparsed_lines,
        "reasons": summary.deferral_reasons,
    }


# ------------------------------------------------------------------ generated listings

WIDE = ["\xe9", "\u0a0a", "\u010a", "\U0001000a", "\U0001f600", "\u212a", "\ud800", "\u3000"]
EXIM_AGES = ["5m", " 5m", "  3h", "   2d", "    4m", "12d", "0m", "7s", "5x", "1h"]
EXIM_SIZES = ["350", " 2.1K", "  1.2.3", "", "1.5", "12.K", "1M", "   ", "3G", "1099511627777"]
EXIM_IDS = ["1xW6VZ-0000xu-1S", "1xW6VZ-0000xuAbCdE-1Sab", "1xW6VZ-0000xu-1", "not-an-id"]
EXIM_SENDERS = ["<a@b.c>", "<>", "<A@B.C>", "<x <>", "<>x>", "<a> (alice)", "<\u212aing@Ex.org>",
                "<king@ex.ORG>", "<q\ud800@x>", "", "<", "<a@b> *** frozen *** >", "<<>>",
                '<"john doe"@x.org>', "<a@b>\t"]  # fmt: skip
EXIM_RECIPIENTS = ["bob@example.net", "<c@Ex.COM>", "D x@y", "*** note ***", "x@\u212a.org",
                   "noat", "@x", "x@", "a@b@C", "u\ud801@d.e", "< a@b >", "+D z@q",
                   "c@ex.com"]  # fmt: skip
EXIM_INDENTS = ["          ", "        D ", "        +D ", "\t", "    ", " ", "   5m ", "\t\t"]
JUNK = ["junk", "exim: warning", "-- truncated --", "\u3000junk", " ", "\u3000", "", "\x0b"]


def joined(draw: st.DrawFn, lines: list[str]) -> str:
    """``lines`` as a listing: joined by ``\\n`` or ``\\r\\n``, maybe with a final one."""
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines) + draw(st.sampled_from(["", "\n"]))


def some_lines(draw: st.DrawFn, line: Callable[[st.DrawFn, int], str]) -> list[str]:
    """1 to 25 lines, each ``line(draw, kind)`` for a kind from 0 to 9."""
    return [line(draw, draw(st.integers(0, 9))) for _ in range(draw(st.integers(1, 25)))]


def exim_line(draw: st.DrawFn, kind: int) -> str:
    """A header (kind 0-3), a recipient (4-7) or junk (8-9)."""
    if kind < 4:
        fields = [draw(st.sampled_from(x)) for x in (EXIM_AGES, EXIM_SIZES, EXIM_IDS)]
        sender = draw(st.sampled_from(EXIM_SENDERS))
        frozen = draw(st.sampled_from(["", " *** frozen ***", " *** frozen *** "]))
        return " ".join(fields) + " " + sender + frozen
    if kind < 8:
        address = draw(st.sampled_from(EXIM_RECIPIENTS))
        if draw(st.booleans()):
            address = address.replace("x", draw(st.sampled_from(WIDE)))
        return draw(st.sampled_from(EXIM_INDENTS)) + address
    return draw(st.sampled_from(JUNK))


@st.composite
def exim_texts(draw: st.DrawFn) -> str:
    lines = some_lines(draw, exim_line)
    if draw(st.booleans()):
        lines.insert(0, "5m 350 1xW6VZ-0000xu-1S <a@b>")
    return joined(draw, lines)


PF_IDS = ["AAAAA11111", "B1C2D3E4F5", "abc", "A" * 33, "0123456789ABCDEFabcd"]
PF_STAMPS = ["Wed Nov 25 06:40:00", "Tue Nov 24 23:59:60", "Mon Feb 29 10:00:00",
             "Fri Apr 31 00:00:00", "Sun Jan  1 00:00:00", "Thu Dec 31 24:00:00",
             "Sat Mar  7 12:61:00", "Wed Nov 25 6:40:00", "Wed Nov 125 06:40:00"]  # fmt: skip
PF_SENDERS = [" a@b.c", "  MAILER-DAEMON", " <>", "", " A@B.C", " x y ", " \u212aing@Ex.org",
              " s@t\t", " q\ud800@x ", " king@EX.org"]  # fmt: skip
PF_LINES = ["bob@example.net", "(connect to x: Connection refused)", "(reason unavailable)",
            "(deferred transport)", "(Greylisted)", "(unclosed", "()", "x@\u212a.Org", "noat",
            "a@b@C", "(spam blocked) trailing", "c@X.org"]  # fmt: skip
PF_KNOWN = ["-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------",
            "-- 12 Kbytes in 3 Requests.", "-- 1 Kbytes in 1 Request. ", "Mail queue is empty",
            "--Queue ID--x", "postqueue: warning"]  # fmt: skip


def postfix_line(draw: st.DrawFn, kind: int) -> str:
    """A header (kind 0-2), a recipient or reason (3-7), or a known or junk line (8-9)."""
    if kind < 3:
        head = draw(st.sampled_from(PF_IDS)) + draw(st.sampled_from(["", "*", "!", "#", "!*"]))
        size = draw(st.sampled_from(["500", "0", "1099511627777", "99999999999999999999"]))
        stamp, sender = draw(st.sampled_from(PF_STAMPS)), draw(st.sampled_from(PF_SENDERS))
        return f"{head} {size} {stamp}{sender}"
    if kind < 8:
        text = draw(st.sampled_from(PF_LINES))
        if draw(st.booleans()):
            text = text.replace("o", draw(st.sampled_from(WIDE)))
        return draw(st.sampled_from([" " * 41, "\t", "  ", "", " " * 30])) + text
    return draw(st.sampled_from(PF_KNOWN + JUNK))


@st.composite
def postfix_texts(draw: st.DrawFn) -> str:
    return joined(draw, some_lines(draw, postfix_line))


def check(text: str, compiled: bool) -> None:
    messages, unparsed = reference_read(text)
    got = reading_of(text, compiled)
    want = expected(messages)
    assert {k: got[k] for k in want} == want
    assert got["unparsed"] == unparsed


SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(text=exim_texts())
def test_exim_listings_read_as_the_reference_reads_them(compiled: bool, text: str) -> None:
    check(text, compiled)


@SETTINGS
@given(text=postfix_texts())
def test_postfix_listings_read_as_the_reference_reads_them(compiled: bool, text: str) -> None:
    messages, _ = reference_read(text)
    check(text, compiled)
    if any(line.startswith(("AAAAA", "B1C2", "0123")) for line in text.split("\n")):
        reasons = read_listing(text, NOW, use_compiled=compiled).summary.deferral_reasons
        want = [0] * len(DEFERRAL_REASONS)
        from brainycp.queue import deferral_reason

        for message in messages:
            for name in {deferral_reason(r) for r in message["reasons"]} - {None}:
                want[DEFERRAL_REASONS.index(str(name))] += 1
        assert reasons in ((), tuple(want))


# ------------------------------------------------------------------ a generated outbreak


def test_an_outbreak_gives_exact_top_senders_and_domains(compiled: bool) -> None:
    """A spam run as the generator knows it: the dominant sender, case spellings of one
    domain, look-alike local parts, multi-recipient messages with repeated domains and
    delivered recipients. The top lists are exact (every count, every tie)."""
    rng = random.Random(20)
    senders_truth: Counter[str] = Counter()
    domains_truth: Counter[str] = Counter()
    lines = []
    spellings = {
        "spam@Shop.Example": "spam@shop.example",
        "spam@shop.example": "spam@shop.example",
        "\u212aing@example.org": "\u212aing@example.org",  # KELVIN SIGN: its own sender
        "king@example.org": "king@example.org",
        "King@example.org": "King@example.org",  # another local part: its own sender
    }
    for i in range(3000):
        raw = rng.choice(list(spellings) + [f"user{rng.randint(0, 400)}@Host{i % 7}.NET"] * 3)
        key = spellings.get(raw) or raw.rpartition("@")[0] + "@" + raw.rpartition("@")[2].lower()
        senders_truth[key] += 1
        lines.append(f"{rng.randint(1, 89):2d}m  {rng.randint(300, 999)} 1xW6VZ-{i:06d}-1S <{raw}>")
        pending = set()
        for _ in range(rng.randint(1, 5)):
            domain = rng.choice(["Big.example", "big.EXAMPLE", "small.example", "\u212a.example"])
            delivered = rng.random() < 0.2
            lines.append(("        D " if delivered else "          ") + f"r{i}@{domain}")
            if not delivered:
                pending.add(ascii_lower(domain))
        domains_truth.update(pending)
        lines.append("")
    reading = read_listing("\n".join(lines), NOW, options=ALL, use_compiled=compiled)
    assert dict(reading.top_senders) == senders_truth
    assert dict(reading.top_recipient_domains) == domains_truth
    top = read_listing("\n".join(lines), NOW, options=ReadOptions(3, 2), use_compiled=compiled)
    ranked = sorted(senders_truth.items(), key=lambda item: (-item[1], item[0]))
    assert top.top_senders == tuple(ranked[:3])
    assert top.top_recipient_domains == tuple(
        sorted(domains_truth.items(), key=lambda item: (-item[1], item[0]))[:2]
    )
