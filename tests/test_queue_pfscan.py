"""brainycp._pfscan, the C reading of canonical Postfix mailq text: whatever it takes it reads
exactly as the line-by-line reading (_postfix_summarize_lines) does, and summarize gives the
same summary with and without it, on every input."""

from __future__ import annotations

import calendar
import contextlib
import datetime
import gzip
import struct
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brainycp.queue as queue_module
from brainycp.queue import QueueSummary, summarize
from tests.support import FIXTURES, require_c_reader

NOW = calendar.timegm((2026, 11, 25, 6, 50, 0))
BERLIN = ZoneInfo("Europe/Berlin")
TITLE = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def require_pfscan() -> ModuleType:
    module: ModuleType = require_c_reader("_pfscan")
    return module


@contextlib.contextmanager
def patched(**values: Any) -> Iterator[None]:
    """Set attributes of brainycp.queue for a block (hypothesis tests cannot use monkeypatch)."""
    saved = {name: getattr(queue_module, name) for name in values}
    try:
        for name, value in values.items():
            setattr(queue_module, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(queue_module, name, value)


def line_path(text: str, now: float = NOW, zone: datetime.tzinfo | None = None) -> QueueSummary:
    """The line-by-line reading alone: the reference."""
    acc = queue_module._Acc(now)
    acc.flavour = "postfix"
    queue_module._postfix_summarize_lines(text.split("\n"), acc, now, zone)
    return acc.result()


def assert_same_every_way(
    detail: str | list[str], now: float = NOW, zone: datetime.tzinfo | None = None
) -> QueueSummary:
    """summarize with the C reading == without it (== the line path when all of it is Postfix)."""
    require_pfscan()
    with_c = summarize(detail, now=now, zone=zone)
    with patched(_pfscan=None):
        without_c = summarize(detail, now=now, zone=zone)
    assert with_c == without_c
    text = detail if isinstance(detail, str) else "\n".join(detail)
    kind, offset, _ = queue_module._detect(text)
    if kind == "postfix" and offset == 0:
        assert with_c == line_path(text, now, zone)
    return with_c


# --------------------------------------------------------------------------------------------
# Generated listings

ADDRESSES = st.one_of(
    st.from_regex(r"[a-z][a-z0-9.+]{0,12}@[a-z]{1,8}\.(?:org|net|example)", fullmatch=True),
    st.sampled_from(
        [
            "jürgen.müller@bücher.example",
            "пользователь@пример.рф",
            "用户@例子.广告",
            '"john doe"@example.org',
            "emoji\U0001f600@example.net",
            "\u010a\u0a0a@example.net",  # characters that hold the byte 0x0A
            "x\U0001000a@example.net",
        ]
    ),
)
REASONS = [
    ("connect to mx.example.net[192.0.2.7]:25: Connection refused", "connection_refused"),
    ("connect to mx.example.net[192.0.2.7]:25: Connection timed out", "timed_out"),
    (
        "host mx.example.net[192.0.2.7] said: 450 4.7.1 <a@example.net>: Recipient address "
        "rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.net.html",
        "greylisted",
    ),
    ("host mx.example.net[192.0.2.7] said: 552 5.2.2 mailbox full", "mailbox_full"),
    ("deferred transport", "other"),
    ("reason unavailable", None),
    ("délai dépassé", "other"),
]


def reason_line(text: str) -> str:
    """A reason line as Postfix prints it: ending in column 78, or unindented when long."""
    return " " * max(0, 76 - len(text)) + f"({text})"


@st.composite
def listings(draw: st.DrawFn) -> list[str]:
    """The lines of a canonical postqueue -p listing."""
    count = draw(st.integers(0, 8))
    lines = [TITLE]
    total = 0
    for _ in range(count):
        age = draw(st.integers(0, 400 * 86400))
        tm = datetime.datetime.fromtimestamp(NOW - age, tz=datetime.UTC)
        queue_id = draw(st.from_regex(r"[0-9A-Za-z]{5,20}", fullmatch=True))
        flags = draw(st.sampled_from(["", "*", "!", "!#", "#", "*!"]))
        size = draw(st.integers(0, 10**12 - 1))
        sender = draw(st.one_of(st.sampled_from(["MAILER-DAEMON", "<>", ""]), ADDRESSES))
        total += size
        lines.append(f"{queue_id}{flags} {size:>7} {tm.strftime('%a %b %e %H:%M:%S')}  {sender}")
        for address in draw(st.lists(ADDRESSES, min_size=1, max_size=3)):
            if draw(st.booleans()):
                lines.append(reason_line(draw(st.sampled_from(REASONS))[0]))
            lines.append(" " * 41 + address)
        lines.append("")
    lines.append(f"-- {total // 1024} Kbytes in {count} Request{'' if count == 1 else 's'}.")
    return lines


HEADER_SENDERS = [
    "",
    "  ",
    "<>",
    "MAILER-DAEMON",
    "MAILER-DAEMON ",
    "mailer-daemon",
    "<> x",
    "alice@example.org",
    "alice@example.org   ",
    "two words@example.org",
    "jürgen@bücher.example",
    "用户@例子.广告",
    "a\xa0b@example.org",
    "\xa0a@example.org",
    "a@example.org\xa0",
    "a\x85b@example.org",
    "a\tb@example.org",
    "a\x1cb@example.org",
    "a\u2028b@example.org",
    "a\u3000b@example.org",
    "a\x00b@example.org",
    "emoji\U0001f600@example.net",
]


@st.composite
def odd_headers(draw: st.DrawFn) -> str:
    """Header lines near the canonical shape: each field a little off, or not."""
    space = st.sampled_from([" ", " ", " ", "  ", "   ", "\t", "", "\xa0"])
    queue_id = draw(st.from_regex(r"[0-9A-Za-z]{3,34}", fullmatch=True))
    flags = draw(st.from_regex(r"[*!#]{0,3}", fullmatch=True))
    size = draw(st.from_regex(r"[0-9]{1,14}", fullmatch=True))
    wday = draw(st.sampled_from([*WEEKDAYS, "Mon", "Fri", "mon", "Xyz", "Mo"]))
    mon = draw(st.sampled_from([*MONTHS, "Feb", "Dec", "jan", "Foo"]))
    day = draw(st.sampled_from(["1", " 1", "01", "29", "30", "31", "0", "00", "99", "100", "1x"]))
    hh = draw(st.sampled_from(["00", "09", "23", "24", "99", "1", "0a"]))
    mm = draw(st.sampled_from(["00", "59", "60", "5"]))
    ss = draw(st.sampled_from(["00", "59", "60", "61"]))
    sender = draw(st.sampled_from(HEADER_SENDERS))
    tail = draw(st.sampled_from(["", "", " ", "  ", "\r", "\t", "\xa0"]))
    return (
        f"{queue_id}{flags}{draw(space)}{size}{draw(space)}{wday}{draw(space)}{mon}"
        f"{draw(space)}{day} {hh}:{mm}:{ss}{draw(space)}{sender}{tail}"
    )


HOSTILE_LINES = st.one_of(
    odd_headers(),
    st.sampled_from(
        [
            "",
            "   ",
            "\t",
            "\r",
            "junk",
            "warning: junk",
            "\tbob@example.net",
            "  \tbob@example.net",
            "  bob@example.net\t",
            "  \xa0bob@example.net",
            "  bob@example.net\xa0",
            "  bob@example.net\r",
            "  (reason without its parenthesis",
            "(unindented reason without its parenthesis",
            "(reason) trailing words",
            "(reason)   ",
            "(reason)\t",
            "(reason)\r",
            "  ()",
            "  ( )",
            "()",
            "(",
            "  (",
            "  )",
            "  (connect to mx.example.net[192.0.2.7]:25: Connection refused)",
            "(host mx.example.net said: 550 5.1.1 User unknown in virtual mailbox table)",
            "  (x\n",
            "-- 12 Kbytes in 3 Requests.",
            "-- 1 Kbytes in 1 Request.",
            "-- 1 Kbytes in 1 Request.  ",
            "-- 1 Kbytes in 1 Request.\t",
            "-- Kbytes in 1 Request.",
            TITLE,
            TITLE + "\r",
            "-Queue ID-",
            "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------",
            "Mail queue is empty",
            "Mail queue is empty ",
            "   Mail queue is empty",
            "postqueue: warning: Mail system is down -- accessing queue directly",
            " 5m  1.2K 1xW6VZ-0000xu-1S <a@example.org>",
            '{"queue_name": "deferred"}',
            "\x1c",
            "\u2028",
            "  \u0a20\u010a",
        ]
    ),
    st.text(alphabet=" \t\r()\xa0-:!*#0123456789AZaz\u010a\U0001000a", max_size=30),
)


@st.composite
def hostile_listings(draw: st.DrawFn) -> str:
    """A generated listing with junk lines put in, lines changed and line ends varied."""
    lines = draw(listings())
    for position, line in sorted(
        draw(st.lists(st.tuples(st.integers(0, len(lines)), HOSTILE_LINES), max_size=5)),
        reverse=True,
    ):
        lines.insert(position, line)
    if lines and draw(st.booleans()):
        index = draw(st.integers(0, len(lines) - 1))
        lines[index] = draw(HOSTILE_LINES)
    newline = draw(st.sampled_from(["\n", "\n", "\n", "\r\n"]))
    return newline.join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(listings(), st.booleans())
def test_generated_listings_read_the_same_with_and_without_c(
    lines: list[str], berlin: bool
) -> None:
    text = "\n".join(lines) + "\n"
    summary = assert_same_every_way(text, zone=BERLIN if berlin else None)
    assert summary.unparsed_lines == 0


@PROPERTY
@given(hostile_listings(), st.booleans())
def test_hostile_listings_read_the_same_with_and_without_c(text: str, berlin: bool) -> None:
    assert_same_every_way(text, zone=BERLIN if berlin else None)


@PROPERTY
@given(st.lists(HOSTILE_LINES, max_size=12), st.sampled_from(["", TITLE + "\n"]))
def test_random_lines_read_the_same_with_and_without_c(lines: list[str], head: str) -> None:
    assert_same_every_way(head + "\n".join(lines))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(listings(), hostile_listings().map(str.splitlines)), min_size=1, max_size=4)
)
def test_tiny_regions_and_lists_of_lines_read_the_same(parts: list[list[str]]) -> None:
    # Regions and list pieces cut anywhere: mid-message, before a reason line, between
    # a message's reasons. The pending reasons of the last message must carry over exactly.
    lines = [line for part in parts for line in part]
    text = "\n".join(lines)
    whole = summarize(text, now=NOW)
    for region in (64, 300):
        tiny = {"_SLICE_CHARS": region, "_MIN_SLICE_CHARS": region}  # the Python slices too
        with patched(_POSTFIX_SCAN_REGION_CHARS=region, _LINES_PER_CHUNK=5, **tiny):
            assert assert_same_every_way(text) == whole
            assert assert_same_every_way(lines) == whole


@settings(max_examples=100, deadline=None)
@given(st.lists(listings(), min_size=1, max_size=3))
def test_tiny_regions_of_canonical_text_take_the_c_path(parts: list[list[str]]) -> None:
    pfscan = require_pfscan()
    text = "\n".join(line for part in parts for line in part)
    with patched(_POSTFIX_SCAN_REGION_CHARS=64):
        small = summarize(text, now=NOW)
    assert small == summarize(text, now=NOW) == line_path(text)
    # Every region is taken but those that start inside a message or hold no header.
    for lo, hi in queue_module._slice_bounds(text, 0, len(text), 64):
        chunk = text[lo:hi].lstrip("\n")
        assert pfscan.scan(text, lo, hi) is not None or chunk[0] in " (" or chunk[0] == "-"


# --------------------------------------------------------------------------------------------
# What the C reading accepts, field by field


@settings(max_examples=1000, deadline=None)
@given(odd_headers())
def test_every_header_the_c_reading_takes_is_a_header_with_the_same_fields(header: str) -> None:
    pfscan = require_pfscan()
    text = f"{TITLE}\n{header}\n  (first reason)\n                    bob@example.net\n"
    found = pfscan.scan(text, 0, len(text))
    m = queue_module._POSTFIX_HEADER.fullmatch(header)
    if found is None:
        return
    assert m is not None
    messages, held, bounces, size, hours, single, multi, last = found
    assert (messages, single, multi, last) == (1, {}, [], ("first reason",))
    assert held == ("!" in m.group("flags"))
    assert bounces == ((m.group("sender") or "") in queue_module._NULL_SENDERS)
    assert size == int(m.group("size")) <= queue_module.MAX_MESSAGE_BYTES
    wday, mon = WEEKDAYS.index(m.group("wday")), MONTHS.index(m.group("mon"))
    key = ((wday * 12 + mon) * 100 + int(m.group("day"))) * 24 + int(m.group("hh"))
    mmss = int(m.group("mm")) * 60 + int(m.group("ss"))
    assert hours == {key: struct.pack("<H", mmss)}
    assert_same_every_way(text)


def test_a_region_reads_its_fields_messages_and_reasons() -> None:
    pfscan = require_pfscan()
    text = "\n".join(
        [
            TITLE,
            "ABCDE!  1200 Tue Dec  1 17:05:48  MAILER-DAEMON",
            "                       (deferred transport)",
            "                       bob@example.net",
            "",
            "FGHIJ*#  34 Tue Dec  1 17:59:60  alice@example.org",
            "  (a)",
            "(b)",
            "  carol@example.net",
            "  (a)",
            "",
            "KLMNO 5 Mon Jan 31 00:00:00",
            "  (deferred transport)",
            "",
            "PQRST 7 Sun Feb 29 23:01:02 <> ",
            "  (x)",
            "  (y)",
            "",
            "-- 1 Kbytes in 4 Requests.",
            "",
        ]
    )
    tuesday_5pm = ((1 * 12 + 11) * 100 + 1) * 24 + 17
    assert pfscan.scan(text, 0, len(text)) == (
        4,
        1,
        3,
        1246,
        {
            tuesday_5pm: struct.pack("<HH", 5 * 60 + 48, 59 * 60 + 60),
            ((0 * 12 + 0) * 100 + 31) * 24 + 0: struct.pack("<H", 0),
            ((6 * 12 + 1) * 100 + 29) * 24 + 23: struct.pack("<H", 62),
        },
        {"deferred transport": 2},
        [("a", "b", "a")],
        ("x", "y"),
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        TITLE + "\n",
        "Mail queue is empty\n",
        "-- 0 Kbytes in 0 Requests.\n",
        "  bob@example.net\nABCDE 1 Tue Dec  1 17:05:48 a@b\n",  # a recipient before any header
        "(reason)\nABCDE 1 Tue Dec  1 17:05:48 a@b\n",
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\n\tbob@example.net\n",  # tab-indented: Python decides
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\r\n",
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\n  bob@example.net\r\n",
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\n(reason\n",
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\n-- 1 Kbytes in 1 Request.\nFGHIJ 1 Tue Dec  1 17:05:48\n",
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\n-- 1 Kbytes in 1 Request.\n  bob@example.net\n",
        "ABCDE 1234567890123 Tue Dec  1 17:05:48 a@b\n",  # 13 digits
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456 1 Tue Dec  1 17:05:48 a@b\n",  # a 33-character id
        "ABCD 1 Tue Dec  1 17:05:48 a@b\n",
        "ABCDE 1 Tue Dec  1 24:05:48 a@b\n",
        "ABCDE 1 Tue Dec  1 17:60:48 a@b\n",
        "ABCDE 1 Tue Dec  1 17:05:61 a@b\n",
        "ABCDE 1 Tue Dec 100 17:05:48 a@b\n",
        "ABCDE 1 Tue Dec  1 17:05:48 a\xa0b\n",
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\xa0\n",
        "ABCDE 1 Tue Dec  1 17:05:48\ta@b\n",
        "ABCDE 1 Tue  Dec  1 17:05:48 a@b\n",
        "ABCDE 1 Tue Dec  1  17:05:48 a@b\n",
        "ABCDE 1 Tue Dec  1 17:05:48a@b\n",
        "ABCDE\t1 Tue Dec  1 17:05:48 a@b\n",
        "junk\nABCDE 1 Tue Dec  1 17:05:48 a@b\n",
    ],
)
def test_what_the_c_reading_leaves_to_python(text: str) -> None:
    pfscan = require_pfscan()
    assert pfscan.scan(text, 0, len(text)) is None
    assert_same_every_way(text)
    assert_same_every_way(TITLE + "\n" + text)


@pytest.mark.parametrize(
    "text",
    [
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\n   \n  bob@example.net\n",  # a line of spaces
        "ABCDE 1 Tue Dec  1 17:05:48\n",  # no sender: a bounce
        "ABCDE 1 Tue Dec  1 17:05:48     \n",
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\n" + TITLE + "\n  (x)\n",  # a title mid-listing
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\nMail queue is empty\n  (x)\n",
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\n-- 1 Kbytes in 1 Request.  \n\n\n   \n",
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\n  ( spaced reason )  \n  ()\n(x)   \n",
        "ABCDE 999999999999 Tue Dec 99 17:05:48 a@b\n",  # 12 digits; Dec 99 (not a date)
        "ABCDE 1 Tue Feb 30 17:05:48 a@b\n",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345!!** 1 Tue Dec  1 17:05:48 a@b\n",  # a 32-character id
        "ABCDE 1 Tue Dec  1 17:05:48 jürgen 用户 \U0001f600\x00\n  \u010a\u0a0a@x\n",
    ],
)
def test_what_the_c_reading_takes(text: str) -> None:
    pfscan = require_pfscan()
    assert pfscan.scan(text, 0, len(text)) is not None
    assert_same_every_way(text)
    assert_same_every_way(TITLE + "\n" + text)


def test_impossible_dates_leave_the_region_to_python() -> None:
    # The C reading takes "Feb 30" (it knows no calendar); the region then goes to the Python
    # paths, which count the header as an unparsed line.
    text = TITLE + "\nABCDE 1 Tue Feb 30 17:05:48 a@b\n  (x)\nFGHIJ 2 Tue Dec  1 17:05:48 c@d\n"
    summary = assert_same_every_way(text)
    assert (summary.messages, summary.unparsed_lines) == (1, 1)


# --------------------------------------------------------------------------------------------
# Bounds, kinds and arguments


@settings(max_examples=300, deadline=None)
@given(hostile_listings(), st.data())
def test_scan_reads_only_inside_its_bounds(text: str, data: st.DataObject) -> None:
    pfscan = require_pfscan()
    lo = data.draw(st.integers(0, len(text)))
    hi = data.draw(st.integers(lo, len(text)))
    assert pfscan.scan(text, lo, hi) == pfscan.scan(text[lo:hi], 0, hi - lo)


@settings(max_examples=200, deadline=None)
@given(listings(), st.sampled_from(["\xe9", "\u0a0a", "\u010a", "\U0001000a", "\U0001f600"]))
def test_two_and_four_byte_text_reads_like_one_byte_text(lines: list[str], wide: str) -> None:
    pfscan = require_pfscan()
    text = "\n".join(lines).encode("ascii", "replace").decode()
    assert pfscan.scan(text + "\n" + wide, 0, len(text)) == pfscan.scan(text, 0, len(text))


def test_scan_checks_its_arguments() -> None:
    pfscan = require_pfscan()
    for start, end in [(-1, 2), (0, 4), (3, 2), (5, 5)]:
        with pytest.raises(ValueError):
            pfscan.scan("abc", start, end)
    for text in [b"abc", None, ["abc"]]:
        with pytest.raises(TypeError):
            pfscan.scan(text, 0, 1)
    with pytest.raises(TypeError):
        pfscan.scan("abc", 0)
    assert pfscan.scan("", 0, 0) is None
    assert pfscan.scan("abc", 3, 3) is None


# --------------------------------------------------------------------------------------------
# Fixtures and real captures take the C path


@pytest.mark.parametrize(
    "name",
    [
        "postfix-mailq.txt",
        "postfix-mailq-active.txt",
        "postfix-mailq-longid.txt",
        "postfix-mailq-after-d.txt",
        "postfix-mailq-cmd.txt",
        "postfix-mailq-down.txt",
    ],
)
def test_canonical_fixtures_take_the_c_path(name: str) -> None:
    pfscan = require_pfscan()
    text = (FIXTURES / name).read_text()
    assert pfscan.scan(text, 0, len(text)) is not None
    assert assert_same_every_way(text).messages > 0


def real_capture(name: str) -> tuple[str, float]:
    folder = FIXTURES / "real" / "postfix"
    path = folder / (f"{name}-mailq.txt.gz" if name == "large" else "postfix-mailq.txt")
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    before, _ = (folder / f"{name}-time.txt").read_text().split()
    return text, float(before)


@pytest.mark.parametrize("name", ["postfix", "large"])
def test_real_captures_take_the_c_path(name: str) -> None:
    pfscan = require_pfscan()
    text, now = real_capture(name)
    assert pfscan.scan(text, 0, len(text)) is not None
    for lo, hi in queue_module._slice_bounds(text, 0, len(text), 1 << 16):
        assert pfscan.scan(text, lo, hi) is not None or text[lo:hi].lstrip("\n")[:1] in " ("
    summary = assert_same_every_way(text, now=now)
    assert summary.unparsed_lines == 0
    with patched(_POSTFIX_SCAN_REGION_CHARS=1 << 12, _LINES_PER_CHUNK=100):
        assert assert_same_every_way(text.split("\n"), now=now) == summary
        assert assert_same_every_way(text, now=now) == summary


@pytest.mark.parametrize(
    "text",
    [
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\xa0\n  (x)\n",
        "ABCDE 1 Tue Dec  1 17:05:48  \xa0a@b\n  (x)\n",
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\r\r\n  (x)\n",
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\n  (connection refused)\xa0\n  bob@example.net\n",
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\n  \u3000(connection refused)\n  bob@example.net\n",
        "ABCDE 1 Tue Dec  1 17:05:48 a@b\n  bob@example.net\n  (timed out)\x1c\n",
    ],
)
def test_python_fast_path_reads_odd_whitespace_like_the_line_path(text: str) -> None:
    # The header regex's \S and str.strip decide what a sender and a reason line are; the
    # fast pattern follows them (it once took "a@b\xa0" for a sender, and missed "(x)\xa0").
    listing = f"{TITLE}\n{text}\nFGHIJ 2 Tue Dec  1 17:05:48 c@d\n  (mailbox full)\n"
    with patched(_pfscan=None):
        assert summarize(listing, now=NOW) == line_path(listing)


@pytest.mark.parametrize(
    "head",
    [
        "",
        "\n\n",
        "   \n\n",
        TITLE + "\n",
        "\n\n" + TITLE + "\n\n",
        "postqueue: warning: Mail system is down -- accessing queue directly\n" + TITLE + "\n",
        "Mail queue is empty\n",
    ],
)
def test_what_comes_before_the_first_message_reads_the_same(head: str) -> None:
    body = (FIXTURES / "postfix-mailq.txt").read_text().split("\n", 1)[1]
    summary = assert_same_every_way(head + body)
    assert summary.messages == 10
    assert summary.unparsed_lines == head.startswith("postqueue:")
    assert assert_same_every_way((head + body).split("\n")) == summary


@pytest.mark.parametrize(
    ("reasons", "distinct", "taken"),
    [
        (16_000, True, True),  # up to 16,384 different texts: the C reading keeps them
        (20_000, True, False),  # more: the region goes to Python
        (70_000, False, False),  # one text, but past 65,536 lines held for one message
    ],
)
def test_hostile_reason_lines_keep_the_c_reading_small(
    reasons: int, distinct: bool, taken: bool
) -> None:
    # A panel that prints one message with a flood of reason lines: the C reading holds a
    # str per distinct text and an item per line, so past its limits Python reads the
    # region with one class mask per message.
    pfscan = require_pfscan()
    lines = "".join(f"  (said {i if distinct else 0})\n" for i in range(reasons))
    text = "ABCDE12345  100 Tue Dec  1 17:05:48  a@b\n" + lines + "  r@x.example\n"
    found = pfscan.scan(text, 0, len(text))
    assert (found is not None) == taken
    if found is not None:
        assert len(found[7]) == reasons  # the last message's reasons, pending
    with patched(_POSTFIX_SCAN_REGION_CHARS=len(text) + 1):
        summary = assert_same_every_way(text)
    assert summary.messages == 1 and summary.deferral_reasons[-1] == 1  # "other", once
