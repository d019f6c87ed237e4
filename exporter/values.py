"""What a panel's answer may put into the state: checked here, before it gets there.

A value the text format cannot carry (a count of 10^400, a size of infinity, a sender
holding a lone surrogate) would fail every scrape, for every panel. So counts must be
integers from 0 to 2^53, sizes and ages finite and non-negative, and label values valid
UTF-8 (invalid code points are replaced). Anything else raises :class:`BadValue`, which
the poller records as ``reason="bad_detail"``.
"""

from __future__ import annotations

import math
import re

from brainycp.queue import QueueSummary
from brainycp.queue.identity import LABEL_LIMIT, label_value

MAX_COUNT = 2**53
"""The largest count that survives the float64 of the text format exactly."""
MAX_LABEL_CHARS = LABEL_LIMIT
"""Longer label values are cut to this many characters, marked with an ellipsis."""
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadValue(ValueError):
    """A value from a panel that must not enter the state; the message says which."""


def check_count(value: object, what: str) -> int:
    """``value`` as a count, or :class:`BadValue`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise BadValue(f"{what} is not an integer from 0 to 2^53")
    return value


def check_amount(value: object, what: str) -> float:
    """``value`` as a finite non-negative number (a size or an age), or :class:`BadValue`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadValue(f"{what} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise BadValue(f"{what} is beyond the float range") from None
    if not math.isfinite(number) or number < 0:
        raise BadValue(f"{what} is not finite and non-negative")
    return number


def clean_label(value: str) -> str:
    """``value`` as valid UTF-8 (lone surrogates become U+FFFD), at most
    :data:`MAX_LABEL_CHARS` characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Surrogates are the only code points UTF-8 cannot encode.
        value = _SURROGATE.sub("\ufffd", value)
    if len(value) > MAX_LABEL_CHARS:
        value = value[: MAX_LABEL_CHARS - 1] + "\u2026"
    return value


def check_summary(summary: QueueSummary) -> QueueSummary:
    """``summary`` when every field is exportable, or :class:`BadValue`."""
    for field in ("messages", "frozen", "bounces", "held", "unparsed_lines"):
        check_count(getattr(summary, field), f"listing {field}")
    check_amount(summary.bytes, "listing size")
    if summary.bytes > MAX_COUNT:
        # The sum is exported as a float; past 2^53 bytes (8 PiB) it is no queue.
        raise BadValue("listing size is over 2^53 bytes")
    if summary.oldest_age_seconds is not None:
        check_amount(summary.oldest_age_seconds, "oldest message age")
    check_amount(summary.age_sum_seconds, "sum of message ages")
    for count in summary.age_buckets:
        check_count(count, "age bucket count")
    if sum(summary.age_buckets) > MAX_COUNT:
        raise BadValue("age bucket counts add up past 2^53")
    return summary


def check_senders(senders: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    """Top senders (or domains) with valid label values and counts. A value longer than a
    label holds is cut and keeps a hash of itself (identity.label_value), which the
    remediator's selection takes; a duplicate after cleaning is merged."""
    merged: dict[str, int] = {}
    for sender, count in senders:
        check_count(count, "sender message count")
        label = label_value(sender)
        merged[label] = merged.get(label, 0) + count
    return tuple(sorted(merged.items(), key=lambda item: (-item[1], item[0])))
