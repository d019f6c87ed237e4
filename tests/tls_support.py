"""Throwaway TLS material for tests: CAs, client and server certificates made with the
``openssl`` command (the ``cryptography`` package is not a dependency), and client contexts."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from tests.support import FIXTURES, require_binary

TLS = FIXTURES / "tls"
SERVER_CERT = TLS / "cert.pem"
"""A self-signed server certificate for 127.0.0.1 and localhost, with ``key.pem``."""
SERVER_KEY = TLS / "key.pem"
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(cwd: Path, *args: str) -> None:
    openssl = require_binary("openssl", "apt-get install openssl")
    subprocess.run([openssl, *args], check=True, capture_output=True, timeout=30, cwd=cwd)


def make_ca(tmp: Path, name: str) -> tuple[Path, Path]:
    """A CA in ``tmp``: ``(NAME.pem, NAME.key)``."""
    _openssl(tmp, "req", "-x509", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN=brainycp-mail test {name}")  # fmt: skip
    return tmp / f"{name}.pem", tmp / f"{name}.key"


def make_signed(tmp: Path, ca: tuple[Path, Path], name: str, subject: str) -> tuple[Path, Path]:
    """A certificate for ``subject`` (``/CN=...``) signed by ``ca``: ``(NAME.pem, NAME.key)``."""
    _openssl(tmp, "req", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
    _openssl(tmp, "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2")  # fmt: skip
    return tmp / f"{name}.pem", tmp / f"{name}.key"


def make_server_cert(tmp: Path, name: str) -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1: ``(NAME.pem, NAME.key)``."""
    _openssl(tmp, "req", "-x509", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN=brainycp-mail test {name}",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost")  # fmt: skip
    return tmp / f"{name}.pem", tmp / f"{name}.key"


def make_client_ca(tmp: Path) -> tuple[Path, Path, Path]:
    """A client CA and a client certificate (CN=prometheus) signed by it, for mTLS:
    ``(ca.pem, client.pem, client.key)``."""
    ca = make_ca(tmp, "ca")
    cert, key = make_signed(tmp, ca, "client", "/CN=prometheus")
    return ca[0], cert, key


def client_context(
    cert: Path | None = None,
    key: Path | None = None,
    max_version: ssl.TLSVersion | None = None,
    trust: tuple[Path, ...] = (SERVER_CERT,),
) -> ssl.SSLContext:
    """A client context that trusts ``trust`` (self-signed server certificates) and shows
    ``cert`` when the server asks for one."""
    context = ssl.create_default_context(cadata="".join(path.read_text() for path in trust))
    if cert is not None:
        context.load_cert_chain(cert, key)
    if max_version is not None:
        context.maximum_version = max_version
    return context
