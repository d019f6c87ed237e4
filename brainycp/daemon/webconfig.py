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
sets up uvicorn's TLS from it; :mod:`brainycp.daemon.basicauth` checks its users.
:class:`WebConfigHolder` applies a reloaded file only when the running listener can take
all of it.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import uvicorn
from starlette.types import Scope

from brainycp.config.errors import ConfigError
from brainycp.config.yamlguard import load_yaml_file
from brainycp.daemon.access import AuthFailures, Identity, identity
from brainycp.daemon.basicauth import BasicAuth

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


@dataclass(frozen=True)
class TlsConfig:
    """``tls_server_config``, validated: the files, the client check, the lowest version."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None
    client_auth: ssl.VerifyMode
    min_version: ssl.TLSVersion
    client_cas: frozenset[bytes] = frozenset()
    """The CA certificates (DER) of ``client_ca_file`` as validated."""


@dataclass(frozen=True)
class WebConfig:
    """A validated web config: TLS settings (or None) and bcrypt hashes by user."""

    path: str
    tls: TlsConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def requires_client_cert(self) -> bool:
        """True when the listener refuses a client without a verified certificate."""
        return self.tls is not None and self.tls.client_auth == ssl.CERT_REQUIRED


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
    return parse_web_config(load_yaml_file(path), str(path))


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


class WebConfigHolder:
    """The web config in force and the objects a reload changes in place.

    ``auth`` (the basic-auth users) and ``ssl_context`` (the listener's, set once it
    is loaded) stay the same objects; :meth:`use_web` swaps what they hold, but only
    when the running listener can take the whole file (:meth:`problems`): TLS cannot
    be turned on or off, and a CA the listener trusts cannot be forgotten, without a
    restart. A request is authorized by what was verified on it (:meth:`authorize`).
    ``path`` is the file a reload reads again (``--web.config.file``; None: none), and
    ``failures`` counts the credentials the daemon's guards refuse.
    """

    def __init__(
        self,
        web: WebConfig | None,
        log: logging.Logger,
        *,
        path: str | None = None,
        failures: AuthFailures | None = None,
    ) -> None:
        self.web = web
        self.path = path
        self.failures = failures
        self.auth = BasicAuth(web.users if web else {})
        self.ssl_context: ssl.SSLContext | None = None
        self.listener: uvicorn.Config | None = None
        self._log = log

    def reread(self) -> WebConfig | None:
        """The web config file as it is now (None without one); ConfigError when broken."""
        return load_web_config(self.path) if self.path else None

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
