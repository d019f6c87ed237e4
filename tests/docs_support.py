"""Reading the Markdown docs the way GitHub renders them: headings and their anchors,
outside fenced code blocks."""

from __future__ import annotations

import re
from collections.abc import Iterator


def prose_lines(markdown: str) -> Iterator[str]:
    """The lines of ``markdown`` outside fenced code blocks (```` ``` ```` or ``~~~``)."""
    fence = ""
    for line in markdown.splitlines():
        stripped = line.lstrip()
        if fence:
            if stripped.startswith(fence):
                fence = ""
            continue
        if stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            continue
        yield line


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub gives the headings of ``markdown`` (a repeated heading gets ``-1``,
    ``-2``, ...); ``#`` lines inside code blocks are not headings."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(markdown):
        if match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            text = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
            count = seen.get(text, 0)
            seen[text] = count + 1
            anchors.add(text if count == 0 else f"{text}-{count}")
    return anchors
