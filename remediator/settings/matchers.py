"""Alertmanager's matchers (``label="v"``, ``!=``, ``=~``, ``!~``), as a rule's ``matchers``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import re2  # type: ignore[import-untyped]
from pydantic import BeforeValidator

_MATCHER = re.compile(
    r"""^\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"""
    r"""(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^"\s,{}]*))\s*$"""
)


def _unescape(quoted: str) -> str:
    """Alertmanager's unescaping of a quoted matcher value (``pkg/labels/parse.go``).

    ``\\n`` is a newline, ``\\"`` and ``\\\\`` are the character itself, and any other
    backslash is kept as it is, so ``"\\d+"`` reaches the regex as ``\\d+``.
    """
    out: list[str] = []
    escaped = False
    for char in quoted:
        if escaped:
            escaped = False
            if char == "n":
                out.append("\n")
            elif char in ('"', "\\"):
                out.append(char)
            else:
                out.append("\\" + char)
        elif char == "\\":
            escaped = True
        else:
            out.append(char)
    if escaped:
        out.append("\\")
    return "".join(out)


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # the error goes into the config error, not onto stderr
    return options


_RE2_OPTIONS = _re2_options()


@dataclass(frozen=True)
class Matcher:
    """One Alertmanager-style matcher: ``label="v"``, ``!=``, ``=~``, ``!~`` (regexes anchored).

    Regexes are compiled with RE2 as ``^(?:value)$``, exactly as Alertmanager
    compiles them with Go's ``regexp`` (same syntax, same semantics): ``$`` is the
    end of the text (Python's ``re`` would also match before a trailing newline),
    ``.`` does not match a newline unless ``(?s)``, ``\\d``, ``\\w`` and ``\\b`` are
    ASCII, and lookarounds and backreferences are refused as in Go. Matching takes
    time linear in the label value's length, so no pattern can stall the webhook.
    """

    label: str
    op: str
    value: str
    regex: Any = None
    """The compiled ``re2`` pattern for ``=~`` and ``!~``."""

    @classmethod
    def parse(cls, text: str) -> Matcher:
        match = _MATCHER.match(text)
        if not match:
            raise ValueError(
                f'{text!r} is not a matcher; use label="value", !=, =~ or !~, e.g. '
                'alertname="BrainyCPMailFrozenMessages"'
            )
        if match.group("quoted") is not None:
            value = _unescape(match.group("quoted"))
        else:
            value = match.group("bare")
        regex = None
        if match.group("op") in ("=~", "!~"):
            try:
                regex = re2.compile(f"^(?:{value})$", _RE2_OPTIONS)
            except re2.error as exc:
                reason = exc.args[0] if exc.args else exc
                if isinstance(reason, bytes):
                    reason = reason.decode("utf-8", "replace")
                raise ValueError(
                    f"{text!r}: bad regular expression (Go RE2 syntax, as Alertmanager): {reason}"
                ) from None
        return cls(match.group("label"), match.group("op"), value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Alertmanager semantics: a missing label is the empty string."""
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        found = self.regex.search(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'


def _parse_matchers(value: object) -> list[Matcher]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of matchers")
    return [m if isinstance(m, Matcher) else Matcher.parse(str(m)) for m in value]


Matchers = Annotated[list[Matcher], BeforeValidator(_parse_matchers)]
