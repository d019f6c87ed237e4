"""What the columns of a listing mean: Exim age and size tokens, Postfix arrival stamps."""

from __future__ import annotations

import datetime
import functools
import re
import time

MAX_MESSAGE_BYTES = 1 << 40
"""Sizes above 1 TiB are implausible for one message: such a header is an unparsed line."""

_AGE_TOKEN = re.compile(r"\s*([0-9]+)\s*([smhd])\s*")
_SIZE_TOKEN = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMG]?)B?\s*")
_SIZE_UNIT = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
EXIM_SIZE = re.compile(r" *[0-9]+(?:\.[0-9]+)?[KMG]?")
"""An Exim size column (leading spaces allowed): what :func:`exim_size_bytes` reads."""


def age_token_range(token: str) -> tuple[float, float] | None:
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
def age_token_values(token: str) -> tuple[float, float] | None:
    """(representative age, lowest age) of an Exim age token, or None when it is not one.

    The representative age is the middle of the token's range: buckets, sums and the oldest
    age are as close to the real ages as the listing allows. The lowest age is what the
    listing proves: ``older_than`` selections use it (see docs/metrics.md).
    """
    bounds = age_token_range(token)
    if bounds is None:
        return None
    low, high = bounds
    return (low + high) / 2, low


def size_token_bytes(token: str) -> int | None:
    """Bytes of a size token (``2.1K`` = round(2.1 * 1024)), or None when it is not one."""
    m = _SIZE_TOKEN.fullmatch(token)
    if m is None:
        return None
    number, unit = m.group(1), m.group(2)
    if not unit:
        return int(float(number)) if "." in number else int(number)
    return round(float(number) * _SIZE_UNIT[unit])


@functools.lru_cache(maxsize=20_000)
def exim_size_bytes(token: str) -> int | None:
    """Bytes of an Exim size column, None when it is not one or is above
    :data:`MAX_MESSAGE_BYTES` (Exim prints at most ~12,000 different ones: cached)."""
    if EXIM_SIZE.fullmatch(token) is None:
        return None
    value = size_token_bytes(token)
    return None if value is None or value > MAX_MESSAGE_BYTES else value


# --------------------------------------------------------------------------------------------
# Postfix arrival stamps

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# The weekdays of a date repeat every 28 years between 1901 and 2099 (Feb 29 included).
_WEEKDAY_CYCLE = 28
CLOCK_SLACK = 86400
"""Postfix and our clock may disagree a little: an arrival up to this far after now is
taken as now (age 0), not as a year ago."""


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


def postfix_hour_epoch(
    weekday: int, month: int, day: int, hour: int, now: float, zone: datetime.tzinfo | None
) -> int | None:
    """Epoch of the start of a Postfix arrival hour (local to ``zone``; None is UTC).

    ``weekday`` counts from Monday = 0, ``month`` from January = 1. mailq prints no year.
    The year is the latest one, not after now (but for :data:`CLOCK_SLACK`), in which that
    date falls on the printed weekday, looking back one weekday cycle (28 years). When no
    year matches (a stamp no clock prints) it is the latest year not after now. None when
    the date exists in no year (``Apr 31``). The comparison uses the hour's start, so that
    every message of an hour gets the same year.
    """
    newest = time.gmtime(now).tm_year + 1
    limit = now + CLOCK_SLACK
    for year in _years_on_weekday(weekday, month, day, newest):
        start = _hour_start(year, month, day, hour, zone)
        if start is not None and start <= limit:
            return start
    for year in range(newest, newest - 9, -1):
        start = _hour_start(year, month, day, hour, zone)
        if start is not None and start <= limit:
            return start
    return None


class HourStarts:
    """Hour starts of one reading by key ``((weekday * 12 + month - 1) * 100 + day) * 24 +
    hour``: each distinct hour of a listing is worked out once."""

    def __init__(self, now: float, zone: datetime.tzinfo | None) -> None:
        self.now, self.zone = now, zone
        self.known: dict[int, int | None] = {}

    def __call__(self, key: int) -> int | None:
        """The hour start of ``key``, None when that date does not exist."""
        try:
            return self.known[key]
        except KeyError:
            pass
        rest, hour = divmod(key, 24)
        rest, day = divmod(rest, 100)
        weekday, month = divmod(rest, 12)
        start = postfix_hour_epoch(weekday, month + 1, day, hour, self.now, self.zone)
        self.known[key] = start
        return start


def hour_key(weekday: int, month: int, day: int, hour: int) -> int:
    """The :class:`HourStarts` key of a stamp (``month`` from January = 1)."""
    return ((weekday * 12 + month - 1) * 100 + day) * 24 + hour
