"""Logging for both daemons: ``text`` for people, ``json`` (one object a line) for collectors."""

from __future__ import annotations

import json
import logging
import sys
import time
import unicodedata
from collections.abc import Callable
from typing import Any

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_EVERY = 10.0
"""A repeated warning (failed accept, concurrency limit, bad request) at most this often."""

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is context.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's copy of the message with ANSI colours
}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


# What a terminal or a chat client would not show as itself: controls (C0, C1, DEL),
# format characters (bidi overrides such as U+202E, zero-width ones, tags), the line and
# paragraph separators, surrogates, private-use and unassigned code points.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_char(char: str) -> str:
    """One hidden character as a visible escape (``\\n``, ``\\x1b``, ``\\u202e``)."""
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape_controls(text: str) -> str:
    """``text`` on one visible line: every hidden character (see ``HIDDEN_CATEGORIES``)
    becomes its escape, so a value cannot forge a log line, repaint the terminal or reverse
    the text that follows it. Printable text (the usual case) is returned as it is."""
    if text.isprintable():  # False for every hidden category, so this is only a fast path
        return text
    return "".join(
        escape_char(c) if unicodedata.category(c) in HIDDEN_CATEGORIES else c for c in text
    )


class TextFormatter(logging.Formatter):
    """One line per record: a label value, a reason or a panel answer that holds a newline
    or an escape sequence cannot forge another log line or repaint the terminal. Only a
    traceback (ours) spans lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = {
            k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
        }
        if extra:
            tail = " ".join(f"{k}={v}" for k, v in extra.items())
            head, sep, trace = text.partition("\n")  # the message is one line by now
            text = head + " " + escape_controls(tail) + sep + trace
        return text


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger once, on stderr; quiet the chatty libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "apscheduler", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class RateLimitFilter(logging.Filter):
    """Lets each distinct message through at most once every ``every`` seconds.

    The first one of a burst passes; the next that passes says how many were dropped.
    """

    def __init__(
        self, every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.every = every
        self.clock = clock
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False
        self._last[key] = now
        dropped = self._dropped.pop(key, 0)
        if dropped:
            record.msg = f"{record.msg} ({dropped} more like it not logged)"
        return True
