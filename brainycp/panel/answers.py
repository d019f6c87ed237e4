"""What a panel's JSON answer means: its code, its numbers, and the typed result per operation.

Plain functions over the decoded JSON object, no I/O: a code that means "nothing there"
is a result, any other failure raises the :class:`~brainycp.panel.errors.BrainyCPError`
subclass of its reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from brainycp.panel.errors import (
    PanelAPIError,
    PanelAuthError,
    PanelBadDetail,
    PanelNotJSON,
    PanelPermissionError,
)

ListingDetail = str | list[str] | list[dict[str, Any]]

MAX_COUNT = 2**53
"""The largest message count believed: beyond it a float (and so a metric) is no longer exact."""


@dataclass(frozen=True)
class QueueListing:
    """The answer of ``list_msg``: ``detail`` as the panel sent it (string, lines or objects)."""

    detail: ListingDetail
    empty: bool
    """True for code 100 (the queue is empty) or an empty listing."""
    body_bytes: int
    """Size of the HTTP body, for logs and metrics."""


@dataclass(frozen=True)
class ActionResult:
    """The answer of a state-changing operation."""

    applicable: bool
    """False when the panel said there is nothing to do (``delete_frozen_msg`` 100 on Postfix)."""
    output: str
    """The console output the panel returned in ``detail``."""
    message: str


@dataclass(frozen=True)
class ServiceStatus:
    """The answer of ``clamav``/``spamassassin``; ``state`` comes from the panel's patterns."""

    daemon: str
    text: str
    state: Literal["running", "stopped", "unknown"]


class StatusClassifier(Protocol):
    """What reads running or stopped from a status text (a panel's ``status_patterns``)."""

    def classify(self, text: str) -> Literal["running", "stopped", "unknown"]: ...


def message_of(answer: dict[str, Any]) -> str:
    """The answer's message text (the vendor spells the key ``mess`` or ``message``)."""
    value = answer.get("mess", answer.get("message", ""))
    return value if isinstance(value, str) else str(value)


def as_text(detail: object) -> str:
    """A ``detail`` as one text: lines joined, anything else as JSON."""
    if detail is None:
        return ""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and all(isinstance(x, str) for x in detail):
        return "\n".join(detail)
    return json.dumps(detail, ensure_ascii=False)


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


def _raise_for_code(panel: str, operation: str, answer: dict[str, Any]) -> None:
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
            panel, operation, f"the panel rejected the login or password ({message or 'code 1'})"
        )
    if code == 0:
        raise PanelBadDetail(
            panel, operation, "answer with code 0 and no mail-module error code (wrong endpoint?)"
        )
    if code is None:
        raise PanelBadDetail(panel, operation, f"code {str(raw)[:40]!r} is not a number")
    raise PanelAPIError(panel, operation, code, message)


def decode_answer(
    panel: str, operation: str, body: bytes | bytearray | str, size: int | None = None
) -> dict[str, Any]:
    """The JSON object of a panel's answer, or :class:`PanelNotJSON`. ``body`` may be the
    text its bytes decode to (``size``: their length), as :func:`body_text` gives it."""
    size = len(body) if size is None else size
    if not body.strip():
        raise PanelNotJSON(panel, operation, "empty body")
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        start = body.lstrip()[:1]
        what = "HTML" if start in (b"<", "<") else "truncated or invalid JSON"
        raise PanelNotJSON(panel, operation, f"{what} ({size} bytes)") from None
    if not isinstance(answer, dict):
        raise PanelNotJSON(panel, operation, f"a JSON {type(answer).__name__}, not an object")
    return answer


def body_text(body: bytes | bytearray) -> str | None:
    """The text of an answer's bytes, decoded as ``json.loads`` decodes bytes; None when
    they do not decode (:func:`decode_answer` of the bytes then says why)."""
    try:
        return body.decode(json.detect_encoding(body), "surrogatepass")
    except UnicodeDecodeError:
        return None


def answer_code(panel: str, operation: str, answer: dict[str, Any]) -> int:
    """The mail module's ``error`` code of an answer: 0 or a code that is not a failure.

    Wrong credentials (``auth``), no rights (``permission``, code 400) and an answer
    without a usable code (``bad_detail``, ``api_error``) raise.
    """
    if "error" not in answer:
        if "code" in answer:
            _raise_for_code(panel, operation, answer)
        raise PanelBadDetail(panel, operation, "the answer has no error code")
    raw = answer["error"]
    code = integer_of(raw, 10)
    if code is None:
        shown = repr(raw)[:40]
        raise PanelBadDetail(panel, operation, f"error code {shown} is not a number")
    if code == 400:
        raise PanelPermissionError(
            panel, operation, "the mail module is not available to this login"
        )
    return code


def queue_listing(panel: str, code: int, answer: dict[str, Any], size: int) -> QueueListing:
    """``list_msg``: code 100 (empty queue) is an empty listing, not an error."""
    if code == 100:
        return QueueListing(detail="", empty=True, body_bytes=size)
    if code != 0:
        raise PanelAPIError(panel, "list_msg", code, message_of(answer))
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
        panel, "list_msg", "detail is neither text, a list of lines nor a list of objects"
    )


def listing_from_body(panel: str, body: bytes | bytearray) -> QueueListing:
    """The :class:`QueueListing` of a ``list_msg`` answer's raw body (what
    :meth:`~brainycp.panel.client.PanelClient.list_msg` does with it)."""
    answer = decode_answer(panel, "list_msg", body)
    return queue_listing(panel, answer_code(panel, "list_msg", answer), answer, len(body))


def message_count(panel: str, code: int, answer: dict[str, Any]) -> int:
    """``count_msg``: an integer or a numeric string, from 0 to :data:`MAX_COUNT`."""
    if code != 0:
        raise PanelAPIError(panel, "count_msg", code, message_of(answer))
    value = integer_of(answer.get("detail"), 16)
    if value is None or not 0 <= value <= MAX_COUNT:
        raise PanelBadDetail(panel, "count_msg", f"detail is not an integer from 0 to {MAX_COUNT}")
    return value


def action_result(
    panel: str, operation: str, code: int, answer: dict[str, Any], *, not_applicable: bool = False
) -> ActionResult:
    """A state-changing operation's answer; with ``not_applicable``, code 100 is a result."""
    if not_applicable and code == 100:
        return ActionResult(False, as_text(answer.get("detail")), message_of(answer))
    if code != 0:
        raise PanelAPIError(panel, operation, code, message_of(answer))
    return ActionResult(True, as_text(answer.get("detail")), message_of(answer))


def service_status(
    panel: str, daemon: str, code: int, answer: dict[str, Any], patterns: StatusClassifier
) -> ServiceStatus:
    """``clamav``/``spamassassin``: the status text, classified by the panel's patterns."""
    if code != 0:
        raise PanelAPIError(panel, daemon, code, message_of(answer))
    detail = answer.get("detail")
    if detail is not None and not isinstance(detail, str | list):
        raise PanelBadDetail(panel, daemon, "status detail is not text")
    text = as_text(detail) or message_of(answer)
    return ServiceStatus(daemon, text, patterns.classify(text))


__all__ = [
    "MAX_COUNT",
    "ActionResult",
    "ListingDetail",
    "QueueListing",
    "ServiceStatus",
    "StatusClassifier",
    "action_result",
    "answer_code",
    "as_text",
    "body_text",
    "decode_answer",
    "integer_of",
    "listing_from_body",
    "message_count",
    "message_of",
    "queue_listing",
    "service_status",
]
