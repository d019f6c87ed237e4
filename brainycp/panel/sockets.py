"""Reaching a panel's host: IP address or name, its addresses, and socket failures in words."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl

# X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH from OpenSSL's x509_vfy.h.
_NAME_MISMATCH_CODES = (62, 64)

_NO_SUCH_NAME = {
    code
    for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
    if code is not None
}


def is_ip_address(host: str) -> bool:
    """True when ``host`` is an IPv4 or IPv6 address (no name to resolve)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` in the resolver's order, each once; an address is itself.

    Raises what ``getaddrinfo`` raises (``socket.gaierror``, ``UnicodeError`` for a name
    the IDNA codec refuses): :func:`describe_os_error` puts either in words.
    """
    if is_ip_address(host):
        return [host]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def describe_os_error(exc: BaseException, host: str = "") -> str:
    """What a socket or TLS failure means, in the words an operator searches for."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code in _NAME_MISMATCH_CODES:
            return f"hostname mismatch: the certificate is not valid for {host or 'this host'}"
        return f"certificate verify failed: {exc.verify_message or exc.reason or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, UnicodeError):
        return f"name does not resolve: {host} is not a valid host name"
    if isinstance(exc, socket.gaierror):
        if exc.errno in _NO_SUCH_NAME:
            return f"name does not resolve: {host} ({exc.strerror})"
        return f"name resolution failed for {host}: {exc.strerror}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, ConnectionAbortedError):
        return "connection aborted"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


__all__ = ["describe_os_error", "is_ip_address", "resolve"]
