"""The config's small values: durations, sizes, ``HOST:PORT``, shards, label names, zones.

Each parser takes what YAML gives (a string, a number) and returns the value or raises
ValueError with a message fit for ``key: message``; the ``Annotated`` types wire them into
pydantic models. :class:`Strict` is the base of every config model: unknown keys are errors
and the input never shows in a message (it may be a secret).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: object) -> float:
    """Seconds from ``30s``, ``5m``, ``1h30m``, ``1d``, or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 30s, 5m, 1h, 1d or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for part in _DURATION_PART.finditer(text):
                if part.start() != pos:
                    break
                seconds += float(part.group(1)) * _DURATION_UNITS[part.group(2)]
                pos = part.end()
            if pos != len(text) or pos == 0:
                raise ValueError(
                    f"{value!r} is not a duration (use 30s, 5m, 1h, 1d or a number of seconds)"
                ) from None
    else:
        raise ValueError("must be a duration like 30s, 5m, 1h, 1d or a number of seconds")
    if not math.isfinite(seconds):
        raise ValueError("must be a finite duration, not NaN or infinity")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


MAX_SIZE_BYTES = 1024**4
"""The largest size a config may give (1 TiB): anything above is a typo, not a limit."""
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(value: object) -> int:
    """Bytes from ``64MiB``, ``10MB``, ``512KiB`` or a plain number of bytes."""
    if isinstance(value, bool):
        raise ValueError("must be a size like 64MiB, 10MB or a number of bytes")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and len(value) <= 64 and (match := _SIZE.match(value)):
        unit = (match.group(2) or "B").lower()
        number = float(match.group(1)) * _SIZE_UNITS[unit]
        # float() of 400 digits is inf, and int(inf) raises OverflowError, not ValueError.
        size = int(number) if number < MAX_SIZE_BYTES * 2 else MAX_SIZE_BYTES + 1
    else:
        raise ValueError(f"{value!r} is not a size (use 64MiB, 10MB or a number of bytes)")
    if size <= 0:
        raise ValueError("must be greater than 0")
    if size > MAX_SIZE_BYTES:
        raise ValueError(f"must be at most {MAX_SIZE_BYTES} bytes (1 TiB)")
    return size


def parse_listen(value: object, *, any_port: bool = False) -> str:
    """Validate ``HOST:PORT`` (``[::1]:9863`` for IPv6). With ``any_port`` (the
    ``--listen`` flag), port 0 is allowed too: the kernel picks a free port and the
    start-up line names it."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9863")
    host, _, port = value.rpartition(":")
    lowest = 0 if any_port else 1
    if not port.isdigit() or not lowest <= int(port) < 65536:
        raise ValueError(f"port {port!r} must be a number from {lowest} to 65535")
    if not host:
        raise ValueError("must name a host, e.g. 0.0.0.0:9863")
    return value


def split_listen(listen: str) -> tuple[str, int]:
    """``("0.0.0.0", 9863)`` from ``"0.0.0.0:9863"``; brackets are removed from IPv6 hosts."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be greater than 0")
    return seconds


def _a_second_or_more(seconds: float) -> float:
    if seconds < 1:
        raise ValueError("must be at least 1s")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
"""A duration above 0 (a timeout)."""
SecondsDuration = Annotated[
    float, BeforeValidator(parse_duration), AfterValidator(_a_second_or_more)
]
"""A duration of at least one second (an interval, an approval's life)."""
ByteSize = Annotated[int, BeforeValidator(parse_size)]
Listen = Annotated[str, BeforeValidator(parse_listen)]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Names a panel label must not take. In multi-target mode /sd puts a panel's labels on
# every series of its target, where job or instance would replace Prometheus's own (the
# alerts match on them) and le would corrupt the age histogram's buckets.
_RESERVED_LABELS = {
    "job": "set by Prometheus on every series it scrapes",
    "instance": "set by Prometheus on every series it scrapes",
    "le": "reserved for histogram buckets",
    "panel": "set by the exporter (the panel's name)",
}


def _label_name_problem(name: str) -> str | None:
    if not _LABEL_NAME.fullmatch(name):
        return "not a Prometheus label name: it must match [a-zA-Z_][a-zA-Z0-9_]*"
    if name.startswith("__"):
        return "names starting with __ are reserved for Prometheus"
    return _RESERVED_LABELS.get(name)


def check_label_names(value: Mapping[str, str]) -> Mapping[str, str]:
    """Label names by Prometheus's rules, not ``__``-prefixed, not job, instance, le or panel.

    One problem is reported under the label's own key (``panels.web01.labels.job: ...``).
    """
    problems = [(name, why) for name in value if (why := _label_name_problem(name))]
    if len(problems) == 1 and problems[0][0].isidentifier():
        raise ValueError(f"{problems[0][0]}: {problems[0][1]}")
    if problems:
        raise ValueError("; ".join(f"label name {name!r}: {why}" for name, why in problems))
    for label, text in value.items():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"label {label}: the value is not valid UTF-8") from None
    return value


def parse_shard(value: object) -> tuple[int, int] | None:
    """``"INDEX/COUNT"`` (0-based, INDEX < COUNT) as ``(index, count)``; None stays None."""
    if value is None:
        return None
    if isinstance(value, tuple | list) and len(value) == 2:
        value = f"{value[0]}/{value[1]}"
    if not isinstance(value, str):
        raise ValueError('must be "INDEX/COUNT", e.g. "0/4"')
    m = re.fullmatch(r"\s*([0-9]{1,6})\s*/\s*([0-9]{1,6})\s*", value)
    if m is None:
        raise ValueError(f'{value!r} is not "INDEX/COUNT", e.g. "0/4"')
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or index >= count:
        raise ValueError(f"{value!r}: COUNT must be at least 1 and INDEX below COUNT (0-based)")
    return index, count


Shard = Annotated[tuple[int, int] | None, BeforeValidator(parse_shard)]


class Strict(BaseModel):
    """A config model: unknown keys are errors, values are frozen, input never in messages."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    def values_for(self, target: type[Any]) -> dict[str, Any]:
        """The values of this model's fields that the dataclass ``target`` has too: what a
        validated input hands on, as it is, to the resolved settings it builds."""
        wanted = {field.name for field in dataclasses.fields(target)}
        return {name: getattr(self, name) for name in type(self).model_fields if name in wanted}


def zone_of(name: str) -> ZoneInfo | None:
    """The time zone called ``name``, None for UTC (the queue parser's fast path).

    Raises ValueError, naming the zone, when the system's tz database has no such zone.
    """
    try:
        zone = ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Moscow or UTC"
            " (from the system's tzdata package)"
        ) from None
    return None if name == "UTC" else zone
