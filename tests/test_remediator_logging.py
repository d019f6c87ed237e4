"""Text logs: values from a webhook (labels, reasons) cannot forge log lines."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

from brainycp.daemon.logsetup import TextFormatter, escape_controls
from tests.remediator_support import am_alert, notification, post_many, remediator

FORGED = "web01\n2026-12-01 00:00:00,000 ERROR   remediator: forged\x1b[2J\u2028x"


def test_escape_controls_keeps_text_and_escapes_every_control() -> None:
    assert escape_controls("plain é ✓") == "plain é ✓"
    assert escape_controls("a\nb\rc\td\x00e\x1b[0m\x85\u2028") == (
        "a\\nb\\rc\\td\\x00e\\x1b[0m\\x85\\u2028"
    )


def test_escape_controls_shows_format_characters_instead_of_applying_them() -> None:
    # A bidi override would display "evil@" reversed; zero-width and tag characters hide text.
    assert escape_controls("\u202eevil@\u200b\ufeff\U000e0041\ud800") == (
        "\\u202eevil@\\u200b\\ufeff\\U000e0041\\ud800"
    )
    assert escape_controls("caf\u00e9 \u00a0non-breaking") == "caf\u00e9 \u00a0non-breaking"


def test_a_label_value_with_newlines_stays_on_its_log_line(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("remediator")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        rem = remediator(tmp_path)
        body = notification(am_alert("X", FORGED))  # panel label; also in the reason
        (response,) = asyncio.run(post_many(rem, [body]))
        assert response.status_code == 200
        logger.error("reason %s", "line1\nline2", exc_info=ValueError("boom"))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = stream.getvalue().splitlines()
    alert_lines = [line for line in lines if "alert X on" in line]
    assert len(alert_lines) == 1, lines
    assert "web01\\n2026-12-01" in alert_lines[0] and "\\x1b[2J" in alert_lines[0]
    assert not any(line.startswith("2026-12-01 00:00:00,000") for line in lines)
    # A traceback (ours) still spans lines, after the escaped one-line message.
    (error_line,) = [line for line in lines if "reason line1" in line]
    assert "reason line1\\nline2" in error_line
    assert "Traceback" not in error_line and any("ValueError: boom" in line for line in lines)
