"""The compiled one-pass readers (``_eximscan.c``, ``_pfscan.c``), where they are built.

They read the same grammar as ``exim.py`` and ``postfix.py`` into the same :class:`Tally`,
for several times less CPU (figures in bench/README.md). setup.py builds them where a C compiler
and the Python headers are installed; ``BRAINYCP_PURE_PYTHON=1`` switches them off. Each
function returns False, having tallied nothing, when its reader is not available.
"""

from __future__ import annotations

import datetime
import importlib
import os
import random
from types import ModuleType
from typing import Any

from brainycp.queue.identity import clean
from brainycp.queue.model import QueueMessage, Tally
from brainycp.queue.reasons import reason_class
from brainycp.queue.tokens import HourStarts, age_token_values, exim_size_bytes


def _load(name: str) -> ModuleType | None:
    if os.environ.get("BRAINYCP_PURE_PYTHON") == "1":
        return None
    try:
        return importlib.import_module(f"brainycp.queue.{name}")
    except ImportError:
        return None


_EXIM = _load("_eximscan")
_POSTFIX = _load("_pfscan")
_NULL_SENDERS = ("", "<>", "MAILER-DAEMON")


def c_readers() -> tuple[str, ...]:
    """The formats read by a compiled reader here (``exim``, ``postfix``); empty: Python only."""
    return tuple(name for name, module in (("exim", _EXIM), ("postfix", _POSTFIX)) if module)


def _seed() -> int:
    # The readers' hash tables are keyed per reading: a listing cannot be built to collide.
    return random.getrandbits(64)


def _add_people(tally: Tally, senders: dict[str, int] | None, domains: Any, bounces: int) -> None:
    if tally.senders is not None and senders is not None:
        tally.senders.update(senders)
        if bounces:
            tally.senders["<>"] += bounces
    if tally.domains is not None and domains is not None:
        tally.domains.update(domains)


def read_exim(text: str, start: int, tally: Tally) -> bool:
    """Tally the Exim listing ``text[start:]`` by the compiled reader; False when not built."""
    if _EXIM is None:
        return False
    wanted = (tally.senders is not None, tally.domains is not None, tally.records is not None)
    found = _EXIM.scan(text, start, len(text), *wanted, exim_size_bytes, _seed())
    messages, frozen, bounces, unparsed, size, ages, senders, domains, records = found
    tally.messages += messages
    tally.frozen += frozen
    tally.bounces += bounces
    tally.unparsed += unparsed
    tally.bytes += size
    tally.age_tokens.update(ages)
    _add_people(tally, senders, domains, bounces)
    for msg_id, token, size_bytes, raw_sender, recipients, is_frozen in records or ():
        age, low = age_token_values(token) or (0.0, 0.0)
        sender = "" if raw_sender is None else "<>" if raw_sender == "" else clean(raw_sender)
        pending = tuple(map(clean, recipients))
        message = QueueMessage(msg_id, age, size_bytes, sender, pending, is_frozen, False, low)
        tally.add_record(message)
    return True


def read_postfix(text: str, start: int, tally: Tally, zone: datetime.tzinfo | None) -> bool:
    """Tally the Postfix listing ``text[start:]`` by the compiled reader; False when not built."""
    if _POSTFIX is None:
        return False
    wanted = (tally.senders is not None, tally.domains is not None, tally.records is not None)
    hours = HourStarts(tally.now, zone)
    bounds = tuple(tally.arrival_bounds)
    found = _POSTFIX.scan(
        text, start, len(text), *wanted, hours, reason_class, tally.now, bounds, _seed()
    )
    messages, held, bounces, unparsed, size, buckets, count, total, earliest = found[:9]
    reasons, senders, domains, records = found[9:]
    tally.messages += messages
    tally.held += held
    tally.bounces += bounces
    tally.unparsed += unparsed
    tally.bytes += size
    tally.buckets = [a + b for a, b in zip(tally.buckets, buckets, strict=True)]
    tally.arrival_count += count
    tally.arrival_sum += total
    if earliest is not None and (tally.arrival_min is None or earliest < tally.arrival_min):
        tally.arrival_min = earliest
    tally.reasons = [a + b for a, b in zip(tally.reasons, reasons, strict=True)]
    _add_people(tally, senders, domains, bounces)
    for msg_id, arrival, size_bytes, raw_sender, recipients, is_held in records or ():
        sender = "<>" if raw_sender in _NULL_SENDERS else clean(raw_sender)
        age = max(0.0, tally.now - arrival)
        pending = tuple(map(clean, recipients))
        tally.add_record(QueueMessage(msg_id, age, size_bytes, sender, pending, False, is_held))
    return True
