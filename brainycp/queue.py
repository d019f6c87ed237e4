"""Parse mail-queue listings: Exim ``exim -bp`` and Postfix ``mailq`` / ``postqueue -p|-j``.

Two entry points over the same grammar:

- :func:`summarize` streams a listing into a :class:`QueueSummary` (counts, bytes, an age
  histogram). It never builds a per-message record: its state is a handful of counters plus
  one entry per *distinct* Exim age or size token, so a 1,000,000-message listing costs a few
  MiB beyond the listing text itself.
- :func:`iter_messages` yields one :class:`QueueMessage` per message, for callers that need
  ids, senders and recipients (rule selection, top senders).

``detail`` is what the panel's ``list_msg`` returned: one string (console output), a list of
lines, or a list of objects. The format is detected per listing. Lines that cannot be read are
counted in ``unparsed_lines``; nothing in a listing raises.

How lines are read (both entry points agree on this; the tests hold them to it):

- Exim: a header ``<age> <size> <id> <sender>`` (at most three leading spaces; ``age`` like
  ``45m``/``3h``/``2d``/``30s``, ``size`` like ``812``/``2.1K``/``1.3M`` with K/M/G = 1024
  multiples, blank for an empty message; id 6-6-2 or 6-11-4; an untrusted submitter's
  ``(login)`` may follow the sender), optionally ending in ``*** frozen ***``. An indented
  line belongs to the message above it: a recipient, or, marked ``D``/``+D``, one already
  delivered (not pending), or a ``*** ... ***`` note. Blank lines are separators only.
- Postfix: ``<queue-id>[*!#] <size> <Day Mon DD HH:MM:SS> <sender>`` headers (``!`` = held;
  the time is the panel's local time, read in the ``zone`` the caller gives),
  indented ``(reason)`` and recipient lines, and the title, footer and ``Mail queue is empty``
  lines, which are known but carry no message. ``MAILER-DAEMON`` is the null sender.
- ``postqueue -j``: one JSON object per line.
- Anything else that is not blank is an unparsed line; so is an indented line before the
  first message.
"""

from __future__ import annotations

import bisect
import datetime
import functools
import importlib
import itertools
import json
import math
import operator
import os
import re
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal


def _c_reader(name: str) -> Any:
    """An optional C reader (setup.py builds them where a C compiler is installed), or None:
    not built, or switched off with BRAINYCP_PURE_PYTHON=1. The Python paths read every
    listing the same way."""
    if os.environ.get("BRAINYCP_PURE_PYTHON") == "1":
        return None
    try:
        return importlib.import_module(f"brainycp.{name}")
    except ImportError:
        return None


_eximscan = _c_reader("_eximscan")
_pfscan = _c_reader("_pfscan")


def c_readers() -> tuple[str, ...]:
    """The formats read by a C reader here (``exim``, ``postfix``); empty: pure Python only."""
    return tuple(
        name for name, module in (("exim", _eximscan), ("postfix", _pfscan)) if module is not None
    )


__all__ = [
    "AGE_BUCKETS",
    "DEFERRAL_REASONS",
    "MAX_MESSAGE_BYTES",
    "Flavour",
    "QueueMessage",
    "QueueSummary",
    "c_readers",
    "deferral_reason",
    "iter_messages",
    "summarize",
]

AGE_BUCKETS: tuple[float, ...] = (
    300.0,
    900.0,
    3600.0,
    14400.0,
    43200.0,
    86400.0,
    259200.0,
    604800.0,
    math.inf,
)
"""Upper bounds (seconds) of the age histogram: <= 5m, 15m, 1h, 4h, 12h, 1d, 3d, 7d, +Inf."""

MAX_MESSAGE_BYTES = 1 << 40
"""Sizes above 1 TiB are implausible for one message: such a header is an unparsed line."""

DEFERRAL_REASONS: tuple[str, ...] = (
    "connection_refused",
    "timed_out",
    "greylisted",
    "blocklisted",
    "mailbox_full",
    "user_unknown",
    "other",
)
"""The classes of :func:`deferral_reason`, in the order of ``QueueSummary.deferral_reasons``."""

Flavour = Literal["exim", "postfix", "unknown"]
_Kind = Literal["exim", "postfix", "json"]
_HourRow = tuple[int, bool, int]  # (bucket, every arrival before now, hour start)


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """One queued message.

    ``sender`` has no angle brackets; a bounce (null sender) is ``"<>"`` on both flavours, and
    ``""`` means the listing did not show a sender. ``recipients`` are the pending ones only.
    ``age_seconds`` is the best estimate of the age: exact on Postfix, the middle of the
    token's range on Exim (``5m`` is 300-359 s, so 330). ``age_min_seconds`` is the age the
    listing proves (Exim ``5m``: 300), None when the age is exact; see :attr:`proven_age_seconds`.
    """

    id: str
    age_seconds: float
    size_bytes: int
    sender: str
    recipients: tuple[str, ...]
    frozen: bool
    held: bool
    age_min_seconds: float | None = None

    @property
    def proven_age_seconds(self) -> float:
        """The least age the message can have: what a deletion's ``older_than`` compares."""
        return self.age_seconds if self.age_min_seconds is None else self.age_min_seconds


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """Counts over a whole listing; ``age_buckets`` holds one NON-cumulative count per bound."""

    messages: int
    frozen: int
    bounces: int
    held: int
    bytes: int
    oldest_age_seconds: float | None
    age_buckets: tuple[int, ...]
    age_sum_seconds: float
    unparsed_lines: int
    flavour: Flavour
    deferral_reasons: tuple[int, ...] = ()
    """Messages with at least one recipient deferred for each class of
    :data:`DEFERRAL_REASONS`, in that order; empty when the listing shows no reasons (Exim)."""

    def cumulative_buckets(self) -> tuple[int, ...]:
        """Counts of messages with age <= each bound of :data:`AGE_BUCKETS` (Prometheus style)."""
        return tuple(itertools.accumulate(self.age_buckets))


# --------------------------------------------------------------------------------------------
# Tokens

_AGE_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_UNIT = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_AGE_TOKEN = re.compile(r"\s*([0-9]+)\s*([smhd])\s*")
_SIZE_TOKEN = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMG]?)B?\s*")


def _age_token_range(token: str) -> tuple[float, float] | None:
    """The ages ``[low, high)`` in seconds that an Exim age token stands for, or None.

    ``exim -bp`` prints whole minutes up to 90 (floored: ``5m`` is 300-359 s), then
    hours rounded from minutes (``(minutes + 30) / 60``) up to 72, then days rounded from
    hours (``(hours + 12) / 24``). ``Ns`` (not printed by Exim, accepted from objects) is exact.
    A token Exim never prints (``1h``, ``2d``) stands for its rounding interval alone.
    """
    m = _AGE_TOKEN.fullmatch(token)
    if m is None:
        return None
    n, unit = int(m.group(1)), m.group(2)
    if unit == "s":
        return float(n), float(n)
    if unit == "m":
        return 60.0 * n, 60.0 * n + 60.0
    if unit == "h":
        low_minute, high_minute = 60 * n - 30, 60 * n + 30
        if n >= 2:
            low_minute = max(low_minute, 91)  # up to 90 minutes Exim prints minutes
    else:
        low_hour, high_hour = 24 * n - 12, 24 * n + 12
        if n >= 3:
            low_hour = max(low_hour, 73)  # up to 72 hours Exim prints hours
        low_minute, high_minute = 60 * low_hour - 30, 60 * high_hour - 30
    return 60.0 * max(0, low_minute), 60.0 * max(0, high_minute)


@functools.lru_cache(maxsize=4096)
def _age_token_values(token: str) -> tuple[float, float] | None:
    """(representative age, lowest age) of an Exim age token, or None when it is not one.

    The representative age is the middle of the token's range: buckets, sums and the oldest
    age are as close to the real ages as the listing allows. The lowest age is what the
    listing proves: ``older_than`` selections use it (see docs/metrics.md).
    """
    bounds = _age_token_range(token)
    if bounds is None:
        return None
    low, high = bounds
    return (low + high) / 2, low


def _size_token_bytes(token: str) -> int | None:
    """Bytes of an Exim size token (``2.1K`` = round(2.1 * 1024)), or None when it is not one."""
    m = _SIZE_TOKEN.fullmatch(token)
    if m is None:
        return None
    number, unit = m.group(1), m.group(2)
    if not unit:
        return int(float(number)) if "." in number else int(number)
    return round(float(number) * _SIZE_UNIT[unit])


class _SizeTable(dict[str, int]):
    """Exim size token -> bytes, filled on first sight, so each token is converted once.

    One table serves every call: Exim prints at most ~12,000 different size tokens, so it stays
    small, and a poll does not pay for converting them again. ``limit`` bounds it for odd input.
    """

    limit = 20_000

    def __missing__(self, token: str) -> int:
        value = _size_token_bytes(token) if _EXIM_SIZE.fullmatch(token) else None
        if value is None or value > MAX_MESSAGE_BYTES:
            raise KeyError(token)
        if len(self) < self.limit:
            self[token] = value
        return value


_EXIM_SIZES = _SizeTable()


def _bucket_index(age: float) -> int:
    return bisect.bisect_left(AGE_BUCKETS, age)


# Deferral reasons, tried in this order (the first that matches wins; case is ignored). A
# greylisting reply often carries a policy status code (4.7.1), so greylisting comes first.
_REASON_PATTERNS: tuple[tuple[int, re.Pattern[str]], ...] = tuple(
    (DEFERRAL_REASONS.index(name), re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        ("greylisted", r"gr[ae]y-?list|postgrey|greylisted"),
        (
            "blocklisted",
            r"block-?list|black-?list|\bblocked\b|\b(?:dns)?[rd]bl\b|spamhaus|spamcop|barracuda"
            r"|\bsorbs\b|listed (?:at|in|on|by)\b|polic(?:y|ies)\b|reputation"
            r"|\b[45]\.7\.[0-9]{1,3}\b|access denied|relay(?:ing)? (?:access )?denied|\bspam\b",
        ),
        (
            "mailbox_full",
            r"mailbox (?:is )?full|over ?quota|quota (?:exceeded|full)|exceeds? (?:its |the )?quota"
            r"|insufficient (?:user )?(?:storage|quota)|mailbox size limit|\b[45]\.2\.2\b",
        ),
        (
            "user_unknown",
            r"user(?:name)? unknown|unknown (?:user|recipient|mailbox)"
            r"|no such (?:user|mailbox|recipient)"
            r"|recipient (?:address )?unknown|(?:user|mailbox|address) (?:does not|doesn't) exist"
            r"|invalid recipient|\b[45]\.1\.[1-6]\b",
        ),
        ("connection_refused", r"connection refused"),
        ("timed_out", r"timed out|time-?out"),
    )
)
_OTHER_REASON = DEFERRAL_REASONS.index("other")
_NO_REASON = "reason unavailable"  # Postfix: this recipient has no reason (being delivered)


def deferral_reason(text: str) -> str | None:
    """The class of a deferral reason text (one of :data:`DEFERRAL_REASONS`).

    None for Postfix's ``reason unavailable`` (a recipient being delivered, no reason yet).
    """
    index = _REASONS[text]
    return None if index is None else DEFERRAL_REASONS[index]


class _ReasonTable(dict[str | None, int | None]):
    """Reason text -> class index (None: no reason), classified on first sight, bounded."""

    limit = 20_000

    def __missing__(self, text: str | None) -> int | None:
        index = _classify_reason(text)
        if len(self) < self.limit:
            self[text] = index
        return index


def _classify_reason(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if text == _NO_REASON:
        return None
    for index, pattern in _REASON_PATTERNS:
        if pattern.search(text):
            return index
    return _OTHER_REASON


_REASONS = _ReasonTable()


def _reason_mask(texts: Iterable[str | None]) -> int:
    """A bit per class of the given reason texts."""
    mask = 0
    for text in texts:
        index = _REASONS[text]
        if index is not None:
            mask |= 1 << index
    return mask


_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    """``text`` with lone surrogates (from JSON escapes) replaced by U+FFFD: valid UTF-8."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


# --------------------------------------------------------------------------------------------
# The accumulator behind summarize


class _Acc:
    """Running totals of one summarize call: O(distinct tokens) memory, never O(messages)."""

    __slots__ = (
        "age_sum",
        "age_tokens",
        "arrival_bounds",
        "arrival_count",
        "arrival_min",
        "arrival_sum",
        "bounces",
        "buckets",
        "bytes",
        "flavour",
        "frozen",
        "held",
        "hour_rows",
        "hour_starts",
        "in_message",
        "messages",
        "now",
        "oldest",
        "pending_reasons",
        "reasons",
        "seen_message",
        "sizes",
        "unparsed",
    )

    def __init__(self, now: float = 0.0) -> None:
        self.messages = 0
        self.frozen = 0
        self.bounces = 0
        self.held = 0
        self.bytes = 0
        self.buckets = [0] * len(AGE_BUCKETS)
        self.age_sum = 0.0
        self.oldest: float | None = None
        self.unparsed = 0
        self.flavour: Flavour = "unknown"
        self.seen_message = False
        # Exim age tokens are tallied as tokens and converted once at the end.
        self.age_tokens: Counter[str] = Counter()
        self.sizes = _EXIM_SIZES
        # Postfix arrival times (whole epoch seconds) are tallied as exact integers against
        # bounds in arrival terms (arrival >= now - bound), so both reading paths agree.
        self.now = now
        self.arrival_bounds = [now - bound for bound in reversed(AGE_BUCKETS[:-1])]
        self.arrival_count = 0  # arrivals not after now
        self.arrival_sum = 0  # their sum
        self.arrival_min: int | None = None
        self.hour_starts: dict[str, int | None] = {}
        # The C reading's hour keys (see _postfix_hour_row).
        self.hour_rows: dict[int, _HourRow | None] = {}
        # Deferral reasons: messages per class, and the classes of the message being read.
        self.reasons = [0] * len(DEFERRAL_REASONS)
        self.pending_reasons = 0
        self.in_message = False

    def add_arrival(self, arrival: int) -> None:
        """One Postfix arrival (the line-by-line path; the fast path does a slice at once)."""
        self.buckets[-1 - bisect.bisect_right(self.arrival_bounds, arrival)] += 1
        if arrival <= self.now:
            self.arrival_count += 1
            self.arrival_sum += arrival
        if self.arrival_min is None or arrival < self.arrival_min:
            self.arrival_min = arrival

    def add_arrivals(self, arrivals: list[int]) -> None:
        """Many Postfix arrivals at once (sorted in place)."""
        arrivals.sort()
        previous = 0
        count = len(arrivals)
        for index, bound in enumerate(self.arrival_bounds):
            below = bisect.bisect_left(arrivals, bound)
            self.buckets[-1 - index] += below - previous
            previous = below
        self.buckets[0] += count - previous
        past = bisect.bisect_right(arrivals, self.now)
        self.arrival_count += past
        self.arrival_sum += sum(arrivals) if past == count else sum(arrivals[:past])
        if self.arrival_min is None or arrivals[0] < self.arrival_min:
            self.arrival_min = arrivals[0]

    def flush_reasons(self) -> None:
        """Count the classes of the message just read."""
        mask = self.pending_reasons
        if mask:
            for index in range(len(self.reasons)):
                if mask >> index & 1:
                    self.reasons[index] += 1
            self.pending_reasons = 0

    def add_age(self, age: float, count: int = 1) -> None:
        self.buckets[_bucket_index(age)] += count
        self.age_sum += age * count
        if self.oldest is None or age > self.oldest:
            self.oldest = age

    def result(self) -> QueueSummary:
        for token, count in self.age_tokens.items():
            values = _age_token_values(token)
            self.add_age(values[0] if values is not None else 0.0, count)
        self.age_tokens.clear()
        if self.arrival_min is not None:
            self.age_sum += self.arrival_count * self.now - self.arrival_sum
            oldest = max(0.0, self.now - self.arrival_min)
            if self.oldest is None or oldest > self.oldest:
                self.oldest = oldest
        self.flush_reasons()
        return QueueSummary(
            messages=self.messages,
            frozen=self.frozen,
            bounces=self.bounces,
            held=self.held,
            bytes=self.bytes,
            oldest_age_seconds=self.oldest if self.messages else None,
            age_buckets=tuple(self.buckets),
            age_sum_seconds=self.age_sum,
            unparsed_lines=self.unparsed,
            flavour=self.flavour,
            deferral_reasons=tuple(self.reasons) if self.flavour == "postfix" else (),
        )


# --------------------------------------------------------------------------------------------
# Exim

# Exim ids: 6-6-2 base-62 (16 characters, up to Exim 4.96) or 6-11-4 (23, Exim 4.97 and later).
_EXIM_ID = r"[0-9A-Za-z]{6}-(?:[0-9A-Za-z]{6}-[0-9A-Za-z]{2}|[0-9A-Za-z]{11}-[0-9A-Za-z]{4})"
_EXIM_SIZE = re.compile(r" *[0-9]+(?:\.[0-9]+)?[KMG]?")
_EXIM_HEADER = re.compile(
    r" {0,3}(?P<age>[0-9]+[smhd]) +(?:(?P<size>[0-9]+(?:\.[0-9]+)?[KMG]?) +)?"
    r"(?P<id>" + _EXIM_ID + r")"
    r"(?: <(?P<sender>.*)>(?: \((?P<login>[^()]*)\))?)?"
    r"(?P<frozen> \*\*\* frozen \*\*\*)? *"
)
# The fast path reads a slice with one re.split. Each match is: the indented lines that close the
# previous message, a blank line, then a header up to the ">" that closes its sender, or, for a
# null sender, up to its "<". So the gaps re.split leaves between matches are "", ">" (a bounce),
# " *** frozen ***" or "> *** frozen ***", and the last gap is the last message's tail. The
# pattern tries the same choices in the same order as _EXIM_HEADER over a subset of its grammar
# (an indented line of 4+ spaces can never be a header), and a size field that _EXIM_SIZE rejects
# sends the slice to the line-by-line path; so when every gap checks out, every line of the slice
# was read, and exactly as the line-by-line path reads it. Groups: age and size as Exim pads them
# ("%2d%c", "%5s"; each padded token is as distinct as the bare one).
_EXIM_FAST = re.compile(
    r"(?:\n    [^\n]*)*+"
    r"\n\n([ 0-9][0-9][smhd]|[0-9]{3}d) (.{5}) " + _EXIM_ID + r" <(?:[^>\n][^\n]*>|(?=>))"
)
_EXIM_FAST_GROUPS = 3  # gap + 2 groups per match in re.split's output
_EXIM_FAST_TAIL = re.compile(r"(>)?( \*\*\* frozen \*\*\*)?(?:\n    [^\n]*)*")
# An indented line belongs to the message above (Exim indents recipients by 8 or 10 spaces,
# exiqgrep by a tab), unless it starts like a header (" 5m ") without being one: that is junk,
# such as a header whose id is not an Exim id, and not a recipient.
_EXIM_HEADERISH = re.compile(r" {1,3}[0-9]+[smhd] ")
_FROZEN_MARK = " *** frozen ***"
_BOUNCE_FROZEN_MARK = ">" + _FROZEN_MARK

_SLICE_CHARS = 1 << 15  # ~32 KiB: small enough to stay in cache, large enough to amortise
_MIN_SLICE_CHARS = 1 << 12
# The C readers take regions in place (no copy): ~256 KiB, or 1/16 of a smaller listing (so
# that their tables stay a small share of it). A region they do not take (a line off the
# canonical shape) is read again by the Python paths, in slices.
_SCAN_REGION_CHARS = 1 << 18
_MIN_SCAN_REGION_CHARS = 1 << 13


def _slice_bounds(text: str, start: int, end: int, size: int) -> Iterator[tuple[int, int]]:
    """Bounds ``(lo, hi)`` of slices of about ``size`` characters of ``text[start:end]``.

    Slices are cut at whole lines, at a blank line where there is one, and keep the blank
    line before them, which anchors the fast patterns; trailing newlines are left out.
    """
    pos = start
    while pos < end:
        if end - pos <= 2 * size:
            cut = nxt = end
        else:
            cut = text.find("\n\n", pos + size, pos + 2 * size)
            if cut >= 0:
                nxt = cut + 2
            else:
                cut = text.find("\n", pos + size, end)
                if cut < 0:
                    cut = end
                nxt = cut + 1
        while cut > pos and text[cut - 1] == "\n":
            cut -= 1
        # Keep the blank line before the slice when there is one: it anchors the fast pattern.
        lead = pos - 2 if pos >= 2 and text.startswith("\n\n", pos - 2) else pos
        if cut > pos:
            yield lead, cut
        pos = nxt


def _python_slice_size(chars: int) -> int:
    # Slices of ~32 KiB stay in cache; a small listing gets smaller ones so that the transient
    # copies stay a small share of it.
    return max(_MIN_SLICE_CHARS, min(_SLICE_CHARS, chars // 128))


def _summarize_slices(
    text: str,
    start: int,
    read: Callable[[str], None],
    scan: Callable[[str, int, int], bool] | None = None,
    region_chars: int | None = None,
) -> None:
    """Read ``text[start:]``: regions by ``scan`` (the C reading) when it is given and takes
    them, and bounded slices by ``read`` (the Python paths) otherwise.

    ``scan(text, lo, hi)`` reads ``text[lo:hi]`` in place and returns False, having tallied
    nothing, when it does not take that region; its slices then go to ``read``. Regions are
    of ``region_chars`` (default :data:`_SCAN_REGION_CHARS`), or 1/16 of a smaller listing.
    """
    end = len(text)
    if scan is None:
        for lo, hi in _slice_bounds(text, start, end, _python_slice_size(end - start)):
            read(text[lo:hi])
        return
    largest = region_chars or _SCAN_REGION_CHARS
    region = min(largest, max(_MIN_SCAN_REGION_CHARS, (end - start) // 16))
    for region_lo, region_hi in _slice_bounds(text, start, end, region):
        if scan(text, region_lo, region_hi):
            continue
        size = _python_slice_size(region_hi - region_lo)
        for lo, hi in _slice_bounds(text, region_lo, region_hi, size):
            read(text[lo:hi])


def _exim_scan_region(text: str, lo: int, hi: int, acc: _Acc) -> bool:
    """Tally ``text[lo:hi]`` by the C reading; False (nothing tallied) when it does not take it."""
    if _eximscan is None:
        return False
    found = _eximscan.scan(text, lo, hi)
    if found is None:
        return False
    messages, frozen, bounces, ages, sizes = found
    try:
        size_total = sum(map(operator.mul, map(_EXIM_SIZES.__getitem__, sizes), sizes.values()))
    except KeyError:  # a size field like "1.2.3": the Python paths decide what it is
        return False
    acc.messages += messages
    acc.frozen += frozen
    acc.bounces += bounces
    acc.bytes += size_total
    acc.age_tokens.update(ages)
    acc.seen_message = True
    return True


def _exim_summarize_slice(chunk: str, acc: _Acc) -> None:
    """Summarize one slice of whole lines, by the fast path when it holds only canonical text."""
    if "\r" in chunk:
        if "\r\r" in chunk:  # the line path strips one "\r" a line: let it decide
            _exim_summarize_lines(chunk.split("\n"), acc)
            return
        chunk = chunk.replace("\r\n", "\n")
    # Blank lines mean nothing in this grammar: adding one in front gives the fast pattern its
    # anchor (slices arrive without trailing ones, which would only lengthen the last gap).
    text = chunk if chunk.startswith("\n\n") else "\n\n" + chunk
    if _exim_fast_slice(text, acc):
        return
    _exim_summarize_lines(text.split("\n"), acc)


def _exim_fast_slice(text: str, acc: _Acc) -> bool:
    """Tally a slice of canonical Exim text, or return False (nothing tallied) when it is not."""
    step = _EXIM_FAST_GROUPS
    parts = _EXIM_FAST.split(text)
    matched = len(parts) // step
    if not matched or parts[0]:
        return False
    gaps = parts[step:-1:step]
    frozen = gaps.count(_FROZEN_MARK)
    bounces = gaps.count(">")
    frozen_bounces = gaps.count(_BOUNCE_FROZEN_MARK)
    expected = frozen * len(_FROZEN_MARK) + bounces + frozen_bounces * len(_BOUNCE_FROZEN_MARK)
    if len("".join(gaps)) != expected:
        return False
    tail = _EXIM_FAST_TAIL.fullmatch(parts[-1])
    if tail is None:
        return False
    try:
        size_total = sum(map(acc.sizes.__getitem__, parts[2::step]))
    except KeyError:  # a size field like "1.2.3": the line-by-line path decides what it is
        return False
    acc.messages += matched
    acc.bytes += size_total
    acc.frozen += frozen + frozen_bounces + (tail.group(2) is not None)
    acc.bounces += bounces + frozen_bounces + (tail.group(1) is not None)
    acc.age_tokens.update(parts[1::step])
    acc.seen_message = True
    return True


def _exim_summarize_lines(lines: Iterable[str], acc: _Acc) -> None:
    """The line-by-line reading of Exim text (the reference the fast path must agree with)."""
    header = _EXIM_HEADER.fullmatch
    for line in lines:
        if line.endswith("\r"):
            line = line[:-1]
        first = line[:1]
        if not first:
            continue
        m = header(line) if first in " 0123456789" else None
        if m is not None:
            _exim_tally(m, acc)
            continue
        if not line.strip():
            continue
        if first in " \t" and acc.seen_message and not _EXIM_HEADERISH.match(line):
            continue
        acc.unparsed += 1


def _exim_size(m: re.Match[str]) -> int | None:
    """Bytes of a header's size field (0 when blank), None when above MAX_MESSAGE_BYTES."""
    token = m.group("size")
    if token is None:
        return 0
    try:
        return _EXIM_SIZES[token]
    except KeyError:
        return None


def _exim_tally(m: re.Match[str], acc: _Acc) -> None:
    size = _exim_size(m)
    if size is None:  # implausible: the header is junk (its indented lines go with it)
        acc.unparsed += 1
        acc.seen_message = True
        return
    acc.messages += 1
    acc.seen_message = True
    acc.age_tokens[m.group("age")] += 1
    acc.bytes += size
    if m.group("sender") == "":
        acc.bounces += 1
    if m.group("frozen") is not None:
        acc.frozen += 1


def _exim_message(m: re.Match[str]) -> tuple[str, float, float, int, str, bool] | None:
    size = _exim_size(m)
    if size is None:
        return None
    age, low = _age_token_values(m.group("age")) or (0.0, 0.0)
    sender = m.group("sender")
    if sender is None:
        sender = ""
    elif sender == "":
        sender = "<>"
    return m.group("id"), age, low, size, _clean(sender), m.group("frozen") is not None


def _exim_iter_lines(lines: Iterable[str], state: _IterState) -> Iterator[QueueMessage]:
    header = _EXIM_HEADER.fullmatch
    current: tuple[str, float, float, int, str, bool] | None = None
    recipients: list[str] = []
    for line in lines:
        if line.endswith("\r"):
            line = line[:-1]
        first = line[:1]
        if not first:
            continue
        m = header(line) if first in " 0123456789" else None
        if m is not None:
            if current is not None:
                yield _exim_build(current, recipients)
            current = _exim_message(m)
            recipients = []
            if current is None:  # an implausible size: the header is junk, and so its lines
                state.unparsed += 1
            state.seen_message = True
            continue
        stripped = line.strip()
        if not stripped:
            continue
        if first in " \t" and state.seen_message and not _EXIM_HEADERISH.match(line):
            if current is None or stripped.startswith(("D ", "+D ", "***")):
                continue
            recipients.append(_clean(stripped))
            continue
        state.unparsed += 1
    if current is not None:
        yield _exim_build(current, recipients)


def _exim_build(
    head: tuple[str, float, float, int, str, bool], recipients: list[str]
) -> QueueMessage:
    msg_id, age, low, size, sender, frozen = head
    return QueueMessage(msg_id, age, size, sender, tuple(recipients), frozen, False, low)


# --------------------------------------------------------------------------------------------
# Postfix (mailq / postqueue -p)

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
_POSTFIX_HEADER = re.compile(
    r"(?P<id>[0-9A-Za-z]{5,32})(?P<flags>[*!#]*) +(?P<size>[0-9]+) +"
    r"(?P<wday>Mon|Tue|Wed|Thu|Fri|Sat|Sun) "
    r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" +(?P<day>[0-9]{1,2}) (?P<hh>[0-9]{2}):(?P<mm>[0-9]{2}):(?P<ss>[0-9]{2})"
    r"(?: +(?P<sender>\S(?:.*\S)?))? *"
)
_POSTFIX_TITLE = re.compile(r"-+Queue ID-+ .*")
_POSTFIX_FOOTER = re.compile(r"-- [0-9]+ Kbytes in [0-9]+ Requests?\.\s*")
_POSTFIX_EMPTY = "Mail queue is empty"
_NULL_SENDERS = frozenset({"", "<>", "MAILER-DAEMON"})


_WEEKDAYS = {
    name: number for number, name in enumerate(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))
}
# The weekdays of a date repeat every 28 years between 1901 and 2099 (Feb 29 included).
_WEEKDAY_CYCLE = 28
# Postfix and our clock may disagree a little: an arrival up to this far after now is
# taken as now (age 0), not as a year ago.
_CLOCK_SLACK = 86400


@functools.lru_cache(maxsize=4096)
def _day_start(year: int, month: int, day: int) -> int | None:
    """Epoch seconds of 00:00 UTC of that date, or None when the date does not exist."""
    try:
        return (datetime.date(year, month, day).toordinal() - 719163) * 86400
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def _zone_offset(zone: datetime.tzinfo, year: int, month: int, day: int, hour: int) -> int:
    """Seconds ``zone`` is ahead of UTC at that local date and hour (DST included)."""
    offset = zone.utcoffset(datetime.datetime(year, month, day, hour))
    return int(offset.total_seconds()) if offset is not None else 0


@functools.lru_cache(maxsize=4096)
def _years_on_weekday(weekday: int, month: int, day: int, newest: int) -> tuple[int, ...]:
    """The years from ``newest`` back one weekday cycle in which that date is that weekday."""
    years = []
    for year in range(newest, newest - _WEEKDAY_CYCLE - 1, -1):
        try:
            if datetime.date(year, month, day).weekday() == weekday:
                years.append(year)
        except ValueError:
            continue  # Feb 29 of a common year
    return tuple(years)


def _hour_start(
    year: int, month: int, day: int, hour: int, zone: datetime.tzinfo | None
) -> int | None:
    start = _day_start(year, month, day)
    if start is None:
        return None
    if zone is not None:
        start -= _zone_offset(zone, year, month, day, hour)
    return start + hour * 3600


def _postfix_hour_epoch(
    wday: str, mon: str, day: int, hour: int, now: float, zone: datetime.tzinfo | None
) -> int | None:
    """Epoch of the start of a Postfix arrival hour (local to ``zone``; None is UTC).

    mailq prints no year. The year is the latest one, not after now (but for
    :data:`_CLOCK_SLACK`), in which that date falls on the printed weekday, looking back one
    weekday cycle (28 years). When no year matches (a stamp no clock prints) it is the
    latest year not after now. The comparison uses the hour's start, so that every message
    of an hour gets the same year whichever path reads it.
    """
    month = _MONTHS[mon]
    newest = time.gmtime(now).tm_year + 1
    limit = now + _CLOCK_SLACK
    for year in _years_on_weekday(_WEEKDAYS[wday], month, day, newest):
        start = _hour_start(year, month, day, hour, zone)
        if start is not None and start <= limit:
            return start
    for year in range(newest, newest - 9, -1):
        start = _hour_start(year, month, day, hour, zone)
        if start is not None and start <= limit:
            return start
    return None


def _postfix_arrival(m: re.Match[str], now: float, zone: datetime.tzinfo | None) -> int | None:
    """Arrival epoch of a Postfix header (see :func:`_postfix_hour_epoch`), None when unreadable."""
    hh, mm, ss = int(m.group("hh")), int(m.group("mm")), int(m.group("ss"))
    if hh > 23 or mm > 59 or ss > 60:
        return None
    start = _postfix_hour_epoch(m.group("wday"), m.group("mon"), int(m.group("day")), hh, now, zone)
    return None if start is None else start + mm * 60 + ss


def _postfix_hour_key(key: str, now: float, zone: datetime.tzinfo | None) -> int | None:
    """The hour start of a fast-path key like ``Wed Nov 25 06`` (as the header regex reads it)."""
    hour = int(key[11:13])
    if hour > 23 or key[:3] not in _WEEKDAYS or key[4:7] not in _MONTHS:
        return None
    return _postfix_hour_epoch(key[:3], key[4:7], int(key[8:10]), hour, now, zone)


def _postfix_head(m: re.Match[str], now: float, zone: datetime.tzinfo | None) -> int | None:
    """Arrival epoch of a header that stands for a message; None when it is junk."""
    if int(m.group("size")) > MAX_MESSAGE_BYTES:
        return None
    return _postfix_arrival(m, now, zone)


def _postfix_reason(stripped: str) -> str | None:
    """The text of a ``(reason)`` line (already stripped), or None when it is not one."""
    if stripped.startswith("(") and stripped.endswith(")"):
        return stripped[1:-1]
    return None


def _postfix_kind(line: str) -> int:
    """0: nothing to count; 1: an unparsed line unless indented after a message."""
    if _POSTFIX_TITLE.fullmatch(line) or _POSTFIX_FOOTER.fullmatch(line):
        return 0
    if line.strip() == _POSTFIX_EMPTY:
        return 0
    return 1


# The fast path reads a slice with one re.split, like Exim's, but its pattern matches only a
# blank line, a canonical header and an optional "(reason)" line right after it: a pattern
# that also walked the recipient lines would cost several times more. The rest is checked by
# counting: a newline followed by anything but a space may only be a blank line before a
# header the pattern read (or before the footer), or start a "(reason)" line (Postfix
# indents a reason so that it ends in column 78, and not at all when it is longer). That
# leaves exactly the text the line-by-line path reads as headers, reasons and recipients.
# Groups: the status flag, the size, the arrival's day and hour ("Wed Nov 25 06"), its minutes
# and seconds, the sender (without trailing spaces) and the first reason. Like the header
# regex, the sender starts and ends with a non-whitespace character and only spaces follow
# it; like str.strip, a reason line may have any whitespace around its parentheses.
_POSTFIX_FAST = re.compile(
    r"\n\n[0-9A-Za-z]{5,32}([*!]?)#? +([0-9]{1,12}) "
    r"([A-Z][a-z][a-z] [A-Z][a-z][a-z] [ 123][0-9] [012][0-9]):([0-5][0-9]:[0-6][0-9]) +"
    r"(\S(?:[^\n]*\S)?) *(?![^\n])(?:\n[^\S\n]*\(([^\n]*)\)[^\S\n]*$)?",
    re.MULTILINE,
)
_POSTFIX_FAST_GROUPS = 7  # gap + 6 groups per match in re.split's output
_POSTFIX_FOOTER_TAIL = re.compile(r"\n\n-- [0-9]+ Kbytes in [0-9]+ Requests?\.\Z")
_NEWLINE_NOT_SPACE = re.compile(r"\n[^ ]")  # "\n\n" counts once
# Both start with a newline, a literal the regex engine scans for quickly ("^" in MULTILINE
# mode is tried at every character: twice the cost on listings with many reasons).
_POSTFIX_REASON_LINE = re.compile(r"\n[^\S\n]*\(([^\n]*)\)[^\S\n]*(?![^\n])")
_POSTFIX_LONG_REASON_LINE = re.compile(r"\n\([^\n]*\) *(?![^\n])")
_MMSS = {f"{mm:02d}:{ss:02d}": mm * 60 + ss for mm in range(60) for ss in range(61)}


# The C reading (brainycp/_pfscan.c) names an arrival hour by an int key, and gives the
# mm:ss (as mm * 60 + ss) of each message of that hour; see _postfix_scan_region.
_WEEKDAY_NAMES = tuple(_WEEKDAYS)
_MONTH_NAMES = tuple(_MONTHS)
_HOUR_LAST_SECOND = 59 * 60 + 60  # the latest mm:ss a header may show (a leap second)
_STRADDLING = len(AGE_BUCKETS)  # the "bucket" of an hour whose arrivals are tallied one by one
_BIG_ENDIAN = sys.byteorder == "big"
# Postfix regions are larger than Exim's: each costs the Python side one pass over its
# distinct hours and reasons, which a larger region shares among more messages.
_POSTFIX_SCAN_REGION_CHARS = 1 << 22


def _postfix_hour_row(key: int, acc: _Acc, zone: datetime.tzinfo | None) -> _HourRow | None:
    """(bucket, before now, start) of a C hour key: the bucket every arrival of that hour
    falls in and whether all of them are before now, or _STRADDLING and False when they
    may differ; None when the date does not exist (the line-by-line path decides)."""
    rest, hour = divmod(key, 24)
    rest, day = divmod(rest, 100)
    wday, mon = divmod(rest, 12)
    start = _postfix_hour_epoch(_WEEKDAY_NAMES[wday], _MONTH_NAMES[mon], day, hour, acc.now, zone)
    if start is None:
        return None
    first = bisect.bisect_right(acc.arrival_bounds, start)
    last = bisect.bisect_right(acc.arrival_bounds, start + _HOUR_LAST_SECOND)
    past = start + _HOUR_LAST_SECOND <= acc.now
    if first != last or (not past and start <= acc.now):
        return _STRADDLING, False, start
    return len(acc.buckets) - 1 - first, past, start


def _uint16s(data: bytes) -> array[int]:
    """The little-endian uint16 values of a C hour buffer."""
    values = array("H", data)
    if _BIG_ENDIAN:
        values.byteswap()
    return values


def _postfix_scan_region(
    text: str, lo: int, hi: int, acc: _Acc, zone: datetime.tzinfo | None
) -> bool:
    """Tally ``text[lo:hi]`` by the C reading; False (nothing tallied) when it does not take it.

    The tallies are the line-by-line path's: an hour whose arrivals share a bucket and a side
    of now is added at once (count, sum of arrivals, earliest), any other arrival by
    add_arrivals; each message counts once per reason class it shows.
    """
    if _pfscan is None:
        return False
    found = _pfscan.scan(text, lo, hi)
    if found is None:
        return False
    messages, held, bounces, size_total, hours, single, multi, last = found
    table = acc.hour_rows
    if not table.keys() >= hours.keys():
        for key in hours.keys() - table.keys():
            table[key] = _postfix_hour_row(key, acc, zone)
    rows = list(map(table.__getitem__, hours))
    if None in rows:  # an impossible date: the Python paths decide, before anything is tallied
        return False
    buckets, pasts, starts = zip(*rows, strict=True)
    buffers = list(hours.values())
    sizes = list(map(len, buffers))  # two bytes per message
    counted = [0] * (len(acc.buckets) + 1)
    for bucket, size in zip(buckets, sizes, strict=True):
        counted[bucket] += size
    straddling = [
        start + value
        for bucket, start, values in zip(buckets, starts, buffers, strict=True)
        if bucket == _STRADDLING
        for value in _uint16s(values)
    ]
    lowest = acc.arrival_min
    if lowest is None or min(starts) < lowest:
        for start, values in zip(starts, buffers, strict=True):
            if lowest is None or start < lowest:
                earliest = start + min(_uint16s(values))
                if lowest is None or earliest < lowest:
                    lowest = earliest
    past_sizes = list(itertools.compress(sizes, pasts))
    for bucket, size in enumerate(counted[:-1]):
        acc.buckets[bucket] += size >> 1
    acc.arrival_count += sum(past_sizes) >> 1
    acc.arrival_sum += sum(map(operator.mul, itertools.compress(starts, pasts), past_sizes)) >> 1
    acc.arrival_sum += sum(_uint16s(b"".join(itertools.compress(buffers, pasts))))
    acc.arrival_min = lowest
    if straddling:
        acc.add_arrivals(straddling)
    acc.messages += messages
    acc.held += held
    acc.bounces += bounces
    acc.bytes += size_total
    acc.seen_message = True
    _postfix_scan_reasons(single, multi, last, acc)
    return True


def _postfix_scan_reasons(
    single: dict[str, int], multi: list[tuple[str, ...]], last: tuple[str, ...], acc: _Acc
) -> None:
    """Reason classes of a region the C reading took (see _postfix_fast_reasons)."""
    acc.flush_reasons()  # the region's first header ends the message the previous one left open
    counts = acc.reasons
    classify = _REASONS.__getitem__
    for index, count in zip(map(classify, single), single.values(), strict=True):
        if index is not None:
            counts[index] += count
    # A message counts once per class: tally the distinct sets of classes.
    for classes, count in Counter(
        map(frozenset, map(functools.partial(map, classify), multi))
    ).items():
        for index in classes:
            if index is not None:
                counts[index] += count
    acc.pending_reasons = _reason_mask(last)
    acc.in_message = True


def _postfix_summarize_slice(chunk: str, acc: _Acc, zone: datetime.tzinfo | None) -> None:
    """Summarize one slice of whole lines, by the fast path when it holds only canonical text."""
    # The fast path reads "\r\n" as "\n"; the line path strips one "\r" a line itself (a line
    # ending in "\r\r" keeps one), so it gets the slice as it is.
    text = chunk.replace("\r\n", "\n") if "\r" in chunk else chunk
    if text.startswith("-") and _POSTFIX_TITLE.match(text):
        newline = text.find("\n")
        text = "" if newline < 0 else text[newline + 1 :]  # the title line carries nothing
    if not text.startswith("\n\n"):
        text = "\n\n" + text.lstrip("\n")
    if _postfix_fast_slice(text, acc, zone):
        return
    _postfix_summarize_lines(chunk.split("\n"), acc, acc.now, zone)


def _postfix_fast_slice(text: str, acc: _Acc, zone: datetime.tzinfo | None) -> bool:
    """Tally a slice of canonical Postfix text, or return False (nothing tallied) when it is not."""
    step = _POSTFIX_FAST_GROUPS
    parts = _POSTFIX_FAST.split(text)
    matched = len(parts) // step
    if not matched or parts[0]:
        return False
    blanks = matched
    last = parts[-1]
    footer = _POSTFIX_FOOTER_TAIL.search(last)
    if footer is not None:
        blanks += 1
        last = last[: footer.start()]
    extra = len(_NEWLINE_NOT_SPACE.findall(text)) - blanks
    if extra and extra != len(_POSTFIX_LONG_REASON_LINE.findall(text)):
        return False  # a line at column 0 that is neither a header nor a "(reason)": junk
    hours = parts[3::step]
    starts = acc.hour_starts
    for key in set(hours).difference(starts):
        starts[key] = _postfix_hour_key(key, acc.now, zone)
    try:
        arrivals = list(
            map(
                operator.add, map(starts.__getitem__, hours), map(_MMSS.__getitem__, parts[4::step])
            )
        )
    except (TypeError, KeyError):  # an impossible date or time: the line path decides
        return False
    acc.messages += matched
    acc.seen_message = True
    acc.bytes += sum(map(int, parts[2::step]))
    acc.held += parts[1::step].count("!")
    senders = parts[5::step]
    acc.bounces += senders.count("MAILER-DAEMON") + senders.count("<>")
    acc.add_arrivals(arrivals)
    _postfix_fast_reasons(parts[6::step], parts[step::step], last, acc)
    return True


def _postfix_fast_reasons(firsts: list[str | None], rests: list[str], last: str, acc: _Acc) -> None:
    """Count each message once per reason class it shows: its first reason, and any reason
    line among the rest of its lines (rare). The last message may go on in the next slice (a
    list of lines is cut anywhere): its classes stay pending."""
    acc.flush_reasons()
    rests[-1] = last
    counts = acc.reasons
    reasons = _REASONS
    for reason, count in Counter(firsts).items():
        index = reasons[reason]
        if index is not None:
            counts[index] += count
    with_more = itertools.compress(
        zip(firsts, rests, strict=True), map(operator.contains, rests, itertools.repeat("("))
    )
    for first, rest in with_more:
        extra = _reason_mask(_POSTFIX_REASON_LINE.findall(rest)) & ~_reason_mask((first,))
        for index in range(len(counts)):
            counts[index] += extra >> index & 1
    pending = _reason_mask((firsts[-1], *_POSTFIX_REASON_LINE.findall(last)))
    for index in range(len(counts)):
        counts[index] -= pending >> index & 1
    acc.pending_reasons = pending
    acc.in_message = True


def _postfix_summarize_lines(
    lines: Iterable[str], acc: _Acc, now: float, zone: datetime.tzinfo | None
) -> None:
    """The line-by-line reading of Postfix text (the reference the fast path must agree with)."""
    header = _POSTFIX_HEADER.fullmatch
    for line in lines:
        if line.endswith("\r"):
            line = line[:-1]
        first = line[:1]
        if not first:
            continue
        if first not in " \t(":
            m = header(line)
            if m is not None:
                acc.flush_reasons()
                arrival = _postfix_head(m, now, zone)
                acc.in_message = arrival is not None
                acc.seen_message = True  # a junk header's lines go with it
                if arrival is None:
                    acc.unparsed += 1
                    continue
                acc.messages += 1
                acc.seen_message = True
                acc.bytes += int(m.group("size"))
                acc.add_arrival(arrival)
                if "!" in m.group("flags"):
                    acc.held += 1
                if (m.group("sender") or "") in _NULL_SENDERS:
                    acc.bounces += 1
                continue
        stripped = line.strip()
        if not stripped:
            continue
        if first in " \t(" and acc.seen_message:
            if acc.in_message:
                reason = _postfix_reason(stripped)
                if reason is not None:
                    index = _REASONS[reason]
                    if index is not None:
                        acc.pending_reasons |= 1 << index
                elif first == "(":
                    acc.unparsed += 1
            elif first == "(":
                acc.unparsed += 1
            continue
        if first in " \t":
            acc.unparsed += 1
            continue
        acc.unparsed += _postfix_kind(line)


def _postfix_iter_lines(
    lines: Iterable[str], state: _IterState, now: float, zone: datetime.tzinfo | None
) -> Iterator[QueueMessage]:
    header = _POSTFIX_HEADER.fullmatch
    current: tuple[str, float, int, str, bool] | None = None
    recipients: list[str] = []
    for line in lines:
        if line.endswith("\r"):
            line = line[:-1]
        first = line[:1]
        if not first:
            continue
        if first not in " \t(":
            m = header(line)
            if m is not None:
                if current is not None:
                    yield _postfix_build(current, recipients)
                current = None
                recipients = []
                arrival = _postfix_head(m, now, zone)
                state.seen_message = True  # a junk header's lines go with it
                if arrival is None:
                    state.unparsed += 1
                    continue
                sender = m.group("sender") or ""
                current = (
                    m.group("id"),
                    max(0.0, now - arrival),
                    int(m.group("size")),
                    "<>" if sender in _NULL_SENDERS else _clean(sender),
                    "!" in m.group("flags"),
                )
                state.seen_message = True
                continue
        stripped = line.strip()
        if not stripped:
            continue
        if first in " \t(" and state.seen_message:
            if current is not None:
                if _postfix_reason(stripped) is not None:
                    continue
                if first != "(":
                    recipients.append(_clean(stripped))
                    continue
            if first == "(":
                state.unparsed += 1
            continue
        if first in " \t":
            state.unparsed += 1
            continue
        state.unparsed += _postfix_kind(line)
    if current is not None:
        yield _postfix_build(current, recipients)


def _postfix_build(head: tuple[str, float, int, str, bool], recipients: list[str]) -> QueueMessage:
    msg_id, age, size, sender, held = head
    return QueueMessage(msg_id, age, size, sender, tuple(recipients), False, held)


# --------------------------------------------------------------------------------------------
# postqueue -j (JSON lines) and lists of objects

# A line of exactly postqueue's shape with no escapes: read without building a dict. Any other
# line goes through json.loads (it decides what is valid JSON), which gives the same values.
_PJ_ADDR = r'\{"address": "[^"\\]*"(?:, "delay_reason": "[^"\\]*")?\}'
_POSTQUEUE_J = re.compile(
    r'\{"queue_name": "(?P<queue>[^"\\]*)", "queue_id": "[^"\\]*", '
    r'"arrival_time": (?P<arrival>[0-9]{1,12}), "message_size": (?P<size>[0-9]{1,12}), '
    r'"forced_expire": (?:true|false), "sender": "(?P<sender>[^"\\]*)", '
    r'"recipients": \[(?:' + _PJ_ADDR + r"(?:, " + _PJ_ADDR + r")*)?\]\}\s*"
)
_PJ_REASON = re.compile(r'"delay_reason": "([^"\\]*)"')


def _add_reasons(acc: _Acc, mask: int) -> None:
    for index in range(len(acc.reasons)):
        acc.reasons[index] += mask >> index & 1


def _json_summarize_lines(lines: Iterable[str], acc: _Acc, now: float) -> None:
    fast = _POSTQUEUE_J.fullmatch
    for line in lines:
        if not line.strip():
            continue
        m = fast(line.lstrip())
        if m is not None:
            acc.messages += 1
            acc.seen_message = True
            acc.bytes += int(m.group("size"))
            acc.add_age(max(0.0, now - int(m.group("arrival"))))
            if m.group("queue") == "hold":
                acc.held += 1
            if _normal_sender(m.group("sender")) == "<>":
                acc.bounces += 1
            if '"delay_reason"' in line:
                _add_reasons(acc, _reason_mask(_PJ_REASON.findall(line)))
            continue
        _tally_object(_json_object(line), acc, now)


def _json_iter_lines(lines: Iterable[str], state: _IterState, now: float) -> Iterator[QueueMessage]:
    for line in lines:
        if not line.strip():
            continue
        obj = _json_object(line)
        msg = _object_message(obj, now) if obj is not None else None
        if msg is None:
            state.unparsed += 1
        else:
            yield msg


def _json_object(line: str) -> Mapping[str, Any] | None:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _normal_sender(value: str) -> str:
    """An object's sender without brackets; every spelling of the null sender becomes ``<>``."""
    sender = value.strip()
    if sender.startswith("<") and sender.endswith(">"):
        sender = sender[1:-1].strip()
    return "<>" if sender in _NULL_SENDERS else _clean(sender)


def _flag(value: Any) -> bool | None:
    """A boolean field as panels send it: bool, 0/1, or yes/no words; None when unreadable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("1", "true", "yes", "y", "on", "frozen", "hold", "held"):
            return True
        if word in ("", "0", "false", "no", "n", "off"):
            return False
    if value is None:
        return False
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) and value >= 0 else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) and number >= 0 else None
    return None


def _object_age(obj: Mapping[str, Any], now: float) -> tuple[float, float | None] | None:
    """(age, lowest age or None when exact) of a panel object, None when unreadable."""
    key = "age" if "age" in obj else "age_seconds"
    if key in obj:
        value = obj[key]
        number = _number(value)
        if number is not None:
            return number, None
        if isinstance(value, str):
            values = _age_token_values(value.strip())
            if values is None:
                return None
            return values if values[1] != values[0] else (values[0], None)
        return None
    if "arrival_time" in obj:
        arrival = _number(obj["arrival_time"])
        return None if arrival is None else (max(0.0, now - arrival), None)
    return 0.0, None


def _object_size(obj: Mapping[str, Any]) -> int | None:
    for key in ("size", "size_bytes", "message_size"):
        if key in obj:
            value = obj[key]
            number = _number(value)
            if number is None and isinstance(value, str):
                number = _size_token_bytes(value)
            if number is None or number > MAX_MESSAGE_BYTES:
                return None
            return int(number)
    return 0


def _object_recipients(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(_clean(part) for part in re.split(r"[\s,]+", value) if part)
    if not isinstance(value, list | tuple):
        return None
    out: list[str] = []
    for item in value:
        if isinstance(item, str):
            out.append(_clean(item.strip()))
        elif isinstance(item, dict) and isinstance(item.get("address"), str):
            out.append(_clean(item["address"]))
        else:
            return None
    return tuple(out)


def _object_reasons(obj: Mapping[str, Any]) -> int:
    """The reason classes of a ``postqueue -j`` object's recipients (``delay_reason``)."""
    recipients = obj.get("recipients")
    if not isinstance(recipients, list):
        return 0
    texts = [
        item["delay_reason"]
        for item in recipients
        if isinstance(item, dict) and isinstance(item.get("delay_reason"), str)
    ]
    return _reason_mask(texts) if texts else 0


def _object_values(
    obj: Mapping[str, Any], now: float
) -> tuple[str, tuple[float, float | None], int, str, bool, bool] | None:
    """(id, (age, lowest age), size, sender, frozen, held) of a panel object, or None."""
    known = (
        "id",
        "queue_id",
        "age",
        "age_seconds",
        "arrival_time",
        "size",
        "size_bytes",
        "message_size",
        "sender",
    )
    if not any(key in obj for key in known):
        return None
    raw_id = obj.get("id", obj.get("queue_id", ""))
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
        return None
    age = _object_age(obj, now)
    size = _object_size(obj)
    frozen = _flag(obj.get("frozen"))
    held = _flag(obj.get("held"))
    sender_value = obj.get("sender")
    if sender_value is None:
        sender = ""
    elif isinstance(sender_value, str):
        sender = _normal_sender(sender_value)
    else:
        return None
    if age is None or size is None or frozen is None or held is None:
        return None
    if _object_recipients(obj.get("recipients")) is None:
        return None
    return str(raw_id), age, size, sender, frozen, held or obj.get("queue_name") == "hold"


def _object_message(obj: Mapping[str, Any], now: float) -> QueueMessage | None:
    """A message from a panel object (generic keys or ``postqueue -j``), None when unreadable."""
    values = _object_values(obj, now)
    recipients = _object_recipients(obj.get("recipients"))
    if values is None or recipients is None:
        return None
    msg_id, (age, low), size, sender, frozen, held = values
    return QueueMessage(msg_id, age, size, sender, recipients, frozen, held, low)


def _tally_object(obj: Any, acc: _Acc, now: float) -> None:
    values = _object_values(obj, now) if isinstance(obj, dict) else None
    if values is None:
        acc.unparsed += 1
        return
    _, (age, _), size, sender, frozen, held = values
    acc.messages += 1
    acc.seen_message = True
    acc.bytes += size
    acc.add_age(age)
    acc.frozen += frozen
    acc.held += held
    acc.bounces += sender == "<>"
    _add_reasons(acc, _object_reasons(obj))


def _object_flavour(obj: Mapping[str, Any]) -> Flavour:
    if "queue_id" in obj or "queue_name" in obj or "arrival_time" in obj:
        return "postfix"
    raw_id = obj.get("id")
    if isinstance(raw_id, str):
        if re.fullmatch(_EXIM_ID, raw_id) and raw_id.count("-") == 2:
            return "exim"
        if re.fullmatch(r"[0-9A-Za-z]{8,20}", raw_id):
            return "postfix"
    if "frozen" in obj:
        return "exim"
    if "held" in obj:
        return "postfix"
    return "unknown"


# --------------------------------------------------------------------------------------------
# Detection and input shapes


def _detect_line(line: str) -> _Kind | None:
    if line.endswith("\r"):
        line = line[:-1]
    if _EXIM_HEADER.fullmatch(line):
        return "exim"
    if (
        _POSTFIX_HEADER.fullmatch(line)
        or _POSTFIX_TITLE.fullmatch(line)
        or line.strip() == _POSTFIX_EMPTY
    ):
        return "postfix"
    return None


_LEADING_SPACE = re.compile(r"\s*")


def _detect(text: str) -> tuple[_Kind | None, int, int]:
    """Find the first line that names the format: (kind, its offset, unparsed lines before)."""
    leading = _LEADING_SPACE.match(text)
    first = leading.end() if leading is not None else 0
    if text.startswith("{", first):
        return "json", first, 0
    pos = 0
    unparsed = 0
    end = len(text)
    while pos < end:
        nl = text.find("\n", pos)
        if nl < 0:
            nl = end
        line = text[pos:nl]
        kind = _detect_line(line)
        if kind is not None:
            return kind, pos, unparsed
        if line.strip():
            unparsed += 1
        pos = nl + 1
    return None, end, unparsed


class _IterState:
    __slots__ = ("seen_message", "unparsed")

    def __init__(self) -> None:
        self.seen_message = False
        self.unparsed = 0


_LINES_PER_CHUNK = 4096


def _text_chunks(detail: Any) -> tuple[Iterator[str], int] | None:
    """Text pieces (each a run of whole lines) of a str/bytes/list-of-lines detail.

    Returns None when ``detail`` is not text; the int counts list items that are not lines.
    """
    if isinstance(detail, str):
        return iter((detail,)), 0
    if isinstance(detail, bytes | bytearray):
        return iter((bytes(detail).decode("utf-8", "replace"),)), 0
    if isinstance(detail, list | tuple):
        items = detail
        junk = sum(1 for item in items if not isinstance(item, str))

        def pieces() -> Iterator[str]:
            for i in range(0, len(items), _LINES_PER_CHUNK):
                batch = items[i : i + _LINES_PER_CHUNK]
                yield "\n".join(item for item in batch if isinstance(item, str))

        return pieces(), junk
    return None


def _is_object_list(detail: Any) -> bool:
    if isinstance(detail, dict):
        return True
    if not isinstance(detail, list | tuple):
        return False
    for item in detail:
        if isinstance(item, dict):
            return True
        if isinstance(item, str):
            return False
    return False


def _objects(detail: Any) -> list[Any]:
    return [detail] if isinstance(detail, dict) else list(detail)


def summarize(
    detail: Any, now: float | None = None, *, zone: datetime.tzinfo | None = None
) -> QueueSummary:
    """Summarize a queue listing without building a record per message.

    ``detail`` is a string (console output, or ``postqueue -j`` JSON lines when its first
    non-blank character is ``{``), a list of lines, or a list of objects (keys ``id``, ``age``
    (seconds or ``3h``), ``size`` (bytes or ``2.1K``), ``sender``, ``recipients``, ``frozen``,
    ``held``, or ``postqueue -j``'s ``queue_id``, ``arrival_time``, ``message_size``,
    ``queue_name``). Postfix ``mailq`` arrival times have no year and no zone: they are read
    as local times in ``zone`` (the panel's clock; None is UTC), in the latest year that does
    not put them more than a day after ``now`` (default: the current time); ages are never
    negative. Garbage gives an ``unknown`` summary, never an exception.
    """
    clock = time.time() if now is None else float(now)
    acc = _Acc(clock)
    if detail is None:
        return acc.result()
    if _is_object_list(detail):
        flavour: Flavour = "unknown"
        for item in _objects(detail):
            before = acc.messages
            _tally_object(item, acc, clock)
            if flavour == "unknown" and acc.messages > before:
                flavour = _object_flavour(item)
        acc.flavour = flavour
        return acc.result()
    source = _text_chunks(detail)
    if source is None:
        acc.unparsed += 1
        return acc.result()
    pieces, junk = source
    acc.unparsed += junk
    kind: _Kind | None = None
    for piece in pieces:
        start = 0
        if kind is None:
            kind, start, before = _detect(piece)
            acc.unparsed += before
            if kind is None:
                continue
            acc.flavour = "postfix" if kind == "json" else kind
        if kind == "exim":
            _summarize_slices(
                piece,
                start,
                functools.partial(_exim_summarize_slice, acc=acc),
                functools.partial(_exim_scan_region, acc=acc) if _eximscan is not None else None,
            )
        elif kind == "json":
            _json_summarize_lines(_bounded_lines(piece, start), acc, clock)
        else:
            _summarize_slices(
                piece,
                start,
                functools.partial(_postfix_summarize_slice, acc=acc, zone=zone),
                functools.partial(_postfix_scan_region, acc=acc, zone=zone)
                if _pfscan is not None
                else None,
                _POSTFIX_SCAN_REGION_CHARS,
            )
    return acc.result()


def _bounded_lines(text: str, start: int) -> Iterator[str]:
    """The lines of ``text[start:]``, split a bounded slice at a time."""
    end = len(text)
    pos = start
    while pos < end:
        cut = text.find("\n", pos + _SLICE_CHARS)
        if cut < 0:
            cut = end
        yield from text[pos:cut].split("\n")
        pos = cut + 1


def iter_messages(
    detail: Any, now: float | None = None, *, zone: datetime.tzinfo | None = None
) -> Iterator[QueueMessage]:
    """Yield one :class:`QueueMessage` per message of a listing (same input rules as summarize).

    Unreadable lines and objects are skipped; :func:`summarize` counts them.
    """
    clock = time.time() if now is None else float(now)
    if detail is None:
        return
    if _is_object_list(detail):
        for item in _objects(detail):
            if isinstance(item, dict):
                msg = _object_message(item, clock)
                if msg is not None:
                    yield msg
        return
    source = _text_chunks(detail)
    if source is None:
        return
    pieces, _ = source
    yield from _iter_text(pieces, clock, zone)


def _iter_text(
    pieces: Iterator[str], now: float, zone: datetime.tzinfo | None
) -> Iterator[QueueMessage]:
    state = _IterState()
    kind: _Kind | None = None
    first_lines: list[str] = []
    for piece in pieces:
        start = 0
        if kind is None:
            kind, start, _ = _detect(piece)
            if kind is None:
                continue
        first_lines.append(piece[start:])
        break
    if kind is None:
        return
    lines = itertools.chain.from_iterable(
        _bounded_lines(piece, 0) for piece in itertools.chain(first_lines, pieces)
    )
    if kind == "exim":
        yield from _exim_iter_lines(lines, state)
    elif kind == "json":
        yield from _json_iter_lines(lines, state, now)
    else:
        yield from _postfix_iter_lines(lines, state, now, zone)
