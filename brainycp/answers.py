"""What a panel's answer says: its JSON object, its mail-module code, a queue listing.

Pure functions over the bytes of an answer (no network, no httpx): the panel client uses
them, and so do the workers that read big listings off the daemons' event loops
(brainycp.queue.worker), which get the raw body and must fail with the same errors.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from brainycp.errors import (
    PanelAPIError,
    PanelAuthError,
    PanelBadDetail,
    PanelNotJSON,
    PanelPermissionError,
)

ListingDetail = str | list[str] | list[dict[str, Any]]


@dataclass(frozen=True)
class QueueListing:
    """The answer of ``list_msg``: ``detail`` as the panel sent it (string, lines or objects)."""

    detail: ListingDetail
    empty: bool
    """True for code 100 (the queue is empty) or an empty listing."""
    body_bytes: int
    """Size of the HTTP body, for logs and metrics."""


def message_of(answer: dict[str, Any]) -> str:
    """The panel's message of an answer (``mess`` or ``message``), as text."""
    # The vendor spells the key ``mess`` in some operations and ``message`` in others.
    value = answer.get("mess", answer.get("message", ""))
    return value if isinstance(value, str) else str(value)


def integer_of(value: object, max_digits: int) -> int | None:
    """An integer from a JSON int, an integral finite float, or a string of ASCII digits.

    Anything else (a bool, 1.5, Infinity, NaN, "²", 5,000 digits) is None, never an exception.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) < 10**max_digits else None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer() or abs(value) >= 10**max_digits:
            return None
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        digits = text.removeprefix("-")
        if digits.isascii() and digits.isdigit() and len(digits) <= max_digits:
            return int(text)
    return None


def _raise_for_code(name: str, operation: str, answer: dict[str, Any]) -> None:
    """An answer of the panel's other API family (``code`` instead of ``error``), by value.

    ``{"code": 1, "message": "Not perm2"}`` is the bad-credentials answer. ``code: 0`` is
    that family's success: never an auth failure, but not a mail-module answer either
    (the call reached some other part of the panel), so it is ``bad_detail``. Any other
    code (``1000`` no administrator rights, ``1001`` no such user, ...) is ``api_error``.
    """
    raw = answer["code"]
    code = integer_of(raw, 10)
    message = message_of(answer)[:200]
    if code == 1:
        raise PanelAuthError(
            name, operation, f"the panel rejected the login or password ({message or 'code 1'})"
        )
    if code == 0:
        raise PanelBadDetail(
            name, operation, "answer with code 0 and no mail-module error code (wrong endpoint?)"
        )
    if code is None:
        raise PanelBadDetail(name, operation, f"code {str(raw)[:40]!r} is not a number")
    raise PanelAPIError(name, operation, code, message)


def decode_answer(
    name: str, operation: str, body: bytes | bytearray | str, size: int | None = None
) -> dict[str, Any]:
    """The JSON object of a panel's answer, or :class:`PanelNotJSON`. ``body`` may be the
    text the bytes decode to (``size``: their length), as :func:`body_text` gives it."""
    size = len(body) if size is None else size
    if not body.strip():
        raise PanelNotJSON(name, operation, "empty body")
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        start = body.lstrip()[:1]
        what = "HTML" if start in (b"<", "<") else "truncated or invalid JSON"
        raise PanelNotJSON(name, operation, f"{what} ({size} bytes)") from None
    if not isinstance(answer, dict):
        raise PanelNotJSON(name, operation, f"a JSON {type(answer).__name__}, not an object")
    return answer


def body_text(body: bytes | bytearray) -> str | None:
    """The text of an answer's bytes, decoded as ``json.loads`` decodes bytes; None when
    they do not decode (:func:`decode_answer` of the bytes then says why)."""
    try:
        return body.decode(json.detect_encoding(body), "surrogatepass")
    except UnicodeDecodeError:
        return None


def answer_code(name: str, operation: str, answer: dict[str, Any]) -> int:
    """The mail module's code of an answer (0, or a code that means "nothing there");
    the other codes raise their :class:`~brainycp.errors.BrainyCPError`."""
    if "error" not in answer:
        if "code" in answer:
            _raise_for_code(name, operation, answer)
        raise PanelBadDetail(name, operation, "the answer has no error code")
    raw = answer["error"]
    code = integer_of(raw, 10)
    if code is None:
        shown = repr(raw)[:40]
        raise PanelBadDetail(name, operation, f"error code {shown} is not a number")
    if code == 400:
        raise PanelPermissionError(
            name, operation, "the mail module is not available to this login"
        )
    return code


def listing_from_answer(name: str, answer: dict[str, Any], size: int) -> QueueListing:
    """The :class:`QueueListing` of a ``list_msg`` answer (``size``: its body's bytes); code
    100 (empty queue) is an empty listing."""
    code = answer_code(name, "list_msg", answer)
    if code == 100:
        return QueueListing(detail="", empty=True, body_bytes=size)
    if code != 0:
        raise PanelAPIError(name, "list_msg", code, message_of(answer))
    detail = answer.get("detail")
    if detail is None:
        detail = ""
    if isinstance(detail, str):
        return QueueListing(detail=detail, empty=not detail.strip(), body_bytes=size)
    if isinstance(detail, list) and (
        all(isinstance(x, str) for x in detail) or all(isinstance(x, dict) for x in detail)
    ):
        return QueueListing(detail=detail, empty=not detail, body_bytes=size)
    raise PanelBadDetail(
        name, "list_msg", "detail is neither text, a list of lines nor a list of objects"
    )


def listing_from_body(name: str, body: bytes | bytearray) -> QueueListing:
    """The :class:`QueueListing` of a ``list_msg`` answer's raw body."""
    return listing_from_answer(name, decode_answer(name, "list_msg", body), len(body))
