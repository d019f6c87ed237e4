"""Every way a panel call can fail: one base class, one subclass per reason.

``reason`` is a short fixed word (used as a metric label), the panel is the
config name and the operation is the vendor's operation name. No exception
ever carries the password or the request body.
"""

from __future__ import annotations

from typing import Any, ClassVar

REASONS = (
    "timeout",
    "connect",
    "protocol",
    "tls",
    "http_status",
    "not_json",
    "too_large",
    "bad_encoding",
    "auth",
    "permission",
    "api_error",
    "bad_detail",
)


class BrainyCPError(Exception):
    """A panel call failed; ``reason`` is one of :data:`REASONS`."""

    reason: ClassVar[str] = "api_error"

    def __init__(self, panel: str, operation: str, detail: str = "") -> None:
        self.panel = panel
        self.operation = operation
        self.detail = detail
        text = f"panel {panel}: {operation}: {self.reason}"
        super().__init__(f"{text}: {detail}" if detail else text)

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other arguments: rebuild from the state, not by calling __init__
        # (a listing's reading fails in a worker process and is raised again here).
        return _rebuild, (type(self), self.args, dict(self.__dict__))


def _rebuild(cls: type[BrainyCPError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class PanelTimeout(BrainyCPError):
    """The panel did not answer (or finish answering) within the timeout."""

    reason = "timeout"


class PanelConnectError(BrainyCPError):
    """No connection: refused, reset, DNS failure, or closed before any byte of an answer.

    ``detail`` names the cause in words ("connection refused", "name does not resolve").
    """

    reason = "connect"


class PanelProtocolError(BrainyCPError):
    """The answer broke HTTP/1.1: a malformed status line or header, bad chunking,
    conflicting lengths, a head over 64 KiB, or a body the panel cut short by closing."""

    reason = "protocol"


class PanelTLSError(BrainyCPError):
    """The TLS handshake failed (an unverifiable certificate, a hostname mismatch), or the
    certificate does not match the pinned ``tls_fingerprint``."""

    reason = "tls"


class PanelHTTPStatusError(BrainyCPError):
    """The panel (or a proxy in front of it) answered with a non-200 HTTP status."""

    reason = "http_status"

    def __init__(self, panel: str, operation: str, status_code: int, detail: str = "") -> None:
        self.status_code = status_code
        super().__init__(panel, operation, detail or f"HTTP {status_code}")


class PanelNotJSON(BrainyCPError):
    """The body was empty, HTML, truncated JSON, or JSON that is not an object."""

    reason = "not_json"


class PanelResponseTooLarge(BrainyCPError):
    """The body exceeded ``max_response_bytes``; reading stopped at the cap."""

    reason = "too_large"


class PanelBadEncoding(BrainyCPError):
    """A compressed body that does not decode, or a content coding we do not speak."""

    reason = "bad_encoding"


class PanelAuthError(BrainyCPError):
    """Wrong username or password (the panel's ``{"code": 1, "message": "Not perm2"}``)."""

    reason = "auth"


class PanelPermissionError(BrainyCPError):
    """Code 400: the mail module is not available to this login (no root rights)."""

    reason = "permission"


class PanelAPIError(BrainyCPError):
    """Any other non-zero code; the code is kept in ``code``."""

    reason = "api_error"

    def __init__(self, panel: str, operation: str, code: int | str, detail: str = "") -> None:
        self.code = code
        super().__init__(panel, operation, f"code {code}" + (f": {detail}" if detail else ""))


class PanelBadDetail(BrainyCPError):
    """The answer was well-formed JSON but ``detail`` is not what the operation returns."""

    reason = "bad_detail"
