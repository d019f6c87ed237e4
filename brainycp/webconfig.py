"""``--web.config.file``: TLS and basic auth for both daemons, in the exporter-toolkit format.

The file is the one every Prometheus Go exporter reads::

    tls_server_config:
      cert_file: /etc/brainycp-mail/tls/server.crt
      key_file: /etc/brainycp-mail/tls/server.key
      client_ca_file: /etc/brainycp-mail/tls/clients-ca.crt   # optional
      client_auth_type: RequireAndVerifyClientCert              # optional
      min_version: TLS12                                        # optional
    basic_auth_users:
      prometheus: $2b$10$...   # bcrypt hash

:func:`load_web_config` validates it into a :class:`WebConfig`; :func:`apply_tls`
sets up uvicorn's TLS from it; :class:`BasicAuthMiddleware` guards every path but
the ones a daemon leaves open and records the user it checked (:mod:`brainycp.access`).
A bcrypt check costs ~0.1-0.3 s of CPU, so a successful (user, password) pair is
remembered by a SHA-256 digest, as exporter-toolkit does, and checks run in a worker
thread, at most two at a time. :class:`WebConfigHolder` applies a reloaded file only
when the running listener can take all of it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import ssl
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from brainycp.access import BASIC_AUTH, AuthFailures, Identity, identity, remember
from brainycp.config.errors import ConfigError
from brainycp.config.yamlguard import load_yaml, read_config_text

CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode | None] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    # Go can ask for a certificate without verifying it; Python's ssl module cannot.
    "RequestClientCert": None,
    "RequireAnyClientCert": None,
}
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_TOP_KEYS = ("tls_server_config", "basic_auth_users")
_TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version")
MAX_CACHED = 1024
MAX_PASSWORD_BYTES = 72
"""bcrypt hashes only 72 bytes; bcrypt 5 raises above that."""


@dataclass(frozen=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None
    client_auth: ssl.VerifyMode
    min_version: ssl.TLSVersion
    client_cas: frozenset[bytes] = frozenset()
    """The CA certificates (DER) of ``client_ca_file`` as validated."""

    @property
    def verifies_clients(self) -> bool:
        """True when every request comes with a client certificate signed by the CA."""
        return self.client_auth == ssl.CERT_REQUIRED


@dataclass(frozen=True)
class WebConfig:
    """A validated web config: TLS settings (or None) and bcrypt hashes by user."""

    path: str
    tls: TlsConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)


def _readable(path: object, key: str, errors: list[str]) -> Path | None:
    if not isinstance(path, str) or not path:
        errors.append(f"{key}: must be the path of a file")
        return None
    if not os.access(path, os.R_OK) or not Path(path).is_file():
        errors.append(f"{key}: {path} is not a readable file")
        return None
    return Path(path)


def _tls(raw: object, errors: list[str]) -> TlsConfig | None:
    if not isinstance(raw, dict):
        errors.append("tls_server_config: must be a mapping with cert_file and key_file")
        return None
    for key in raw:
        if key not in _TLS_KEYS:
            errors.append(
                f"tls_server_config.{key}: unknown or unsupported key (supported: "
                f"{', '.join(_TLS_KEYS)})"
            )
    for key in ("cert_file", "key_file"):
        if key not in raw:
            errors.append(f"tls_server_config.{key}: is required")
    cert = _readable(raw.get("cert_file"), "tls_server_config.cert_file", errors)
    key_file = _readable(raw.get("key_file"), "tls_server_config.key_file", errors)
    ca = None
    if raw.get("client_ca_file") is not None:
        ca = _readable(raw["client_ca_file"], "tls_server_config.client_ca_file", errors)
    auth_name = raw.get("client_auth_type", "NoClientCert" if ca is None else None)
    if auth_name is None:
        # exporter-toolkit's default with a CA is RequireAndVerifyClientCert.
        auth_name = "RequireAndVerifyClientCert"
    client_auth = CLIENT_AUTH_TYPES.get(str(auth_name), ssl.CERT_NONE)
    if auth_name not in CLIENT_AUTH_TYPES:
        errors.append(
            f"tls_server_config.client_auth_type: {auth_name!r} is not one of "
            f"{', '.join(CLIENT_AUTH_TYPES)}"
        )
    elif client_auth is None:
        errors.append(
            f"tls_server_config.client_auth_type: {auth_name} (a certificate that is not"
            " verified) is not supported here; use VerifyClientCertIfGiven or"
            " RequireAndVerifyClientCert with client_ca_file"
        )
    elif client_auth != ssl.CERT_NONE and "client_ca_file" not in raw:
        errors.append(
            f"tls_server_config.client_ca_file: client_auth_type {auth_name} needs the CA"
            " that signs the client certificates"
        )
    version = raw.get("min_version", "TLS12")
    if version not in TLS_VERSIONS:
        errors.append(f"tls_server_config.min_version: {version!r} must be TLS12 or TLS13")
    if cert is None or key_file is None or client_auth is None or version not in TLS_VERSIONS:
        return None
    try:
        # A bare server context: no system CAs, so get_ca_certs() lists the file's only.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key_file)
        if ca is not None:
            context.load_verify_locations(ca)
    except (ssl.SSLError, OSError) as exc:
        errors.append(f"tls_server_config: cannot load the certificate, key or CA: {exc}")
        return None
    cas = frozenset(bytes(der) for der in context.get_ca_certs(binary_form=True))
    if ca is not None and not cas:
        errors.append(f"tls_server_config.client_ca_file: {ca} holds no CA certificate")
        return None
    return TlsConfig(cert, key_file, ca, client_auth, TLS_VERSIONS[version], cas)


def _users(raw: object, errors: list[str]) -> dict[str, bytes]:
    if not isinstance(raw, dict):
        errors.append("basic_auth_users: must be a mapping of user name to bcrypt hash")
        return {}
    users: dict[str, bytes] = {}
    for user, hashed in raw.items():
        key = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user or ":" in user:
            errors.append(f"{key}: a user name must be a non-empty string without ':'")
            continue
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            errors.append(
                f"{key}: must be a bcrypt hash ($2b$...); make one with python3 -c 'import"
                ' bcrypt; print(bcrypt.hashpw(b"PASSWORD", bcrypt.gensalt()).decode())\''
            )
            continue
        try:
            bcrypt.checkpw(b"", hashed.encode())
        except ValueError:
            errors.append(f"{key}: is not a valid bcrypt hash")
            continue
        users[user] = hashed.encode()
    return users


def parse_web_config(data: Any, path: str = "web config") -> WebConfig:
    """Validate a loaded web config document; :class:`ConfigError` lists every problem."""
    errors: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: must be a mapping with tls_server_config, basic_auth_users"])
    for key in data:
        if key not in _TOP_KEYS:
            errors.append(f"{key}: unknown or unsupported key (supported: {', '.join(_TOP_KEYS)})")
    tls = _tls(data["tls_server_config"], errors) if data.get("tls_server_config") else None
    users = _users(data["basic_auth_users"], errors) if data.get("basic_auth_users") else {}
    if errors:
        raise ConfigError([f"{path}: {e}" for e in errors])
    return WebConfig(path=path, tls=tls, users=users)


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and validate the web config file at ``path``."""
    return parse_web_config(load_yaml(read_config_text(path), str(path)), str(path))


# --------------------------------------------------------------------------- TLS


def uvicorn_tls_kwargs(web: WebConfig | None) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``; finish with :func:`apply_tls` after ``load()``."""
    if web is None or web.tls is None:
        return {}
    tls = web.tls
    return {
        "ssl_certfile": str(tls.cert_file),
        "ssl_keyfile": str(tls.key_file),
        "ssl_cert_reqs": int(tls.client_auth),
        "ssl_ca_certs": str(tls.client_ca_file) if tls.client_ca_file else None,
    }


def apply_tls(context: ssl.SSLContext | None, web: WebConfig | None) -> None:
    """Set what uvicorn's arguments cannot (the minimum version) on its loaded context.

    Called again on reload: certificates and the client CA are re-read into the same
    context, so new connections use them while the old ones finish.
    """
    if context is None or web is None or web.tls is None:
        return
    tls = web.tls
    context.minimum_version = tls.min_version
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_cas:
        # The certificates validated with the file, so the listener trusts what was checked.
        context.load_verify_locations(cadata=b"".join(sorted(tls.client_cas)))
    context.verify_mode = tls.client_auth


# --------------------------------------------------------------------------- basic auth


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def bcrypt_cost(hashed: bytes) -> int:
    """The cost factor of a bcrypt hash (``$2b$10$...`` is 10: 2**10 rounds)."""
    return int(hashed.split(b"$")[2])


_STAND_INS: dict[int, bytes] = {}


def stand_in_hash(cost: int) -> bytes:
    """A hash of a random password at ``cost``, checked for an unknown user so that the
    refusal takes as long as a known user's. Made once per cost (~70 ms at cost 10)."""
    if cost not in _STAND_INS:
        _STAND_INS[cost] = bcrypt.hashpw(os.urandom(18).hex().encode(), bcrypt.gensalt(cost))
    return _STAND_INS[cost]


@dataclass(frozen=True)
class Checked:
    """The outcome of a basic-auth check: the user name sent (if any), whether it passed,
    and why it did not (for the log; never the password)."""

    user: str | None
    ok: bool
    why: str = ""


class BasicAuth:
    """Checks credentials against the web config's users; remembers the good ones.

    An unknown user is checked against :func:`stand_in_hash` at the highest cost among
    the users (rebuilt at reload), so its refusal costs what a known user's does.
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._checks = asyncio.Semaphore(2)
        self.replace(users)

    def replace(self, users: Mapping[str, bytes]) -> None:
        """New users (reload); remembered checks are forgotten."""
        self.users = dict(users)
        self._good: set[bytes] = set()
        costs = [bcrypt_cost(hashed) for hashed in self.users.values()]
        self.stand_in = stand_in_hash(max(costs)) if costs else b""

    def _digest(self, user: str, password: str, hashed: bytes) -> bytes:
        return hashlib.sha256(
            b"\0".join((user.encode(), password.encode(), hashed)), usedforsecurity=True
        ).digest()

    async def verify(self, header: str | None) -> Checked:
        """Whether ``header`` carries a configured user and its password."""
        creds = basic_credentials(header)
        if creds is None:
            return Checked(None, False, "no basic credentials" if header else "none sent")
        user, password = creds
        hashed = self.users.get(user)
        against = hashed or self.stand_in
        digest = self._digest(user, password, against)
        if hashed is not None and digest in self._good:
            return Checked(user, True)
        if not against:
            return Checked(user, False, "no users configured")
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            return Checked(user, False, f"password over {MAX_PASSWORD_BYTES} bytes")
        async with self._checks:
            # CPU-bound (~0.1-0.3 s): a worker thread keeps the event loop answering.
            ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), against)
        if hashed is None:
            return Checked(user, False, "unknown user")
        if not ok or self.users.get(user) != hashed:
            return Checked(user, False, "wrong password")
        if len(self._good) >= MAX_CACHED:
            self._good.clear()
        self._good.add(digest)
        return Checked(user, True)

    async def check(self, header: str | None) -> bool:
        """True when ``header`` carries a configured user and its password."""
        return (await self.verify(header)).ok


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """Answer a request with a small JSON body (from a plain ASGI middleware)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BasicAuthMiddleware:
    """401 for every HTTP request without valid basic auth, except on ``open_paths``.

    A request that passes carries its user in the scope (:func:`brainycp.access.identity`);
    a refused one that sent credentials is counted on ``failures``.
    """

    def __init__(
        self,
        app: ASGIApp,
        auth: BasicAuth,
        *,
        realm: str,
        open_paths: Collection[str] = (),
        failures: AuthFailures | None = None,
    ) -> None:
        self.app = app
        self.auth = auth
        self.realm = realm
        self.open_paths = frozenset(open_paths)
        self.failures = failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.auth.users or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        checked = await self.auth.verify(header)
        if checked.ok and checked.user is not None:
            remember(scope, Identity(checked.user, BASIC_AUTH))
            await self.app(scope, receive, send)
            return
        if header is not None and self.failures is not None:
            self.failures.record(scope, checked.user, checked.why)
        challenge = f'Basic realm="{self.realm}", charset="UTF-8"'.encode()
        await send_json(
            send,
            401,
            b'{"error": "missing or wrong credentials (see --web.config.file)"}',
            [(b"www-authenticate", challenge)],
        )


class WebConfigHolder:
    """The web config in force and the objects a reload changes in place.

    ``auth`` (the basic-auth users) and ``ssl_context`` (the listener's, set once it
    is loaded) stay the same objects; :meth:`use_web` swaps what they hold, but only
    when the running listener can take the whole file (:meth:`problems`): TLS cannot
    be turned on or off, and a CA the listener trusts cannot be forgotten, without a
    restart. A request is authorized by what was verified on it (:meth:`authorize`).
    """

    def __init__(self, web: WebConfig | None, log: logging.Logger) -> None:
        self.web = web
        self.auth = BasicAuth(web.users if web else {})
        self.ssl_context: ssl.SSLContext | None = None
        self.listener: uvicorn.Config | None = None
        self._log = log

    async def authorize(self, scope: Scope) -> Identity | None:
        """Who sent the request, as this daemon verified it (a web-config user, a client
        certificate verified on this connection); None when nobody is known."""
        return identity(scope)

    def problems(self, web: WebConfig | None) -> list[str]:
        """Why the running listener cannot take ``web`` as a whole ([] when it can)."""
        serving_tls = self.ssl_context is not None
        tls = web.tls if web is not None else None
        if tls is not None and not serving_tls:
            return [
                "tls_server_config: the listener serves plain HTTP; turning TLS on needs a restart"
            ]
        if tls is None and serving_tls:
            return ["tls_server_config: the listener serves TLS; turning it off needs a restart"]
        if tls is not None and self.ssl_context is not None and tls.client_auth != ssl.CERT_NONE:
            trusted = {bytes(der) for der in self.ssl_context.get_ca_certs(binary_form=True)}
            dropped = len(trusted - tls.client_cas)
            if dropped:
                return [
                    f"tls_server_config.client_ca_file: the listener trusts {dropped} client"
                    " CA certificate(s) this file does not list, and cannot forget a CA"
                    " while it runs; restart to drop one"
                ]
        return []

    def use_web(self, web: WebConfig | None) -> list[str]:
        """Apply ``web``, all of it, or nothing and the reasons why (see :meth:`problems`)."""
        problems = self.problems(web)
        if problems:
            return problems
        try:
            apply_tls(self.ssl_context, web)
        except (ssl.SSLError, OSError) as exc:
            # A file changed since it was validated: new connections keep the old files.
            try:
                apply_tls(self.ssl_context, self.web)
            except (ssl.SSLError, OSError) as again:
                self._log.error(
                    "web config: the previous certificate cannot be reloaded: %s", again
                )
            return [f"tls_server_config: cannot load the certificate, key or CA: {exc}"]
        self.web = web
        self.auth.replace(web.users if web else {})
        return []

    def load_listener(self, uconfig: uvicorn.Config) -> None:
        """Give ``uconfig`` this web config's TLS, load it, and keep its SSL context so a
        reload can swap certificates in place."""
        for key, value in uvicorn_tls_kwargs(self.web).items():
            setattr(uconfig, key, value)
        uconfig.load()
        apply_tls(uconfig.ssl, self.web)
        self.ssl_context = uconfig.ssl
        self.listener = uconfig
