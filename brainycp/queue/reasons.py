"""Classes of Postfix deferral reasons (``(connect to ...: Connection refused)``)."""

from __future__ import annotations

import functools
import re

DEFERRAL_REASONS: tuple[str, ...] = (
    "connection_refused",
    "timed_out",
    "greylisted",
    "blocklisted",
    "mailbox_full",
    "user_unknown",
    "other",
)
"""The classes of :func:`deferral_reason`, in the order of ``QueueSummary.deferral_reasons``."""

# Tried in this order (the first that matches wins; case is ignored). A greylisting reply
# often carries a policy status code (4.7.1), so greylisting comes first.
_PATTERNS: tuple[tuple[int, re.Pattern[str]], ...] = tuple(
    (DEFERRAL_REASONS.index(name), re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        ("greylisted", r"gr[ae]y-?list|postgrey|greylisted"),
        (
            "blocklisted",
            r"block-?list|black-?list|\bblocked\b|\b(?:dns)?[rd]bl\b|spamhaus|spamcop|barracuda"
            r"|\bsorbs\b|listed (?:at|in|on|by)\b|polic(?:y|ies)\b|reputation"
            r"|\b[45]\.7\.[0-9]{1,3}\b|access denied|relay(?:ing)? (?:access )?denied|\bspam\b",
        ),
        (
            "mailbox_full",
            r"mailbox (?:is )?full|over ?quota|quota (?:exceeded|full)|exceeds? (?:its |the )?quota"
            r"|insufficient (?:user )?(?:storage|quota)|mailbox size limit|\b[45]\.2\.2\b",
        ),
        (
            "user_unknown",
            r"user(?:name)? unknown|unknown (?:user|recipient|mailbox)"
            r"|no such (?:user|mailbox|recipient)"
            r"|recipient (?:address )?unknown|(?:user|mailbox|address) (?:does not|doesn't) exist"
            r"|invalid recipient|\b[45]\.1\.[1-6]\b",
        ),
        ("connection_refused", r"connection refused"),
        ("timed_out", r"timed out|time-?out"),
    )
)
_OTHER = DEFERRAL_REASONS.index("other")
_NO_REASON = "reason unavailable"  # Postfix: this recipient has no reason (being delivered)
NO_CLASS = -1
"""What :func:`reason_class` gives for a text that is no deferral."""


@functools.lru_cache(maxsize=20_000)
def reason_class(text: str) -> int:
    """The index in :data:`DEFERRAL_REASONS` of a reason text, or :data:`NO_CLASS` for
    Postfix's ``reason unavailable`` (a recipient being delivered, no reason yet)."""
    text = text.strip()
    if text == _NO_REASON:
        return NO_CLASS
    for index, pattern in _PATTERNS:
        if pattern.search(text):
            return index
    return _OTHER


def deferral_reason(text: str) -> str | None:
    """The class of a deferral reason text (one of :data:`DEFERRAL_REASONS`).

    None for Postfix's ``reason unavailable`` (a recipient being delivered, no reason yet).
    """
    index = reason_class(text)
    return None if index == NO_CLASS else DEFERRAL_REASONS[index]


def reason_mask(texts: list[str]) -> int:
    """A bit per class of the given reason texts."""
    mask = 0
    for text in texts:
        index = reason_class(text)
        if index != NO_CLASS:
            mask |= 1 << index
    return mask
