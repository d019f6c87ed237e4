"""One way to compare senders and domains, shared by the metrics and the remediator.

What the exporter counts, what an alert names and what the remediator selects must be the
same set of messages, so all three go through these functions:

- A **sender key** keeps the local part exactly as the listing shows it and folds only the
  ASCII letters of the domain (after the last ``@``) to lower case. ``str.lower()`` is no
  e-mail comparison: it folds U+212A KELVIN SIGN to ``k``, so ``\u212aing@example.org`` and
  ``king@example.org`` (two mailboxes) would be one sender.
- A **domain key** folds ASCII letters only, for the same reason.
- Lone surrogates (from JSON ``\\ud800`` escapes) become U+FFFD first: label values are
  valid UTF-8.
- A **label value** is the key itself up to :data:`LABEL_LIMIT` characters. A longer key is
  cut and carries a hash of the whole key (``…[sha256:0123456789abcdef]``), so an alert on
  a cut label still selects exactly that sender's messages, and no other.
"""

from __future__ import annotations

import hashlib
import re
import string

LABEL_LIMIT = 256
"""Longest label value (characters); longer keys are cut and carry a hash."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_HASH_TAIL = re.compile(r"\[sha256:[0-9a-f]{16}\]\Z")
_ELLIPSIS = "\u2026"


def clean(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD: valid UTF-8."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def ascii_lower(text: str) -> str:
    """``text`` with the ASCII letters A-Z folded to a-z and nothing else changed."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def sender_key(sender: str) -> str:
    """The key a sender is counted and selected by: the exact local part, ``@``, and the
    domain with its ASCII letters folded. ``<>`` (bounces) and addresses without ``@`` are
    kept as they are."""
    sender = clean(sender)
    local, at, domain = sender.rpartition("@")
    return f"{local}@{ascii_lower(domain)}" if at else sender


def domain_key(domain: str) -> str:
    """The key a domain is counted and selected by: ASCII letters folded."""
    return ascii_lower(clean(domain))


def recipient_domain(address: str) -> str | None:
    """The domain key of a recipient address (``<a@Example.NET>`` -> ``example.net``), or
    None when it has no local part or no domain."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    return domain_key(domain) if at and local and domain else None


def sender_domain(sender: str) -> str:
    """The domain key of a sender (``""`` when it has none)."""
    return domain_key(sender.strip("<>").rpartition("@")[2])


def label_value(key: str) -> str:
    """``key`` as a metric label value: itself when it has at most :data:`LABEL_LIMIT`
    characters; otherwise cut, with a hash of the whole key at the end. The domain of a
    long address stays readable when it is short (``aaaa…@example.org[sha256:…]``). A short
    key that looks like a cut label is hashed too, so that no sender can take the label of
    another (longer) one."""
    key = clean(key)
    if len(key) <= LABEL_LIMIT and not is_cut_label(key):
        return key
    tail = f"[sha256:{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]}]"
    room = LABEL_LIMIT - len(tail) - 1
    local, at, domain = key.rpartition("@")
    if at and len(domain) + 1 <= room // 2 and len(key) > room:
        return f"{local[: room - len(domain) - 1]}{_ELLIPSIS}@{domain}{tail}"
    return f"{key[:room]}{_ELLIPSIS}{tail}"


def is_cut_label(value: str) -> bool:
    """True when ``value`` has the shape :func:`label_value` gives a cut key."""
    return len(value) <= LABEL_LIMIT and _ELLIPSIS in value and _HASH_TAIL.search(value) is not None


def _unbracket(value: str) -> str:
    value = value.strip()
    if len(value) > 2 and value.startswith("<") and value.endswith(">"):
        return value[1:-1]
    return value


def sender_matches(sender: str, wanted: str) -> bool:
    """True when a message's ``sender`` is the sender ``wanted`` names: an address (angle
    brackets allowed; ``<>`` for bounces) or a label value the exporter exported."""
    key = sender_key(sender)
    if is_cut_label(wanted):
        return label_value(key) == wanted
    return key == sender_key(_unbracket(wanted))


def domain_matches(domain: str | None, wanted: str) -> bool:
    """True when a domain key is the domain ``wanted`` names (a domain or a label value)."""
    if domain is None:
        return False
    if is_cut_label(wanted):
        return label_value(domain) == wanted
    return domain == domain_key(wanted.strip())
