"""The Python reader of ``exim -bp`` listings: one pass, line by line, into a :class:`Tally`.

How lines are read (the compiled reader, ``_eximscan.c``, reads them the same way):

- A header ``<age> <size> <id> <sender>``: at most three leading spaces; ``age`` like
  ``45m``/``3h``/``2d``; ``size`` like ``812``/``2.1K``/``1.3M`` (K/M/G = 1024 multiples),
  blank for an empty message, above 1 TiB a junk header (an unparsed line whose indented
  lines go with it); id 6-6-2 or 6-11-4; the sender in angle brackets (``<>`` is a bounce;
  the sender runs to the last ``>`` after which the rest of the line still reads), an
  untrusted submitter's ``(login)`` after it; optionally ``*** frozen ***``.
- An indented line (space or tab) belongs to the message above it: a pending recipient, or,
  marked ``D``/``+D``, one already delivered, or a ``*** ... ***`` note; unless it starts like
  a header (`` 5m ``) without being one: that is junk.
- Blank lines separate; one ``\\r`` at a line's end is dropped; anything else is an unparsed
  line (so is an indented line before the first header).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from brainycp.queue.identity import clean
from brainycp.queue.model import QueueMessage, Tally
from brainycp.queue.tokens import age_token_values, exim_size_bytes

EXIM_ID = r"[0-9A-Za-z]{6}-(?:[0-9A-Za-z]{6}-[0-9A-Za-z]{2}|[0-9A-Za-z]{11}-[0-9A-Za-z]{4})"
"""Exim ids: 6-6-2 base-62 (16 characters, up to Exim 4.96) or 6-11-4 (23, from 4.97)."""
HEADER = re.compile(
    r" {0,3}(?P<age>[0-9]+[smhd]) +(?:(?P<size>[0-9]+(?:\.[0-9]+)?[KMG]?) +)?"
    r"(?P<id>" + EXIM_ID + r")"
    r"(?: <(?P<sender>.*)>(?: \((?P<login>[^()]*)\))?)?"
    r"(?P<frozen> \*\*\* frozen \*\*\*)? *"
)
"""A header line (``fullmatch``, one trailing ``\\r`` removed first)."""
_HEADERISH = re.compile(r" {1,3}[0-9]+[smhd] ")
_NOT_PENDING = ("D ", "+D ", "***")
_SLICE_CHARS = 1 << 15


def lines_from(text: str, start: int) -> Iterator[str]:
    """The non-empty lines of ``text[start:]`` without their ``\\n`` or ``\\r\\n``, split a
    bounded slice at a time (no list of every line)."""
    end = len(text)
    pos = start
    while pos < end:
        cut = text.find("\n", pos + _SLICE_CHARS)
        if cut < 0:
            cut = end
        for line in text[pos:cut].split("\n"):
            if line.endswith("\r"):
                line = line[:-1]
            if line:
                yield line
        pos = cut + 1


_Head = tuple[str, int, str, str | None, bool]  # age token, size, id, raw sender, frozen


def _finish(tally: Tally, head: _Head, recipients: list[str]) -> None:
    age_token, size, msg_id, raw_sender, frozen = head
    tally.messages += 1
    tally.age_tokens[age_token] += 1
    tally.bytes += size
    tally.frozen += frozen
    tally.bounces += raw_sender == ""
    sender = "" if raw_sender is None else "<>" if raw_sender == "" else clean(raw_sender)
    tally.add_people(sender, recipients)
    if tally.records is not None:
        age, low = age_token_values(age_token) or (0.0, 0.0)
        pending = tuple(map(clean, recipients))
        tally.add_record(QueueMessage(msg_id, age, size, sender, pending, frozen, False, low))


def read_exim(text: str, start: int, tally: Tally) -> None:
    """Tally the Exim listing ``text[start:]`` (``start`` is the first header's offset)."""
    header = HEADER.fullmatch
    headerish = _HEADERISH.match
    seen_message = False
    head: _Head | None = None
    recipients: list[str] = []
    for line in lines_from(text, start):
        first = line[0]
        m = header(line) if first in " 0123456789" else None
        if m is not None:
            if head is not None:
                _finish(tally, head, recipients)
            recipients = []
            seen_message = True
            token = m.group("size")
            size = 0 if token is None else exim_size_bytes(token)
            if size is None:  # implausible: the header is junk, and so are its lines
                tally.unparsed += 1
                head = None
                continue
            head = (m.group("age"), size, m.group("id"), m.group("sender"), bool(m.group("frozen")))
            continue
        stripped = line.strip()
        if not stripped:
            continue
        if first in " \t" and seen_message and not headerish(line):
            if head is not None and not stripped.startswith(_NOT_PENDING):
                recipients.append(stripped)
            continue
        tally.unparsed += 1
    if head is not None:
        _finish(tally, head, recipients)
