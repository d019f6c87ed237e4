"""Async client for the ``mailserver`` module of one BrainyCP panel's API.

One :class:`PanelClient` per panel, one keep-alive transport inside it, one
method per vendor operation. Requests are POST form bodies (credentials never
go into a URL) with ``language=en`` and the vendor's parameter names spelled
exactly as the contract spells them. The credentials go as ``username`` /
``password`` and as ``login`` / ``pass`` unless ``credentials_style`` picks
one pair: panel builds differ in which they read. Every failure raises a
:class:`~brainycp.panel.errors.BrainyCPError` subclass whose detail says what
happened; :mod:`~brainycp.panel.answers` reads what the answers mean.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Any, Literal
from urllib.parse import urlencode

import httpx

from brainycp import __version__
from brainycp.backoff import Backoff
from brainycp.config.panels import DAEMONS, PanelConfig
from brainycp.panel.answers import (
    ActionResult,
    QueueListing,
    ServiceStatus,
    action_result,
    answer_code,
    decode_answer,
    listing_from_body,
    message_count,
    service_status,
)
from brainycp.panel.decoding import ContentDecoder, DecodeError, DecodeLimit
from brainycp.panel.errors import (
    PanelBadEncoding,
    PanelConnectError,
    PanelHTTPStatusError,
    PanelProtocolError,
    PanelResponseTooLarge,
    PanelTimeout,
    PanelTLSError,
)
from brainycp.panel.tls import shared_ssl_context
from brainycp.panel.transport import PanelTransport

ServiceCommand = Literal["status", "on", "off"]
MessageCommand = Literal["delete", "reship"]

# Exim ids (6-6-2 up to 4.96, 6-11-4 from 4.97), Postfix short hex and long ids: letters,
# digits and '-'. Anything else would be handed to a shell command on the panel, so it is
# refused here; matched whole (fullmatch), so a trailing newline is refused too.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{4,39}")


def _is_tls_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError | ssl.CertificateError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _detail_of(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


_TIMEOUT_PHASES = {
    httpx.ConnectTimeout: "connecting",
    httpx.WriteTimeout: "writing",
    httpx.ReadTimeout: "reading",
    httpx.PoolTimeout: "waiting for a free connection",
}


def credential_fields(panel: PanelConfig, style: str | None = None) -> dict[str, str]:
    """The credential fields of a form body for ``style`` (default: the panel's)."""
    style = style or panel.credentials_style
    password = panel.password.get_secret_value()
    fields: dict[str, str] = {}
    if style in ("both", "username"):
        fields["username"] = panel.username
        fields["password"] = password
    if style in ("both", "login"):
        fields["login"] = panel.username
        fields["pass"] = password
    return fields


class PanelClient:
    """Talks to one panel. Use as ``async with PanelClient(panel) as client``."""

    def __init__(
        self,
        panel: PanelConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_delay: tuple[float, float] = (0.05, 0.5),
    ) -> None:
        self.panel = panel
        self._retry_delay = retry_delay
        pin = panel.tls_fingerprint_bytes
        # A status poll sends count_msg and two service statuses at once: keep 4 alive.
        self._transport = transport or PanelTransport(
            ssl_context=shared_ssl_context(panel.tls_verify, pin is not None),
            max_connections=4,
            fingerprint=pin,
        )
        self._url = httpx.URL(panel.url)
        # The same headers a default httpx.AsyncClient would send, fixed here; no proxy is
        # ever used, so an inherited HTTP(S)_PROXY never sees the credentials.
        self._headers = [
            (b"Host", self._url.netloc),
            (b"Accept", b"*/*"),
            (b"Accept-Encoding", b"gzip, deflate"),
            (b"User-Agent", f"brainycp-mail/{__version__}".encode()),
            (b"Content-Type", b"application/x-www-form-urlencoded"),
        ]
        timeout = panel.timeout
        self._timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        self._bodies: dict[tuple[Any, ...], bytes] = {}
        """Form bodies of the reads, which never change: built once per operation."""

    async def __aenter__(self) -> PanelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    def __repr__(self) -> str:
        return f"PanelClient({self.panel.name!r}, {self.panel.url!r})"

    # ------------------------------------------------------------------ transport

    def _form_body(self, operation: str, params: dict[str, str], *, read: bool) -> bytes:
        key = (operation, *params.items())
        body = self._bodies.get(key) if read else None
        if body is None:
            form = {
                **credential_fields(self.panel),
                "mailserver": "1",
                operation: "1",
                "language": "en",
                **params,
            }
            body = urlencode(form).encode("ascii")
            if read:
                self._bodies[key] = body
        return body

    async def _post_once(self, operation: str, params: dict[str, str], *, read: bool) -> bytearray:
        """One POST; the raw body (content codings decoded, at most ``max_response_bytes``).

        The request goes straight to the transport: a panel call needs none of what
        ``httpx.AsyncClient`` adds (cookies, auth, redirects, proxies), and skipping it
        halves the CPU a poll costs (see docs/design/panel-transport.md).
        """
        name = self.panel.name
        cap = self.panel.max_response_bytes
        content = self._form_body(operation, params, read=read)
        request = httpx.Request(
            "POST",
            self._url,
            headers=[*self._headers, (b"Content-Length", str(len(content)).encode())],
            content=content,
            extensions={"timeout": self._timeouts},
        )
        # The request's own copy of the extensions: the transport writes the phase into it.
        extensions = request.extensions
        limit = self.panel.timeout
        body = bytearray()
        try:
            # The whole call, body included, runs under one deadline: the transport's
            # timeouts are per read, so a panel trickling bytes would never time out.
            async with asyncio.timeout(limit):
                response = await self._transport.handle_async_request(request)
                extensions["phase"] = "reading"
                try:
                    if response.status_code != 200:
                        raise PanelHTTPStatusError(name, operation, response.status_code)
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > cap:
                        raise PanelResponseTooLarge(
                            name, operation, f"Content-Length {declared} over the {cap}-byte cap"
                        )
                    await self._read_body(response, body, cap, operation)
                finally:
                    await response.aclose()
        except TimeoutError:
            phase = extensions.get("phase", "connecting")
            raise PanelTimeout(
                name, operation, f"timed out after {limit:g}s while {phase}"
            ) from None
        except httpx.TimeoutException as exc:
            phase = _TIMEOUT_PHASES.get(type(exc), extensions.get("phase", "connecting"))
            raise PanelTimeout(
                name, operation, f"timed out after {limit:g}s while {phase}"
            ) from None
        except httpx.RemoteProtocolError as exc:
            # Malformed or cut short: the panel (or a proxy) answered, but not in HTTP/1.1.
            raise PanelProtocolError(name, operation, _detail_of(exc)) from None
        except httpx.TransportError as exc:
            if _is_tls_failure(exc):
                raise PanelTLSError(name, operation, _detail_of(exc)) from None
            raise PanelConnectError(name, operation, _detail_of(exc)) from None
        return body

    async def _read_body(
        self, response: httpx.Response, body: bytearray, cap: int, operation: str
    ) -> None:
        """Read the raw body into ``body``, decoding its content codings under the cap."""
        name = self.panel.name
        if response.is_stream_consumed:
            # A transport that read the body itself (httpx.MockTransport in tests).
            if len(response.content) > cap:
                raise PanelResponseTooLarge(name, operation, f"body over the {cap}-byte cap")
            body += response.content
            return
        coding = response.headers.get("content-encoding", "")
        try:
            decoder = ContentDecoder(coding, cap)
            raw = 0
            async for chunk in response.aiter_raw():
                raw += len(chunk)
                if raw > cap:
                    raise PanelResponseTooLarge(name, operation, f"body over the {cap}-byte cap")
                if decoder.identity:
                    body += chunk
                else:
                    for piece in decoder.decode(chunk):
                        body += piece
            decoder.finish()
        except DecodeLimit as exc:
            raise PanelResponseTooLarge(name, operation, f"{exc} ({coding})") from None
        except DecodeError as exc:
            raise PanelBadEncoding(name, operation, str(exc)) from None

    async def _body(
        self, operation: str, params: dict[str, str] | None = None, *, read: bool
    ) -> bytearray:
        """POST one operation; the raw body of the answer.

        Reads are retried once, after a jittered pause, when the connection failed or the
        answer broke HTTP; operations that change state are never retried.
        """
        params = params or {}
        try:
            return await self._post_once(operation, params, read=read)
        except (PanelConnectError, PanelProtocolError):
            if not read:
                raise
            await Backoff.between(*self._retry_delay).wait()
            return await self._post_once(operation, params, read=read)

    async def _call(
        self, operation: str, params: dict[str, str] | None = None, *, read: bool
    ) -> tuple[int, dict[str, Any], int]:
        """POST one operation; ``(code, answer, body size)`` for code 0 and non-error codes."""
        body = await self._body(operation, params, read=read)
        name = self.panel.name
        answer = decode_answer(name, operation, body)
        return answer_code(name, operation, answer), answer, len(body)

    # ------------------------------------------------------------------ operations

    async def list_msg(self) -> QueueListing:
        """The mail queue listing; code 100 (empty queue) is an empty listing, not an error."""
        return listing_from_body(self.panel.name, await self.list_msg_body())

    async def list_msg_body(self) -> bytearray:
        """The raw answer of ``list_msg``, for :func:`~brainycp.panel.answers.listing_from_body`
        to read elsewhere (a big listing's JSON costs ~0.1 s of CPU per 40 MB: the daemons
        decode it in a worker process, see brainycp.queue.worker)."""
        return await self._body("list_msg", read=True)

    async def count_msg(self) -> int:
        """Number of queued messages (the panel sends an integer or a numeric string)."""
        code, answer, _ = await self._call("count_msg", read=True)
        return message_count(self.panel.name, code, answer)

    async def delete_frozen_msg(self) -> ActionResult:
        """Remove frozen messages; code 100 (Postfix: no frozen state) is "not applicable"."""
        code, answer, _ = await self._call("delete_frozen_msg", read=False)
        name = self.panel.name
        return action_result(name, "delete_frozen_msg", code, answer, not_applicable=True)

    async def delete_all_msg(self, force: bool = False) -> ActionResult:
        """Empty the whole queue. Cannot be undone; callers gate it behind explicit config."""
        params = {"dellete_forse": "1"} if force else {}
        code, answer, _ = await self._call("delete_all_msg", params, read=False)
        return action_result(self.panel.name, "delete_all_msg", code, answer)

    async def controll_msg(self, message_id: str, command: MessageCommand) -> ActionResult:
        """Delete or resend (``reship``) one message by id."""
        if command not in ("delete", "reship"):
            raise ValueError(f"command must be delete or reship, not {command!r}")
        if not _MESSAGE_ID.fullmatch(message_id):
            raise ValueError(f"{message_id!r} is not a mail queue id")
        params = {"id": message_id, "command": command}
        code, answer, _ = await self._call("controll_msg", params, read=False)
        return action_result(self.panel.name, "controll_msg", code, answer)

    async def service(self, daemon: str, command: ServiceCommand) -> ServiceStatus:
        """Run ``status``/``on``/``off`` on ``clamav`` or ``spamassassin``."""
        if daemon not in DAEMONS:
            raise ValueError(f"daemon must be one of {DAEMONS}, not {daemon!r}")
        if command not in ("status", "on", "off"):
            raise ValueError(f"command must be status, on or off, not {command!r}")
        code, answer, _ = await self._call(daemon, {"command": command}, read=command == "status")
        return service_status(self.panel.name, daemon, code, answer, self.panel.status_patterns)

    async def clamav(self, command: ServiceCommand) -> ServiceStatus:
        """``service("clamav", command)``."""
        return await self.service("clamav", command)

    async def spamassassin(self, command: ServiceCommand) -> ServiceStatus:
        """``service("spamassassin", command)``."""
        return await self.service("spamassassin", command)


__all__ = ["MessageCommand", "PanelClient", "ServiceCommand", "credential_fields"]
