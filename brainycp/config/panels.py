"""The shared panel settings: ``defaults`` and ``panels``, validated into :class:`PanelConfig`.

A panel inherits every key of ``defaults`` and may override it (labels add up); its
password is read here once (``password_file``, ``password_env`` or inline) and kept as a
:class:`pydantic.SecretStr`, so it never shows in a repr, a log line or an exception.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator

from brainycp.config.errors import validation_errors
from brainycp.config.secrets import read_secret_file, unreadable_reason
from brainycp.config.values import (
    ByteSize,
    Duration,
    PositiveDuration,
    Strict,
    check_label_names,
    zone_of,
)

DAEMONS = ("clamav", "spamassassin")
Daemon = Literal["clamav", "spamassassin"]


def _compile_patterns(value: object) -> list[re.Pattern[str]]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of regular expressions")
    compiled = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError("must be a list of regular expressions (strings)")
        try:
            compiled.append(re.compile(item, re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"{item!r} is not a valid regular expression: {exc}") from None
    return compiled


Patterns = Annotated[list[re.Pattern[str]], BeforeValidator(_compile_patterns)]


class StatusPatterns(Strict):
    """Regexes on the clamav/spamassassin ``status`` text; matched case-insensitively.

    ``stopped`` is tried first, because systemd prints ``inactive (dead)`` and a
    naive ``running`` pattern must not win over it.
    """

    running: Patterns = Field(
        default_factory=lambda: _compile_patterns(
            [r"active \(running\)", r"\brunning\b", r"\bis running\b", "работает", "запущен"]
        )
    )
    stopped: Patterns = Field(
        default_factory=lambda: _compile_patterns(
            [
                r"inactive",
                r"\bstopped\b",
                r"\bdead\b",
                r"\bfailed\b",
                r"not running",
                "остановлен",
                "не запущен",
            ]
        )
    )

    def classify(self, text: str) -> Literal["running", "stopped", "unknown"]:
        """``running``, ``stopped`` or ``unknown`` (matched neither) for a status text."""
        if any(p.search(text) for p in self.stopped):
            return "stopped"
        if any(p.search(text) for p in self.running):
            return "running"
        return "unknown"


TlsVerify = bool | Path
CredentialsStyle = Literal["both", "username", "login"]
_FINGERPRINT_SEPARATORS = re.compile(r"[:\s]")


def parse_fingerprint(value: str) -> str:
    """``sha256:AB:CD:...`` (upper case, colons) from any spelling of a SHA-256 fingerprint."""
    text = value.strip()
    algorithm, sep, digits = text.partition(":")
    if sep and algorithm.lower().replace("-", "") in ("sha256", "sha1", "md5", "sha384", "sha512"):
        if algorithm.lower().replace("-", "") != "sha256":
            raise ValueError(f"only sha256 fingerprints are supported, not {algorithm}")
        text = digits
    hexdigits = _FINGERPRINT_SEPARATORS.sub("", text)
    if not re.fullmatch(r"[0-9A-Fa-f]*", hexdigits):
        raise ValueError(
            "must be hex digits, e.g. sha256:AB:CD:... (brainycp-mail-doctor prints the line)"
        )
    if len(hexdigits) != 64:
        raise ValueError(
            f"a SHA-256 fingerprint has 64 hex digits, this one has {len(hexdigits)}"
            " (brainycp-mail-doctor prints the line to paste)"
        )
    upper = hexdigits.upper()
    return "sha256:" + ":".join(upper[i : i + 2] for i in range(0, 64, 2))


def _all_daemons() -> list[Daemon]:
    return ["clamav", "spamassassin"]


class _PanelSettings(Strict):
    """Keys that a panel may set and that ``defaults`` may give to every panel."""

    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    password: SecretStr | None = None
    tls_verify: TlsVerify = True
    tls_fingerprint: str | None = None
    credentials_style: CredentialsStyle = "both"
    timeout: PositiveDuration = 10.0
    max_response_bytes: ByteSize = 64 * 1024**2
    daemons: list[Daemon] = Field(default_factory=_all_daemons)
    status_patterns: StatusPatterns = Field(default_factory=StatusPatterns)
    interval: Duration | None = None
    list_interval: Duration | None = None
    timezone: str = "UTC"
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        check_label_names(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        zone_of(value)
        return value

    @field_validator("tls_verify", mode="before")
    @classmethod
    def _tls_verify(cls, value: object) -> object:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip():
            path = Path(value)
            if not path.is_file():
                raise ValueError(f"CA bundle {value!r} is not a readable file")
            return path
        raise ValueError("must be true, false, or the path of a CA bundle")

    @field_validator("tls_fingerprint", mode="before")
    @classmethod
    def _tls_fingerprint(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError('must be a string like "sha256:AB:CD:..."')
        return parse_fingerprint(value)

    @field_validator("daemons")
    @classmethod
    def _daemons(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists a daemon twice")
        return value


class _PanelInput(_PanelSettings):
    url: str

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if any(char.isspace() or ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in value):
            # A CR/LF would otherwise reach the HTTP request line (header injection).
            raise ValueError("must not contain spaces or control characters (CR, LF, tab...)")
        parts = urlsplit(value)
        if not parts.hostname:
            raise ValueError("has no host")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0 or (port is None and parts.netloc.endswith(":")):
            raise ValueError("has an invalid port (must be 1 to 65535)")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use username and password_file")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query string or fragment")
        return value


@dataclass(frozen=True)
class PanelConfig:
    """One panel, with defaults applied and its password read."""

    name: str
    url: str
    """The API endpoint, ``/api/api.php`` appended when the configured URL had no path."""
    username: str
    password: SecretStr
    tls_verify: bool | str
    timeout: float
    max_response_bytes: int
    daemons: tuple[str, ...]
    status_patterns: StatusPatterns
    interval: float | None
    list_interval: float | None
    timezone: str = "UTC"
    """The panel's clock zone: Postfix ``mailq`` prints arrival times in it, without a zone."""
    credentials_style: CredentialsStyle = "both"
    """Which credential fields go in each call: both pairs, ``username``/``password`` only,
    or ``login``/``pass`` only."""
    tls_fingerprint: str | None = None
    """``sha256:AB:CD:...``: accept exactly the certificate with this SHA-256, nothing else."""
    labels: tuple[tuple[str, str], ...] = ()
    """Labels of the panel (``defaults`` then its own), sorted by name."""
    zone: ZoneInfo | None = field(init=False, repr=False, compare=False)
    """The zone to read Postfix times in; None for UTC (the parser's fast path). Resolved
    once, with the config: a poll opens no tz file (at the file-descriptor limit, one
    could not be opened, and the poll failed as ``internal``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", zone_of(self.timezone))

    @property
    def tls_fingerprint_bytes(self) -> bytes | None:
        """The pinned SHA-256 digest, or None when the panel is not pinned."""
        if self.tls_fingerprint is None:
            return None
        return bytes.fromhex(self.tls_fingerprint.removeprefix("sha256:").replace(":", ""))

    def __repr__(self) -> str:
        return f"PanelConfig(name={self.name!r}, url={self.url!r}, username={self.username!r})"


def api_url(url: str) -> str:
    """The panel's API endpoint: ``/api/api.php`` is appended unless the URL has a path."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return url.rstrip("/") + "/api/api.php"
    return url


_PANEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_PASSWORD_KEYS = ("password_file", "password_env", "password")


def _resolve_password(
    name: str, settings: _PanelSettings, source_prefix: str, errors: list[str], warnings: list[str]
) -> SecretStr | None:
    given = [k for k in _PASSWORD_KEYS if getattr(settings, k) is not None]
    if not given:
        errors.append(f"panels.{name}: no password; set password_file, password_env or password")
        return None
    if len(given) > 1:
        errors.append(f"{source_prefix}: set only one of {', '.join(given)}")
        return None
    key = given[0]
    try:
        if key == "password_file":
            assert settings.password_file is not None
            return SecretStr(
                read_secret_file(settings.password_file, f"{source_prefix}.{key}", warnings)
            )
        if key == "password_env":
            var = settings.password_env
            assert var is not None
            if not os.environ.get(var):
                raise ValueError(f"environment variable {var} is not set or empty")
            return SecretStr(os.environ[var])
    except (OSError, ValueError) as exc:
        reason = unreadable_reason(exc)
        errors.append(f"{source_prefix}.{key}: cannot read the password: {reason}")
        return None
    warnings.append(
        f"{source_prefix}.password: the password is inline in the config file; "
        "prefer password_file or password_env"
    )
    return settings.password


def build_panels(
    raw_defaults: object,
    raw_panels: object,
    errors: list[str],
    warnings: list[str],
    panel_errors: dict[str, list[str]] | None = None,
) -> dict[str, PanelConfig]:
    """The panels that validate. A panel's own problems go to ``errors``, or, when
    ``panel_errors`` is given, to ``panel_errors[name]`` (every panel gets an entry)."""
    if raw_defaults is None:
        raw_defaults = {}
    if not isinstance(raw_defaults, dict):
        errors.append("defaults: must be a mapping of keys every panel inherits")
        raw_defaults = {}
    try:
        _PanelSettings.model_validate(raw_defaults)
    except ValidationError as exc:
        errors.extend(validation_errors("defaults", exc))
        return {}
    if raw_panels is None:
        raw_panels = {}
    if not isinstance(raw_panels, dict):
        errors.append("panels: must be a mapping of panel name to its settings")
        return {}
    panels: dict[str, PanelConfig] = {}
    for key, raw in raw_panels.items():
        name = str(key)
        own: list[str] = []
        panel = _build_panel(name, raw, raw_defaults, own, warnings)
        if panel_errors is not None:
            panel_errors[name] = own
        else:
            errors.extend(own)
        if panel is not None:
            panels[name] = panel
    return panels


def _build_panel(
    name: str, raw: object, raw_defaults: dict[Any, Any], errors: list[str], warnings: list[str]
) -> PanelConfig | None:
    prefix = f"panels.{name}"
    if not _PANEL_NAME.match(name):
        errors.append(f"{prefix}: a panel name may hold letters, digits, '_', '-' and '.'")
        return None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"{prefix}: must be a mapping with at least url")
        return None
    merged = dict(raw_defaults)
    if any(k in raw for k in _PASSWORD_KEYS):
        for k in _PASSWORD_KEYS:
            merged.pop(k, None)
    merged.update(raw)
    # Labels add up: a panel's own labels extend (and override) those of defaults.
    default_labels, own_labels = raw_defaults.get("labels"), raw.get("labels")
    if isinstance(default_labels, dict) and isinstance(own_labels, dict):
        merged["labels"] = {**default_labels, **own_labels}
    try:
        panel = _PanelInput.model_validate(merged)
    except ValidationError as exc:
        errors.extend(validation_errors(prefix, exc))
        return None
    source = prefix if any(k in raw for k in _PASSWORD_KEYS) else "defaults"
    password = _resolve_password(name, panel, source, errors, warnings)
    if panel.username is None:
        errors.append(f"{prefix}.username: is required (here or under defaults)")
        return None
    if password is None:
        return None
    tls: bool | str = (
        panel.tls_verify if isinstance(panel.tls_verify, bool) else str(panel.tls_verify)
    )
    https = panel.url.startswith("https://")
    if panel.tls_fingerprint is not None and not https:
        errors.append(
            f"{prefix}.tls_fingerprint: the url is http://, there is no certificate to pin;"
            " use https:// (or tls_fingerprint: null for this panel)"
        )
        return None
    if tls is False and https and panel.tls_fingerprint is None:
        warnings.append(
            f"{prefix}.tls_verify: false: the panel's certificate is not checked, so"
            " anyone on the path can read the password; pin it with tls_fingerprint"
            " (brainycp-mail-doctor prints the line)"
        )
    return PanelConfig(
        **{
            **panel.values_for(PanelConfig),
            "name": name,
            "url": api_url(panel.url),
            "username": panel.username,
            "password": password,
            "tls_verify": tls,
            "daemons": tuple(panel.daemons),
            "labels": tuple(sorted(panel.labels.items())),
        }
    )
