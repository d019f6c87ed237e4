"""Read a listing once: find its format, then hand it to that format's one-pass reader.

``detail`` is what the panel's ``list_msg`` returned: one string (console output, or
``postqueue -j`` JSON lines when its first non-blank character is ``{``), a list of lines,
or a list of objects. The format of a text is named by its first known line; non-blank
lines before it are unparsed. Nothing in a listing raises: lines that cannot be read are
counted in ``unparsed_lines``.

The Exim and Postfix text readers exist twice: in Python (``exim.py``, ``postfix.py``) and
compiled (``compiled.py``), which give the same results and which of them runs is a matter
of speed only (``c_readers()`` says which are built; ``BRAINYCP_PURE_PYTHON=1`` turns them
off). Reading is CPU work: daemons run it in a worker (:mod:`brainycp.queue.worker`).
"""

from __future__ import annotations

import datetime
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from brainycp.queue import compiled, exim, objects, postfix
from brainycp.queue.model import QueueMessage, QueueSummary, Reading, Tally, ranked
from brainycp.queue.select import MessageFilter, oldest_first

_Kind = Literal["exim", "postfix", "json"]
_LEADING_SPACE = re.compile(r"\s*")


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """What a reading gives beyond the summary (plain data: it crosses to worker processes)."""

    top_senders: int = 0
    """How many of the senders with most messages (0: none)."""
    top_recipient_domains: int = 0
    """How many of the recipient domains with most messages (0: none)."""
    select: MessageFilter | None = None
    """Which messages to return, oldest first (None: none)."""
    select_limit: int | None = None
    """At most this many of them (the total is counted all the same)."""


def _detect_line(line: str) -> _Kind | None:
    if line.endswith("\r"):
        line = line[:-1]
    if exim.HEADER.fullmatch(line):
        return "exim"
    if postfix.starts_listing(line):
        return "postfix"
    return None


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


def _as_text(detail: Any) -> tuple[str, int] | None:
    """The text of a str/bytes/list-of-lines detail and how many list items are not lines;
    None when ``detail`` is not text."""
    if isinstance(detail, str):
        return detail, 0
    if isinstance(detail, bytes | bytearray):
        return bytes(detail).decode("utf-8", "replace"), 0
    if isinstance(detail, list | tuple):
        lines = [item for item in detail if isinstance(item, str)]
        return "\n".join(lines), len(detail) - len(lines)
    return None


def _read_text(
    text: str, tally: Tally, zone: datetime.tzinfo | None, use_compiled: bool | None
) -> None:
    kind, start, before = _detect(text)
    tally.unparsed += before
    if kind is None:
        return
    tally.flavour = "exim" if kind == "exim" else "postfix"
    fast = use_compiled is not False
    if kind == "json":
        objects.read_json_lines(text, start, tally)
    elif kind == "exim":
        if not (fast and compiled.read_exim(text, start, tally)):
            exim.read_exim(text, start, tally)
    elif not (fast and compiled.read_postfix(text, start, tally, zone)):
        postfix.read_postfix(text, start, tally, zone)


def tally_listing(
    detail: Any,
    tally: Tally,
    *,
    zone: datetime.tzinfo | None = None,
    use_compiled: bool | None = None,
) -> None:
    """Read ``detail`` once into ``tally`` (``use_compiled=False``: the Python readers only)."""
    if detail is None:
        return
    if _is_object_list(detail):
        objects.read_objects([detail] if isinstance(detail, dict) else detail, tally)
        return
    text = _as_text(detail)
    if text is None:
        tally.unparsed += 1
        return
    tally.unparsed += text[1]
    _read_text(text[0], tally, zone, use_compiled)


def read_listing(
    detail: Any,
    now: float | None = None,
    *,
    zone: datetime.tzinfo | None = None,
    options: ReadOptions | None = None,
    use_compiled: bool | None = None,
) -> Reading:
    """Read a listing once and return everything a poll or an action needs from it.

    Postfix ``mailq`` arrival times have no year and no zone: they are read as local times
    in ``zone`` (the panel's clock; None is UTC), see docs/metrics.md, "Ages". ``now``
    defaults to the current time; ages are never negative. Garbage gives an ``unknown``
    summary, never an exception.
    """
    options = options or ReadOptions()
    select = options.select
    tally = Tally(
        now=time.time() if now is None else float(now),
        senders=Counter() if options.top_senders > 0 else None,
        domains=Counter() if options.top_recipient_domains > 0 else None,
        records=[] if select is not None else None,
        keep=select.matches if select is not None else None,
    )
    tally_listing(detail, tally, zone=zone, use_compiled=use_compiled)
    chosen: tuple[QueueMessage, ...] = ()
    total = 0
    if select is not None and tally.records is not None:
        chosen, total = oldest_first(tally.records, options.select_limit)
    return Reading(
        summary=tally.summary(),
        top_senders=ranked(tally.senders or {}, options.top_senders),
        top_recipient_domains=ranked(tally.domains or {}, options.top_recipient_domains),
        selected=chosen,
        selected_total=total,
    )


def summarize(
    detail: Any,
    now: float | None = None,
    *,
    zone: datetime.tzinfo | None = None,
    use_compiled: bool | None = None,
) -> QueueSummary:
    """The :class:`QueueSummary` of a listing (see :func:`read_listing`)."""
    return read_listing(detail, now, zone=zone, use_compiled=use_compiled).summary


def iter_messages(
    detail: Any,
    now: float | None = None,
    *,
    zone: datetime.tzinfo | None = None,
    use_compiled: bool | None = None,
) -> Iterator[QueueMessage]:
    """Every message of a listing, in listing order (see :func:`read_listing`); unreadable
    lines and objects are skipped (:func:`summarize` counts them)."""
    tally = Tally(now=time.time() if now is None else float(now), records=[])
    tally_listing(detail, tally, zone=zone, use_compiled=use_compiled)
    return iter(tally.records or ())
