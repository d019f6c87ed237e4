"""The Python reader of Postfix ``mailq`` / ``postqueue -p`` listings: one pass into a Tally.

How lines are read (the compiled reader, ``_pfscan.c``, reads them the same way):

- A header ``<queue-id>[*!#] <size> <Day Mon DD HH:MM:SS> <sender>`` (``!`` = held; the time
  is the panel's local time, see :func:`brainycp.queue.tokens.postfix_hour_epoch`);
  ``MAILER-DAEMON`` (or nothing, or ``<>``) is the null sender. A size above 1 TiB or an
  impossible time or date makes it a junk header: an unparsed line whose lines go with it.
- After a header, a line starting with a space, a tab or ``(``: a ``(reason)`` line (the
  deferral reason of the recipients after it; Postfix indents it to end in column 78, or not
  at all when it is longer), else an indented pending recipient; a ``(`` line that is no
  reason is unparsed.
- The title, the ``-- N Kbytes in N Requests.`` footer and ``Mail queue is empty`` are known
  and carry nothing; blank lines separate; one ``\\r`` at a line's end is dropped; anything
  else is an unparsed line (so is an indented line before the first header).
"""

from __future__ import annotations

import datetime
import re

from brainycp.queue.exim import lines_from
from brainycp.queue.identity import clean
from brainycp.queue.model import QueueMessage, Tally
from brainycp.queue.reasons import NO_CLASS, reason_class
from brainycp.queue.tokens import MAX_MESSAGE_BYTES, MONTHS, WEEKDAYS, HourStarts, hour_key

HEADER = re.compile(
    r"(?P<id>[0-9A-Za-z]{5,32})(?P<flags>[*!#]*) +(?P<size>[0-9]+) +"
    r"(?P<wday>Mon|Tue|Wed|Thu|Fri|Sat|Sun) "
    r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" +(?P<day>[0-9]{1,2}) (?P<hh>[0-9]{2}):(?P<mm>[0-9]{2}):(?P<ss>[0-9]{2})"
    r"(?: +(?P<sender>\S(?:.*\S)?))? *"
)
"""A header line (``fullmatch``, one trailing ``\\r`` removed first)."""
TITLE = re.compile(r"-+Queue ID-+ .*")
_FOOTER = re.compile(r"-- [0-9]+ Kbytes in [0-9]+ Requests?\.\s*")
EMPTY = "Mail queue is empty"
NULL_SENDERS = frozenset({"", "<>", "MAILER-DAEMON"})
_WEEKDAY = {name: index for index, name in enumerate(WEEKDAYS)}
_MONTH = {name: index for index, name in enumerate(MONTHS, start=1)}

_Head = tuple[str, int, int, str, bool]  # id, arrival, size, sender, held


def starts_listing(line: str) -> bool:
    """True when ``line`` (one trailing ``\\r`` removed) says a listing is Postfix's."""
    return bool(HEADER.fullmatch(line) or TITLE.fullmatch(line) or line.strip() == EMPTY)


def _arrival(m: re.Match[str], hours: HourStarts) -> int | None:
    """Arrival epoch of a header that stands for a message; None when it is junk."""
    if int(m.group("size")) > MAX_MESSAGE_BYTES:
        return None
    hh, mm, ss = int(m.group("hh")), int(m.group("mm")), int(m.group("ss"))
    if hh > 23 or mm > 59 or ss > 60:
        return None
    key = hour_key(_WEEKDAY[m.group("wday")], _MONTH[m.group("mon")], int(m.group("day")), hh)
    start = hours(key)
    return None if start is None else start + mm * 60 + ss


def _finish(tally: Tally, head: _Head, recipients: list[str], reasons: int) -> None:
    msg_id, arrival, size, sender, held = head
    tally.messages += 1
    tally.bytes += size
    tally.add_arrival(arrival)
    tally.held += held
    tally.bounces += sender == "<>"
    tally.add_reasons(reasons)
    tally.add_people(sender, recipients)
    if tally.records is not None:
        age = max(0.0, tally.now - arrival)
        pending = tuple(map(clean, recipients))
        tally.add_record(QueueMessage(msg_id, age, size, sender, pending, False, held))


def read_postfix(text: str, start: int, tally: Tally, zone: datetime.tzinfo | None) -> None:
    """Tally the Postfix listing ``text[start:]`` (``start``: its first known line)."""
    header = HEADER.fullmatch
    hours = HourStarts(tally.now, zone)
    seen_message = False
    head: _Head | None = None
    recipients: list[str] = []
    reasons = 0
    for line in lines_from(text, start):
        first = line[0]
        if first not in " \t(" and (m := header(line)) is not None:
            if head is not None:
                _finish(tally, head, recipients, reasons)
            head, recipients, reasons = None, [], 0
            seen_message = True  # a junk header's lines go with it
            arrival = _arrival(m, hours)
            if arrival is None:
                tally.unparsed += 1
                continue
            raw = m.group("sender") or ""
            sender = "<>" if raw in NULL_SENDERS else clean(raw)
            head = (m.group("id"), arrival, int(m.group("size")), sender, "!" in m.group("flags"))
            continue
        stripped = line.strip()
        if not stripped:
            continue
        if first in " \t(" and seen_message:
            if head is not None:
                if stripped.startswith("(") and stripped.endswith(")"):
                    index = reason_class(stripped[1:-1])
                    if index != NO_CLASS:
                        reasons |= 1 << index
                    continue
                if first != "(":
                    recipients.append(stripped)
                    continue
            if first == "(":
                tally.unparsed += 1
            continue
        if first in " \t" or not (
            TITLE.fullmatch(line) or _FOOTER.fullmatch(line) or stripped == EMPTY
        ):
            tally.unparsed += 1
    if head is not None:
        _finish(tally, head, recipients, reasons)
