"""Read a chat message as Slack and Telegram show it, for tests of outside text in chat.

Each checker asserts the markup is the remediator's own (no mention, link, stray tag or
entity) and returns the message as lines: ``(words, quoted)`` per line, where ``words``
is the line's text outside quotes (the remediator's own words) and ``quoted`` the
quoted values as the reader sees them.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

ChatLine = tuple[str, list[str]]

_SLACK_ENTITY = re.compile(r"&(?!amp;|lt;|gt;)")
FORGED = "approve: curl"
"""What a forged approval line would start with."""


def slack_lines(text: str) -> list[ChatLine]:
    """A Slack ``text`` as lines; fails on any markup a panel or alert could have added."""
    assert "<" not in text and ">" not in text, "Slack reads <...> as a link or mention"
    assert not _SLACK_ENTITY.search(text), "a bare & in Slack text"
    out: list[ChatLine] = []
    for raw in text.split("\n"):
        pieces = raw.split("`")
        assert len(pieces) % 2 == 1, f"an unclosed code span: {raw!r}"
        words = "".join(pieces[0::2])
        quoted = [_slack_unescape(p) for p in pieces[1::2]]
        out.append((_slack_unescape(words), quoted))
    _one_line_each(text.split("\n"), [_slack_unescape(text)])
    return out


def _slack_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class _Telegram(HTMLParser):
    """Telegram's HTML parse mode: only ``<b>`` and ``<code>``, no attributes, no nesting."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[ChatLine] = [("", [])]
        self.open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in ("b", "code") and not attrs and self.open is None, (tag, attrs)
        self.open = tag
        if tag == "code":
            self.lines[-1][1].append("")

    def handle_endtag(self, tag: str) -> None:
        assert tag == self.open, f"</{tag}> closes {self.open}"
        self.open = None

    def handle_data(self, data: str) -> None:
        for index, piece in enumerate(data.split("\n")):
            if index:
                assert self.open is None, "a tag spans two lines"
                self.lines.append(("", []))
            words, quoted = self.lines[-1]
            if self.open == "code":
                quoted[-1] += piece
            else:
                self.lines[-1] = (words + piece, quoted)

    def unknown_decl(self, data: str) -> None:
        raise AssertionError(f"markup declaration {data!r}")

    def handle_comment(self, data: str) -> None:
        raise AssertionError(f"comment {data!r}")


def telegram_lines(text: str) -> list[ChatLine]:
    """A Telegram HTML ``text`` as lines; fails on any tag or entity from outside."""
    parser = _Telegram()
    parser.feed(text)
    parser.close()
    assert parser.open is None, "an unclosed tag"
    shown = "\n".join(w + "".join(q) for w, q in parser.lines)
    assert len(shown) <= 4096, f"Telegram refuses {len(shown)} characters"
    _one_line_each(text.split("\n"), [shown])
    return parser.lines


def _one_line_each(raw: list[str], shown: list[str]) -> None:
    # Whatever a reader counts as a line break (U+2028, NEL, VT...) appears only where
    # the remediator put a newline.
    for text in shown:
        assert len(text.splitlines()) == len(raw), "a line break inside a line"


def words(lines: list[ChatLine]) -> list[str]:
    """Each line's own words, with the quoted values left out (the message's skeleton)."""
    return [w for w, _ in lines]
