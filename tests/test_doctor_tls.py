"""The doctor's certificate facts and its fix lines for panel-call reasons, in process.

The certificate is read with ``cryptography``'s x509; the lines the doctor prints from
it are the ones it printed from its own DER reader before (tests/test_doctor.py runs the
doctor as a process against the simulator).
"""

from __future__ import annotations

import datetime
import hashlib
import re
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from brainycp.config.loader import parse_shared
from brainycp.tools.doctor import Doctor, Report, certificate_facts
from tests.panel_support import TLS, Script, always, answer, run, serving

UTC = datetime.UTC


def _fixture_der() -> bytes:
    return ssl.PEM_cert_to_DER_cert((TLS / "cert.pem").read_text())


def _certificate(subject: x509.Name, issuer: x509.Name, not_after: datetime.datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2024, 1, 1, tzinfo=UTC))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def test_the_fixture_certificate_reads_as_the_doctor_always_showed_it() -> None:
    subject, issuer, expires = certificate_facts(_fixture_der())
    assert subject == issuer == "CN=brainycp-mail test panel"
    assert expires == datetime.datetime(2126, 11, 1, 9, 29, 52, tzinfo=UTC)


@pytest.mark.parametrize(
    "not_after",
    [
        datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime.datetime(2050, 1, 1, tzinfo=UTC),
    ],
    ids=["utctime", "generalizedtime"],
)
def test_names_keep_their_order_and_known_keys_and_both_time_forms_read(
    not_after: datetime.datetime,
) -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "RU"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Москва"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Moscow"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hosting, Ltd"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Panels"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ops@panel.example"),
            x509.NameAttribute(NameOID.COMMON_NAME, "panel.example"),
        ]
    )
    issuer = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "42")])
    facts = certificate_facts(_certificate(subject, issuer, not_after))
    assert facts == (
        "C=RU, ST=Москва, L=Moscow, O=Hosting, Ltd, OU=Panels, CN=panel.example",
        "(empty)",
        not_after,
    )


@pytest.mark.parametrize(
    "der",
    [b"", b"garbage" * 10, b"\x30\x03abc", _fixture_der()[:-10]],
    ids=["empty", "garbage", "short", "truncated"],
)
def test_an_unreadable_certificate_is_a_value_error_that_says_so(der: bytes) -> None:
    with pytest.raises(ValueError, match=r"^unreadable certificate: "):
        certificate_facts(der)


def _doctor_against(script: Script, *, tls: bool = False) -> Report:
    async def go() -> Report:
        async with serving(script, tls=tls) as server:
            settings = {"url": server.url, "username": "u", "password": "pw-x"}
            panel = parse_shared({"panels": {"p": settings}}).panels["p"]
            return await Doctor(panel).run()

    return run(go())


def test_the_tls_step_prints_the_certificate_and_the_line_to_pin_it() -> None:
    pin = "sha256:" + ":".join(f"{b:02X}" for b in hashlib.sha256(_fixture_der()).digest())
    report = _doctor_against(always(answer()), tls=True)
    (tls,) = [c for c in report.checks if c.name == "tls"]
    lines = tls.detail.splitlines()
    assert lines[0].startswith("TLSv1.")
    assert lines[1:3] == [
        "subject CN=brainycp-mail test panel",
        "issuer CN=brainycp-mail test panel (self-signed)",
    ]
    assert re.fullmatch(r"expires 2126-11-01 \(in \d+ days\)", lines[3])
    assert lines[4] == f"fingerprint {pin}"
    assert lines[-1] == f'to pin it: tls_fingerprint: "{pin}"'


def test_a_panel_answering_malformed_http_fails_login_as_protocol_with_its_fix() -> None:
    report = _doctor_against(always(b"HELLO THERE\r\n\r\n", close=True))
    (login,) = [c for c in report.checks if c.name == "login"]
    assert login.ok is False
    assert login.detail.startswith("protocol: ") and "status line" in login.detail
    assert "panels.p.url" in login.fix and "HTTP/1.1" in login.fix
