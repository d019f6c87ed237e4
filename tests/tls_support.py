"""Throwaway TLS material for tests: CAs, client and server certificates (made with
``cryptography``, a dependency already), and client contexts that trust them."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import FIXTURES

TLS = FIXTURES / "tls"
SERVER_CERT = TLS / "cert.pem"
"""A self-signed server certificate for 127.0.0.1 and localhost, with ``key.pem``."""
SERVER_KEY = TLS / "key.pem"


def _issue(
    tmp: Path,
    name: str,
    common_name: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool = False,
    server: bool = False,
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    signer_cert, signer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_cert.subject if signer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(signer_key, hashes.SHA256())
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _load(pair: tuple[Path, Path]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(pair[0].read_bytes())
    key = serialization.load_pem_private_key(pair[1].read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def make_ca(tmp: Path, name: str) -> tuple[Path, Path]:
    """A CA in ``tmp``: ``(NAME.pem, NAME.key)``."""
    return _issue(tmp, name, f"brainycp-mail test {name}", ca=True)


def make_signed(tmp: Path, ca: tuple[Path, Path], name: str, common_name: str) -> tuple[Path, Path]:
    """A client certificate for ``common_name`` signed by ``ca``: ``(NAME.pem, NAME.key)``."""
    return _issue(tmp, name, common_name, _load(ca))


def make_server_cert(tmp: Path, name: str) -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1 and localhost: ``(NAME.pem, NAME.key)``."""
    return _issue(tmp, name, f"brainycp-mail test {name}", server=True)


def make_client_ca(tmp: Path) -> tuple[Path, Path, Path]:
    """A client CA and a client certificate (CN=prometheus) signed by it, for mTLS:
    ``(ca.pem, client.pem, client.key)``."""
    ca = make_ca(tmp, "ca")
    cert, key = make_signed(tmp, ca, "client", "prometheus")
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
