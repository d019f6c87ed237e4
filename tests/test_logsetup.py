"""Log lines: context from ``extra=`` is kept, uvicorn's coloured duplicate is not."""

from __future__ import annotations

import json
import logging

from brainycp.daemon.logsetup import JSONFormatter, TextFormatter


def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("exporter", logging.WARNING, __file__, 1, "poll failed", (), None)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_the_extra_context() -> None:
    line = json.loads(JSONFormatter().format(record(panel="web01", reason="timeout")))
    assert (line["msg"], line["panel"], line["reason"], line["level"]) == (
        "poll failed",
        "web01",
        "timeout",
        "warning",
    )


def test_uvicorn_color_message_is_dropped_from_both_formats() -> None:
    rec = record(color_message="\x1b[32mStarted\x1b[0m")
    assert "color_message" not in json.loads(JSONFormatter().format(rec))
    assert "\x1b" not in TextFormatter().format(rec)
