"""The reader of message objects: ``postqueue -j`` JSON lines and panels' lists of objects.

An object is a message when it has at least one of the keys below and every value it has
reads: ``id``/``queue_id``; ``age``/``age_seconds`` (seconds, or an Exim token like ``3h``)
or ``arrival_time`` (epoch); ``size``/``size_bytes``/``message_size`` (bytes or ``2.1K``);
``sender`` (``MAILER-DAEMON``, ``<>`` and ``""`` are the null sender); ``recipients``
(addresses, ``{"address": ...}`` objects as ``postqueue -j`` gives them, or one string);
``frozen``/``held`` (bools, 0/1, yes/no words); ``queue_name: hold`` is held. Anything else
is one unparsed line (or object).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from brainycp.queue.exim import EXIM_ID, lines_from
from brainycp.queue.identity import clean
from brainycp.queue.model import Flavour, QueueMessage, Tally
from brainycp.queue.postfix import NULL_SENDERS
from brainycp.queue.reasons import reason_mask
from brainycp.queue.tokens import MAX_MESSAGE_BYTES, age_token_values, size_token_bytes

_KNOWN = (
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
_RECIPIENT_SEPARATORS = re.compile(r"[\s,]+")
_EXIM_ID = re.compile(EXIM_ID)
_POSTFIX_ID = re.compile(r"[0-9A-Za-z]{8,20}")


def _normal_sender(value: str) -> str:
    """A sender without brackets; every spelling of the null sender becomes ``<>``."""
    sender = value.strip()
    if sender.startswith("<") and sender.endswith(">"):
        sender = sender[1:-1].strip()
    return "<>" if sender in NULL_SENDERS else clean(sender)


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


def _age(obj: Mapping[str, Any], now: float) -> tuple[float, float | None] | None:
    """(age, lowest age or None when exact) of an object, None when unreadable."""
    key = "age" if "age" in obj else "age_seconds"
    if key in obj:
        value = obj[key]
        number = _number(value)
        if number is not None:
            return number, None
        if isinstance(value, str):
            values = age_token_values(value.strip())
            if values is None:
                return None
            return values if values[1] != values[0] else (values[0], None)
        return None
    if "arrival_time" in obj:
        arrival = _number(obj["arrival_time"])
        return None if arrival is None else (max(0.0, now - arrival), None)
    return 0.0, None


def _size(obj: Mapping[str, Any]) -> int | None:
    for key in ("size", "size_bytes", "message_size"):
        if key in obj:
            value = obj[key]
            number = _number(value)
            if number is None and isinstance(value, str):
                number = size_token_bytes(value)
            if number is None or number > MAX_MESSAGE_BYTES:
                return None
            return int(number)
    return 0


def _recipients(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(clean(part) for part in _RECIPIENT_SEPARATORS.split(value) if part)
    if not isinstance(value, list | tuple):
        return None
    out: list[str] = []
    for item in value:
        if isinstance(item, str):
            out.append(clean(item.strip()))
        elif isinstance(item, dict) and isinstance(item.get("address"), str):
            out.append(clean(item["address"]))
        else:
            return None
    return tuple(out)


def _reasons(obj: Mapping[str, Any]) -> int:
    """The reason classes of a ``postqueue -j`` object's recipients (``delay_reason``)."""
    recipients = obj.get("recipients")
    if not isinstance(recipients, list):
        return 0
    return reason_mask(
        [
            item["delay_reason"]
            for item in recipients
            if isinstance(item, dict) and isinstance(item.get("delay_reason"), str)
        ]
    )


_Values = tuple[str, float, float | None, int, str, tuple[str, ...], bool, bool]
# id, age, lowest age (None: exact), size, sender, recipients, frozen, held


def _values(obj: Any, now: float) -> _Values | None:
    """What a message object says, or None when it is not one."""
    if not isinstance(obj, dict) or not any(key in obj for key in _KNOWN):
        return None
    raw_id = obj.get("id", obj.get("queue_id", ""))
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
        return None
    age = _age(obj, now)
    size = _size(obj)
    frozen = _flag(obj.get("frozen"))
    held = _flag(obj.get("held"))
    recipients = _recipients(obj.get("recipients"))
    sender_value = obj.get("sender")
    if sender_value is not None and not isinstance(sender_value, str):
        return None
    if age is None or size is None or frozen is None or held is None or recipients is None:
        return None
    sender = "" if sender_value is None else _normal_sender(sender_value)
    held = held or obj.get("queue_name") == "hold"
    return str(raw_id), age[0], age[1], size, sender, recipients, frozen, held


def object_message(obj: Any, now: float) -> QueueMessage | None:
    """The message an object stands for, or None when it is not one."""
    values = _values(obj, now)
    if values is None:
        return None
    msg_id, age, low, size, sender, recipients, frozen, held = values
    return QueueMessage(msg_id, age, size, sender, recipients, frozen, held, low)


def add_object(tally: Tally, obj: Any) -> bool:
    """Tally one object; False (an unparsed one counted) when it is no message."""
    values = _values(obj, tally.now)
    if values is None:
        tally.unparsed += 1
        return False
    msg_id, age, low, size, sender, recipients, frozen, held = values
    tally.messages += 1
    tally.bytes += size
    tally.add_age(age)
    tally.frozen += frozen
    tally.held += held
    tally.bounces += sender == "<>"
    tally.add_reasons(_reasons(obj))
    tally.add_people(sender, recipients)
    if tally.records is not None:
        tally.add_record(QueueMessage(msg_id, age, size, sender, recipients, frozen, held, low))
    return True


def object_flavour(obj: Mapping[str, Any]) -> Flavour:
    """Which MTA a message object comes from, as far as its keys and id tell."""
    if "queue_id" in obj or "queue_name" in obj or "arrival_time" in obj:
        return "postfix"
    raw_id = obj.get("id")
    if isinstance(raw_id, str):
        if _EXIM_ID.fullmatch(raw_id) and raw_id.count("-") == 2:
            return "exim"
        if _POSTFIX_ID.fullmatch(raw_id):
            return "postfix"
    if "frozen" in obj:
        return "exim"
    if "held" in obj:
        return "postfix"
    return "unknown"


def read_objects(objects: Iterable[Any], tally: Tally) -> None:
    """Tally a panel's list of objects; the flavour is the first message's."""
    for obj in objects:
        if add_object(tally, obj) and tally.flavour == "unknown":
            tally.flavour = object_flavour(obj)


def read_json_lines(text: str, start: int, tally: Tally) -> None:
    """Tally ``postqueue -j`` output (one JSON object per line) from offset ``start``."""
    for line in lines_from(text, start):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            obj = None
        add_object(tally, obj)
