"""TLS to a panel: the SSL contexts panels share, and the pinned-certificate check."""

from __future__ import annotations

import functools
import hashlib
import hmac
import ssl

import httpx


class FingerprintMismatch(ssl.SSLError):
    """The panel's certificate is not the pinned one (kept as ``__cause__``: a TLS failure)."""


def pinning_context() -> ssl.SSLContext:
    """A client context for a pinned certificate: no chain or name check, the pin decides."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@functools.cache
def shared_ssl_context(tls_verify: bool | str, pinned: bool = False) -> ssl.SSLContext:
    """One SSL context per ``tls_verify`` setting, shared by every panel that uses it.

    Building a context loads the CA bundle (about 20 ms and some memory each);
    with hundreds of panels a context per client would dominate start-up. A pinned
    panel gets a context that checks nothing: the transport compares the fingerprint.
    """
    if pinned:
        return pinning_context()
    if isinstance(tls_verify, str):
        return ssl.create_default_context(cafile=tls_verify)
    return httpx.create_ssl_context(verify=tls_verify)


def format_fingerprint(digest: bytes) -> str:
    """``sha256:AB:CD:...``, the form ``tls_fingerprint`` takes in the config."""
    return "sha256:" + ":".join(f"{b:02X}" for b in digest)


def pin_mismatch(ssl_object: ssl.SSLObject | None, expected: bytes) -> str | None:
    """None when the peer's leaf certificate hashes (SHA-256) to ``expected``; else why not."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    got = hashlib.sha256(der).digest() if der else b""
    if hmac.compare_digest(got, expected):
        return None
    shown = format_fingerprint(got) if got else "no certificate"
    return f"certificate fingerprint mismatch: expected {format_fingerprint(expected)}, got {shown}"


__all__ = [
    "FingerprintMismatch",
    "format_fingerprint",
    "pin_mismatch",
    "pinning_context",
    "shared_ssl_context",
]
