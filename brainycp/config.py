"""Load and validate the one YAML config file that both daemons read.

Every problem is reported as ``key.path: what is wrong``; :func:`load_config`
collects all of them and raises one :class:`ConfigError`. Panel secrets are
read once here and kept as :class:`pydantic.SecretStr`, so they never show in
a repr, a log line or an exception.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import re2  # type: ignore[import-untyped]
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from brainycp.queue.identity import is_cut_label

DAEMONS = ("clamav", "spamassassin")
Daemon = Literal["clamav", "spamassassin"]

# --------------------------------------------------------------------------- values

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: object) -> float:
    """Seconds from ``30s``, ``5m``, ``1h30m``, ``1d``, or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 30s, 5m, 1h, 1d or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for part in _DURATION_PART.finditer(text):
                if part.start() != pos:
                    break
                seconds += float(part.group(1)) * _DURATION_UNITS[part.group(2)]
                pos = part.end()
            if pos != len(text) or pos == 0:
                raise ValueError(
                    f"{value!r} is not a duration (use 30s, 5m, 1h, 1d or a number of seconds)"
                ) from None
    else:
        raise ValueError("must be a duration like 30s, 5m, 1h, 1d or a number of seconds")
    if not math.isfinite(seconds):
        raise ValueError("must be a finite duration, not NaN or infinity")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


MAX_SIZE_BYTES = 1024**4
"""The largest size a config may give (1 TiB): anything above is a typo, not a limit."""
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(value: object) -> int:
    """Bytes from ``64MiB``, ``10MB``, ``512KiB`` or a plain number of bytes."""
    if isinstance(value, bool):
        raise ValueError("must be a size like 64MiB, 10MB or a number of bytes")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and len(value) <= 64 and (match := _SIZE.match(value)):
        unit = (match.group(2) or "B").lower()
        number = float(match.group(1)) * _SIZE_UNITS[unit]
        # float() of 400 digits is inf, and int(inf) raises OverflowError, not ValueError.
        size = int(number) if number < MAX_SIZE_BYTES * 2 else MAX_SIZE_BYTES + 1
    else:
        raise ValueError(f"{value!r} is not a size (use 64MiB, 10MB or a number of bytes)")
    if size <= 0:
        raise ValueError("must be greater than 0")
    if size > MAX_SIZE_BYTES:
        raise ValueError(f"must be at most {MAX_SIZE_BYTES} bytes (1 TiB)")
    return size


def parse_listen(value: object) -> str:
    """Validate ``HOST:PORT`` (``[::1]:9863`` for IPv6)."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9863")
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"port {port!r} must be a number from 1 to 65535")
    if not host:
        raise ValueError("must name a host, e.g. 0.0.0.0:9863")
    return value


def split_listen(listen: str) -> tuple[str, int]:
    """``("0.0.0.0", 9863)`` from ``"0.0.0.0:9863"``; brackets are removed from IPv6 hosts."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


Duration = Annotated[float, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_size)]
Listen = Annotated[str, BeforeValidator(parse_listen)]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Names a panel label must not take. In multi-target mode /sd puts a panel's labels on
# every series of its target, where job or instance would replace Prometheus's own (the
# alerts match on them) and le would corrupt the age histogram's buckets.
_RESERVED_LABELS = {
    "job": "set by Prometheus on every series it scrapes",
    "instance": "set by Prometheus on every series it scrapes",
    "le": "reserved for histogram buckets",
    "panel": "set by the exporter (the panel's name)",
}


def _label_name_problem(name: str) -> str | None:
    if not _LABEL_NAME.fullmatch(name):
        return "not a Prometheus label name: it must match [a-zA-Z_][a-zA-Z0-9_]*"
    if name.startswith("__"):
        return "names starting with __ are reserved for Prometheus"
    return _RESERVED_LABELS.get(name)


def check_label_names(value: Mapping[str, str]) -> Mapping[str, str]:
    """Label names by Prometheus's rules, not ``__``-prefixed, not job, instance, le or panel.

    One problem is reported under the label's own key (``panels.web01.labels.job: ...``).
    """
    problems = [(name, why) for name in value if (why := _label_name_problem(name))]
    if len(problems) == 1 and problems[0][0].isidentifier():
        raise ValueError(f"{problems[0][0]}: {problems[0][1]}")
    if problems:
        raise ValueError("; ".join(f"label name {name!r}: {why}" for name, why in problems))
    for label, text in value.items():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"label {label}: the value is not valid UTF-8") from None
    return value


def parse_shard(value: object) -> tuple[int, int] | None:
    """``"INDEX/COUNT"`` (0-based, INDEX < COUNT) as ``(index, count)``; None stays None."""
    if value is None:
        return None
    if isinstance(value, tuple | list) and len(value) == 2:
        value = f"{value[0]}/{value[1]}"
    if not isinstance(value, str):
        raise ValueError('must be "INDEX/COUNT", e.g. "0/4"')
    m = re.fullmatch(r"\s*([0-9]{1,6})\s*/\s*([0-9]{1,6})\s*", value)
    if m is None:
        raise ValueError(f'{value!r} is not "INDEX/COUNT", e.g. "0/4"')
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or index >= count:
        raise ValueError(f"{value!r}: COUNT must be at least 1 and INDEX below COUNT (0-based)")
    return index, count


Shard = Annotated[tuple[int, int] | None, BeforeValidator(parse_shard)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


# --------------------------------------------------------------------------- panels


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


class StatusPatterns(_Strict):
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


def zone_of(name: str) -> ZoneInfo | None:
    """The time zone called ``name``, None for UTC (the queue parser's fast path).

    Raises ValueError, naming the zone, when the system's tz database has no such zone.
    """
    try:
        zone = ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Moscow or UTC"
            " (from the system's tzdata package)"
        ) from None
    return None if name == "UTC" else zone


def _all_daemons() -> list[Daemon]:
    return ["clamav", "spamassassin"]


class _PanelSettings(_Strict):
    """Keys that a panel may set and that ``defaults`` may give to every panel."""

    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    password: SecretStr | None = None
    tls_verify: TlsVerify = True
    tls_fingerprint: str | None = None
    credentials_style: CredentialsStyle = "both"
    timeout: Duration = 10.0
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

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

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

    @property
    def tls_fingerprint_bytes(self) -> bytes | None:
        """The pinned SHA-256 digest, or None when the panel is not pinned."""
        if self.tls_fingerprint is None:
            return None
        return bytes.fromhex(self.tls_fingerprint.removeprefix("sha256:").replace(":", ""))

    @property
    def zone(self) -> ZoneInfo | None:
        """The zone to read Postfix times in; None for UTC (the parser's fast path)."""
        return zone_of(self.timezone)

    def __repr__(self) -> str:
        return f"PanelConfig(name={self.name!r}, url={self.url!r}, username={self.username!r})"


def api_url(url: str) -> str:
    """The panel's API endpoint: ``/api/api.php`` is appended unless the URL has a path."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return url.rstrip("/") + "/api/api.php"
    return url


# --------------------------------------------------------------------------- exporter


class ExporterConfig(_Strict):
    listen: Listen = "0.0.0.0:9863"
    interval: Duration = 60.0
    list_interval: Duration = 300.0
    max_concurrency: int = Field(default=32, ge=1, le=10000)
    max_staleness: Duration = 600.0
    top_senders: int = Field(default=0, ge=0, le=1000)
    top_recipient_domains: int = Field(default=0, ge=0, le=1000)
    shard: Shard = None
    """``(index, count)``: serve only the panels whose name hashes to ``index``."""
    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    """Concurrent HTTP connections; a request beyond them gets a 503."""
    grafana_url: str = ""
    """Grafana's base URL: the fleet view (``/``) links to the shipped dashboards there."""

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 1:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("grafana_url")
    @classmethod
    def _grafana_url(cls, value: str) -> str:
        if not value:
            return ""
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises on a port that is not a number or out of range)
        except ValueError as exc:
            raise ValueError(f"is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. https://grafana.example.net")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials (the page shows it to every visitor)")
        if parts.query or parts.fragment:
            raise ValueError("must be Grafana's base URL, without ?query or #fragment")
        if any(ord(c) < 0x21 or c in "<>\"'" for c in value):
            raise ValueError("must not hold spaces, quotes, angle brackets or control characters")
        return value.rstrip("/")


# --------------------------------------------------------------------------- remediator

_MATCHER = re.compile(
    r"""^\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"""
    r"""(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^"\s,{}]*))\s*$"""
)


def _unescape(quoted: str) -> str:
    """Alertmanager's unescaping of a quoted matcher value (``pkg/labels/parse.go``).

    ``\\n`` is a newline, ``\\"`` and ``\\\\`` are the character itself, and any other
    backslash is kept as it is, so ``"\\d+"`` reaches the regex as ``\\d+``.
    """
    out: list[str] = []
    escaped = False
    for char in quoted:
        if escaped:
            escaped = False
            if char == "n":
                out.append("\n")
            elif char in ('"', "\\"):
                out.append(char)
            else:
                out.append("\\" + char)
        elif char == "\\":
            escaped = True
        else:
            out.append(char)
    if escaped:
        out.append("\\")
    return "".join(out)


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # the error goes into the config error, not onto stderr
    return options


_RE2_OPTIONS = _re2_options()


@dataclass(frozen=True)
class Matcher:
    """One Alertmanager-style matcher: ``label="v"``, ``!=``, ``=~``, ``!~`` (regexes anchored).

    Regexes are compiled with RE2 as ``^(?:value)$``, exactly as Alertmanager
    compiles them with Go's ``regexp`` (same syntax, same semantics): ``$`` is the
    end of the text (Python's ``re`` would also match before a trailing newline),
    ``.`` does not match a newline unless ``(?s)``, ``\\d``, ``\\w`` and ``\\b`` are
    ASCII, and lookarounds and backreferences are refused as in Go. Matching takes
    time linear in the label value's length, so no pattern can stall the webhook.
    """

    label: str
    op: str
    value: str
    regex: Any = None
    """The compiled ``re2`` pattern for ``=~`` and ``!~``."""

    @classmethod
    def parse(cls, text: str) -> Matcher:
        match = _MATCHER.match(text)
        if not match:
            raise ValueError(
                f'{text!r} is not a matcher; use label="value", !=, =~ or !~, e.g. '
                'alertname="BrainyCPMailFrozenMessages"'
            )
        if match.group("quoted") is not None:
            value = _unescape(match.group("quoted"))
        else:
            value = match.group("bare")
        regex = None
        if match.group("op") in ("=~", "!~"):
            try:
                regex = re2.compile(f"^(?:{value})$", _RE2_OPTIONS)
            except re2.error as exc:
                reason = exc.args[0] if exc.args else exc
                if isinstance(reason, bytes):
                    reason = reason.decode("utf-8", "replace")
                raise ValueError(
                    f"{text!r}: bad regular expression (Go RE2 syntax, as Alertmanager): {reason}"
                ) from None
        return cls(match.group("label"), match.group("op"), value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Alertmanager semantics: a missing label is the empty string."""
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        found = self.regex.search(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'


def _parse_matchers(value: object) -> list[Matcher]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of matchers")
    return [m if isinstance(m, Matcher) else Matcher.parse(str(m)) for m in value]


Matchers = Annotated[list[Matcher], BeforeValidator(_parse_matchers)]

Action = Literal[
    "delete_frozen",
    "delete_all",
    "start_service",
    "stop_service",
    "restart_service",
    "delete_messages",
    "reship_messages",
]
SERVICE_ACTIONS = ("start_service", "stop_service", "restart_service")
MESSAGE_ACTIONS = ("delete_messages", "reship_messages")


# A selection value taken from an alert label: the whole value must be this template.
LABEL_TEMPLATE = re.compile(r"^\{\{\s*labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}$")
TEMPLATE_FIELDS = ("sender", "sender_domain", "recipient_domain")
_ADDRESS = re.compile(r"^[^\s<>@]+@[^\s<>@]+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?$")


class Selection(_Strict):
    """Which messages a ``delete_messages``/``reship_messages`` rule acts on (all must hold).

    ``sender``, ``sender_domain`` and ``recipient_domain`` may be exactly
    ``"{{ labels.NAME }}"``: the value is then taken from the alert's label at
    receipt (see :meth:`resolve`).
    """

    sender: str | None = None
    sender_domain: str | None = None
    recipient_domain: str | None = None
    bounce: bool | None = None
    frozen: bool | None = None
    older_than: Duration | None = None
    larger_than: ByteSize | None = None

    @field_validator(*TEMPLATE_FIELDS)
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None and "{{" in value and not LABEL_TEMPLATE.match(value):
            raise ValueError(
                'a label template must be the whole value, exactly "{{ labels.NAME }}"'
            )
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    def is_empty(self) -> bool:
        return all(v is None for v in self.model_dump().values())

    def templates(self) -> dict[str, str]:
        """``{field: label}`` for the fields whose value comes from an alert label."""
        out = {}
        for name in TEMPLATE_FIELDS:
            value = getattr(self, name)
            if value is not None and (match := LABEL_TEMPLATE.match(value)):
                out[name] = match.group(1)
        return out

    def resolve(self, labels: Mapping[str, str]) -> Selection:
        """This selection with every label template replaced by the label's value.

        Raises ValueError naming the label when it is missing, empty, or not a
        plausible address (``sender``) or domain (the domain fields), or a cut label with
        its hash (brainycp.queue.identity): a label value comes from an alert and is matched
        exactly, never as a pattern.
        """
        update: dict[str, str] = {}
        for name, label in self.templates().items():
            value = labels.get(label, "").strip()
            if not value:
                raise ValueError(f"select.{name} needs the alert label {label!r}, which is empty")
            pattern = _ADDRESS if name == "sender" else _DOMAIN
            # A label the exporter cut (a value over 256 characters) carries a hash of the
            # whole value, which selects exactly that sender or domain.
            if len(value) > 320 or not (
                pattern.match(value.strip("<>") if name == "sender" else value)
                or is_cut_label(value)
            ):
                what = "an e-mail address" if name == "sender" else "a domain"
                raise ValueError(f"select.{name}: label {label!r} is not {what}")
            update[name] = value
        return self.model_copy(update=update) if update else self


class Rule(_Strict):
    name: str = Field(min_length=1)
    matchers: Matchers
    action: Action
    daemon: Daemon | None = None
    cooldown: Duration = 300.0
    rerun_after: Duration | None = None
    on: list[Literal["firing", "resolved"]] = Field(
        default_factory=lambda: ["firing"]  # type: ignore[arg-type]
    )
    dry_run: bool = False
    allow_destructive: bool = False
    force: bool = False
    select: Selection | None = None
    max_messages: int = Field(default=1000, ge=1)
    limit: Literal["refuse", "first"] = "refuse"
    approval: Literal["none", "required"] = "none"
    max_runs_per_episode: int | None = Field(default=None, ge=1)
    notify: list[str] | None = None
    """Names of ``remediator.notify`` targets; None (key absent) means every target."""

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.action in SERVICE_ACTIONS and self.daemon is None:
            raise ValueError(f"daemon: {self.action} needs daemon: clamav or spamassassin")
        if self.action not in SERVICE_ACTIONS and self.daemon is not None:
            raise ValueError(f"daemon: only service actions take a daemon, not {self.action}")
        if self.action == "delete_all" and not self.allow_destructive:
            raise ValueError(
                "allow_destructive: delete_all empties the whole queue and cannot be undone; "
                "set allow_destructive: true on this rule to allow it"
            )
        if self.force and self.action != "delete_all":
            raise ValueError("force: only delete_all takes force")
        if self.action in MESSAGE_ACTIONS:
            if self.select is None:
                raise ValueError(f"select: {self.action} needs a select block")
            if self.select.is_empty() and not self.allow_destructive:
                raise ValueError(
                    "select: an empty selection matches every queued message; "
                    "name at least one criterion (or set allow_destructive: true)"
                )
        elif self.select is not None:
            raise ValueError("select: only delete_messages and reship_messages take select")
        if not self.on:
            raise ValueError("on: must list firing, resolved or both")
        return self

    @property
    def destructive(self) -> bool:
        """True for actions that remove mail and cannot be undone."""
        return self.action in ("delete_all", "delete_messages")


class RateLimit(_Strict):
    max_actions: int = Field(default=60, ge=1)
    per: Duration = 3600.0


class BasicAuth(_Strict):
    username: str = Field(min_length=1)
    password_file: Path | None = None
    password_env: str | None = None


class AuthInput(_Strict):
    bearer_token_file: Path | None = None
    basic: BasicAuth | None = None


@dataclass(frozen=True)
class WebhookAuth:
    """Resolved webhook credentials; both secrets hidden from repr."""

    bearer_token: SecretStr | None = None
    basic_username: str | None = None
    basic_password: SecretStr | None = None


NotifyOutcome = Literal[
    "succeeded",
    "failed",
    "unverified",
    "interrupted",
    "awaiting_approval",
    "approved",
    "denied",
    "expired",
    "cancelled",
    "dry_run",
    "skipped_nothing_to_do",
    "skipped_rate_limit",
    "skipped_paused",
    "skipped_circuit_open",
    "skipped_exhausted",
    "circuit_open",
    "paused",
    "resumed",
]
NOTIFY_OUTCOMES: tuple[str, ...] = get_args(NotifyOutcome)
DEFAULT_NOTIFY_OUTCOMES = (
    "succeeded",
    "failed",
    "unverified",
    "interrupted",
    "awaiting_approval",
    "skipped_rate_limit",
    "circuit_open",
)


class NotifyTargetInput(_Strict):
    """One place to tell people what the remediator did (``remediator.notify[]``)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    type: Literal["webhook", "slack", "telegram"]
    url: str | None = None
    url_file: Path | None = None
    bearer_token_file: Path | None = None
    bot_token_file: Path | None = None
    chat_id: str | int | None = None
    api_url: str = "https://api.telegram.org"
    outcomes: list[NotifyOutcome] = Field(
        default_factory=lambda: list(DEFAULT_NOTIFY_OUTCOMES)  # type: ignore[arg-type]
    )
    timeout: Duration = 10.0
    retry_for: Duration = 300.0

    @field_validator("url", "api_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        return None if value is None else check_notify_url(value)

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> NotifyTargetInput:
        if self.type == "telegram":
            if self.bot_token_file is None or self.chat_id is None:
                raise ValueError(
                    "bot_token_file: a telegram target needs bot_token_file and chat_id"
                )
            if self.url is not None or self.url_file is not None:
                raise ValueError("url: a telegram target takes api_url, bot_token_file, chat_id")
        else:
            if (self.url is None) == (self.url_file is None):
                raise ValueError(f"url: a {self.type} target needs exactly one of url or url_file")
            if self.bot_token_file is not None or self.chat_id is not None:
                raise ValueError("bot_token_file: only telegram targets take a bot token")
        if self.bearer_token_file is not None and self.type != "webhook":
            raise ValueError("bearer_token_file: only webhook targets take a bearer token")
        return self


def check_notify_url(value: str) -> str:
    """``value`` when it is a URL a notification can be sent to; ValueError saying why not.

    The messages never repeat the URL: a Slack webhook URL is itself a secret.
    """
    if any(not char.isprintable() or char.isspace() for char in value):
        # A tab or newline (often the end of a pasted url_file) never reaches a server.
        raise ValueError("must not contain spaces, tabs, newlines or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "must not carry a user or password (user:password@); "
            "a webhook target takes bearer_token_file"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port (must be 1 to 65535)") from None
    if port == 0 or (port is None and parts.netloc.endswith(":")):
        raise ValueError("has an invalid port (must be 1 to 65535)")
    return value


@dataclass(frozen=True)
class NotifyTarget:
    """A resolved notification target; ``secret_url``/``token`` never logged."""

    name: str
    type: str
    url: SecretStr | None
    """webhook/slack: where to post (a Slack incoming-webhook URL is itself a secret)."""
    bearer_token: SecretStr | None
    bot_token: SecretStr | None
    chat_id: str
    api_url: str
    outcomes: frozenset[str]
    timeout: float
    retry_for: float

    def __repr__(self) -> str:
        return f"NotifyTarget(name={self.name!r}, type={self.type!r})"


class CircuitBreaker(_Strict):
    """Stop acting when actions start on too many panels at once (a fleet-wide storm)."""

    max_panels: int | None = Field(default=None, ge=1)
    share: float | None = Field(default=None, gt=0, le=1)
    window: Duration = 600.0

    @model_validator(mode="after")
    def _one(self) -> CircuitBreaker:
        if (self.max_panels is None) == (self.share is None):
            raise ValueError("max_panels: set exactly one of max_panels or share")
        if self.window <= 0:
            raise ValueError("window: must be greater than 0")
        return self

    def limit(self, configured_panels: int) -> int:
        """How many panels may have actions started within ``window``."""
        if self.max_panels is not None:
            return self.max_panels
        assert self.share is not None
        return max(1, int(self.share * configured_panels))


MANUAL_DEFAULT_ACTIONS: tuple[Action, ...] = (
    "delete_frozen",
    "start_service",
    "stop_service",
    "restart_service",
)


class ManualSettings(_Strict):
    """``POST /actions`` and ``brainycp-mail-remediator run``: what a person may run by hand."""

    actions: list[Action] = Field(default_factory=lambda: list(MANUAL_DEFAULT_ACTIONS))
    allow_destructive: bool = False
    max_messages: int = Field(default=1000, ge=1, le=100000)

    @model_validator(mode="after")
    def _destructive(self) -> ManualSettings:
        risky = [a for a in self.actions if a in ("delete_all", "delete_messages")]
        if risky and not self.allow_destructive:
            raise ValueError(
                f"allow_destructive: {', '.join(risky)} can remove mail for good; set "
                "manual.allow_destructive: true to allow it by hand"
            )
        return self


# libpq connection parameters that carry a secret: never in a URL (logs, ps, errors).
_JOURNAL_URL_SECRETS = frozenset({"password", "sslpassword"})


class _JournalInput(_Strict):
    url: str = Field(min_length=1)
    password_file: Path | None = None
    lease: Duration = 30.0

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(
                "must be a postgresql://user@host:port/database URL "
                "(leave journal out to use the SQLite state_file)"
            )
        if parts.password is not None:
            # Never echo the URL back: it holds the secret.
            raise ValueError(
                "the URL holds a password; put it in journal.password_file (or PGPASSFILE) instead"
            )
        for key, _ in parse_qsl(parts.query, keep_blank_values=True):
            if key.strip().lower() in _JOURNAL_URL_SECRETS:
                raise ValueError(
                    f"the URL's query holds {key.strip()[:40]!r}, a secret that would show in "
                    "logs and ps; keep it out of the URL (the password goes in "
                    "journal.password_file or PGPASSFILE)"
                )
        if not parts.path.strip("/"):
            raise ValueError("name the database: postgresql://user@host:5432/DATABASE")
        return value

    @field_validator("lease")
    @classmethod
    def _lease(cls, value: float) -> float:
        if not 2 <= value <= 3600:
            raise ValueError("must be from 2s to 1h")
        return value


def _journal_shorthand(value: object) -> object:
    return {"url": value} if isinstance(value, str) else value


@dataclass(frozen=True)
class JournalConfig:
    """The shared PostgreSQL journal; the password is hidden from repr."""

    url: str
    """Without a password (the config refuses one in the URL)."""
    password: SecretStr | None = None
    lease: float = 30.0
    """How long a replica's claim on an unfinished action lasts without renewal."""


def _refuse_repeats(
    what: str, names: list[str], check: Callable[[str], None] | None = None
) -> None:
    """ValueError naming the first of ``names`` used twice; ``check`` runs on each name
    first seen, in order, and may refuse it too."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} {name!r} is used twice")
        if check is not None:
            check(name)
        seen.add(name)


def _not_manual_name(name: str) -> None:
    if name.startswith("("):
        raise ValueError(f"rule name {name!r}: '(' starts names of manual actions")


class _RemediatorInput(_Strict):
    listen: Listen = "127.0.0.1:9864"
    auth: AuthInput | None = None
    insecure_no_auth: bool = False
    panel_label: str = "panel"
    dry_run: bool = False
    state_file: Path = Path("/var/lib/brainycp-mail/remediator.sqlite")
    journal: Annotated[_JournalInput | None, BeforeValidator(_journal_shorthand)] = None
    max_concurrent_actions: int = Field(default=4, ge=1, le=256)
    action_timeout: Duration = 120.0
    shutdown_grace: Duration = 30.0
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    journal_retention: Duration = 90 * 86400.0
    rules: list[Rule] = Field(default_factory=list)
    external_url: str | None = None
    approval_timeout: Duration = 3600.0
    notify: list[NotifyTargetInput] = Field(default_factory=list)
    circuit_breaker: CircuitBreaker | None = None
    manual: ManualSettings = Field(default_factory=lambda: ManualSettings())

    @field_validator("external_url")
    @classmethod
    def _external_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @field_validator("approval_timeout")
    @classmethod
    def _approval_timeout(cls, value: float) -> float:
        if value < 1:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("notify")
    @classmethod
    def _unique_targets(cls, targets: list[NotifyTargetInput]) -> list[NotifyTargetInput]:
        _refuse_repeats("target name", [target.name for target in targets])
        return targets

    @field_validator("journal_retention")
    @classmethod
    def _retention(cls, value: float) -> float:
        if 0 < value < 86400:
            raise ValueError("must be at least 1d (or 0 to keep every row)")
        return value

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Rule]) -> list[Rule]:
        _refuse_repeats("rule name", [rule.name for rule in rules], _not_manual_name)
        return rules


@dataclass(frozen=True)
class RemediatorConfig:
    listen: str
    auth: WebhookAuth | None
    """None only when ``insecure_no_auth: true``."""
    panel_label: str
    dry_run: bool
    state_file: Path
    max_concurrent_actions: int
    action_timeout: float
    rate_limit: RateLimit
    rules: tuple[Rule, ...]
    journal_retention: float = 90 * 86400.0
    """Finished journal rows older than this are pruned; 0 keeps every row."""
    shutdown_grace: float = 30.0
    """At SIGTERM, how long running actions may take to finish before they are cut off."""
    external_url: str = ""
    """How people reach this remediator (links in notifications); "" = http://listen."""
    approval_timeout: float = 3600.0
    notify: tuple[NotifyTarget, ...] = ()
    circuit_breaker: CircuitBreaker | None = None
    manual: ManualSettings = field(default_factory=lambda: ManualSettings())
    journal: JournalConfig | None = None
    """None: the SQLite ``state_file`` (one replica); else the shared PostgreSQL journal."""


# --------------------------------------------------------------------------- whole file


class ConfigError(Exception):
    """The config cannot be used; ``errors`` holds one ``key.path: problem`` line each."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Config:
    panels: dict[str, PanelConfig]
    exporter: ExporterConfig
    remediator: RemediatorConfig
    warnings: tuple[str, ...] = ()


_TOP_KEYS = ("defaults", "panels", "exporter", "remediator")
_PANEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_PASSWORD_KEYS = ("password_file", "password_env", "password")


def _loc(prefix: str, loc: Sequence[int | str]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-", "list[", "dict[", "tagged-union")):
            continue
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def _errors(prefix: str, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        msg = str(err["msg"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "is required"
        msg = msg.removeprefix("Value error, ")
        loc = list(err["loc"])
        # A rule's own model_validator names the key at the start of its message.
        if err["type"] == "value_error" and ": " in msg and msg.split(": ", 1)[0].isidentifier():
            key, msg = msg.split(": ", 1)
            loc.append(key)
        out.append(f"{_loc(prefix, loc)}: {msg}")
    return out


def _read_secret_file(path: Path, key: str = "", warnings: list[str] | None = None) -> str:
    """The secret in ``path`` (one trailing newline dropped).

    Adds a warning, naming the file and its mode, when group or others may read it.
    """
    with open(path, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        data = handle.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"{str(path)!r} is over {MAX_SECRET_BYTES} bytes; not a secret file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not UTF-8 text") from None
    if warnings is not None and mode & 0o077:
        line = (
            f"{key}: {path} is mode {stat.S_IMODE(mode):04o}, readable by group or others;"
            " make it 0600 or 0400, owned by the user the daemon runs as"
        )
        if line not in warnings:
            warnings.append(line)
    secret = text.rstrip("\r\n")
    if not secret:
        raise ValueError(f"{str(path)!r} is empty")
    return secret


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
                _read_secret_file(settings.password_file, f"{source_prefix}.{key}", warnings)
            )
        if key == "password_env":
            var = settings.password_env
            assert var is not None
            if not os.environ.get(var):
                raise ValueError(f"environment variable {var} is not set or empty")
            return SecretStr(os.environ[var])
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        errors.append(f"{source_prefix}.{key}: cannot read the password: {reason}")
        return None
    warnings.append(
        f"{source_prefix}.password: the password is inline in the config file; "
        "prefer password_file or password_env"
    )
    return settings.password


def _build_panels(
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
        errors.extend(_errors("defaults", exc))
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
        errors.extend(_errors(prefix, exc))
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
        name=name,
        url=api_url(panel.url),
        username=panel.username,
        password=password,
        tls_verify=tls,
        timeout=panel.timeout,
        max_response_bytes=panel.max_response_bytes,
        daemons=tuple(panel.daemons),
        status_patterns=panel.status_patterns,
        interval=panel.interval,
        list_interval=panel.list_interval,
        timezone=panel.timezone,
        credentials_style=panel.credentials_style,
        tls_fingerprint=panel.tls_fingerprint,
        labels=tuple(sorted(panel.labels.items())),
    )


class _AuthOnly(_Strict):
    """The auth keys alone, so their errors show even when a rule is broken too."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)
    auth: AuthInput | None = None
    insecure_no_auth: bool = False


def _resolve_auth(
    auth_input: AuthInput | None,
    insecure: bool,
    errors: list[str],
    warnings: list[str] | None = None,
) -> WebhookAuth | None:
    if auth_input is not None and insecure:
        errors.append("remediator.insecure_no_auth: set either auth or insecure_no_auth, not both")
        return None
    if auth_input is None:
        if not insecure:
            errors.append(
                "remediator.auth: the webhook needs auth (bearer_token_file or basic); "
                "insecure_no_auth: true is the only way to run without it"
            )
        return None
    a = auth_input
    if (a.bearer_token_file is None) == (a.basic is None):
        errors.append("remediator.auth: set exactly one of bearer_token_file or basic")
        return None
    if a.bearer_token_file is not None:
        try:
            token = _read_secret_file(
                a.bearer_token_file, "remediator.auth.bearer_token_file", warnings
            )
            return WebhookAuth(bearer_token=SecretStr(token))
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            errors.append(f"remediator.auth.bearer_token_file: cannot read the token: {reason}")
            return None
    basic = a.basic
    assert basic is not None
    try:
        if (basic.password_file is None) == (basic.password_env is None):
            raise ValueError("set exactly one of password_file or password_env")
        if basic.password_file is not None:
            secret = _read_secret_file(
                basic.password_file, "remediator.auth.basic.password_file", warnings
            )
        else:
            assert basic.password_env is not None
            secret = os.environ.get(basic.password_env, "")
            if not secret:
                raise ValueError(f"environment variable {basic.password_env} is not set")
        return WebhookAuth(basic_username=basic.username, basic_password=SecretStr(secret))
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        errors.append(f"remediator.auth.basic: {reason}")
        return None


def _build_remediator(
    raw: object, errors: list[str], warnings: list[str] | None = None
) -> RemediatorConfig | None:
    try:
        parsed = _RemediatorInput.model_validate(raw or {})
    except ValidationError as exc:
        errors.extend(_errors("remediator", exc))
        if isinstance(raw, dict):
            try:
                only = _AuthOnly.model_validate(raw)
                _resolve_auth(only.auth, only.insecure_no_auth, errors)
            except ValidationError:
                pass  # the auth keys' own errors are already in the list above
        return None
    auth = _resolve_auth(parsed.auth, parsed.insecure_no_auth, errors, warnings)
    # Cooldowns and the rate limit are decided from journal rows: they must outlive them.
    longest = max([parsed.rate_limit.per, *(r.cooldown for r in parsed.rules)])
    if 0 < parsed.journal_retention < longest:
        errors.append(
            f"remediator.journal_retention: {parsed.journal_retention:g}s is shorter than the"
            f" longest cooldown or rate_limit.per ({longest:g}s); rows those decisions read"
            " would be pruned"
        )
    targets = _resolve_targets(parsed.notify, errors)
    names = {t.name for t in parsed.notify}
    for index, rule in enumerate(parsed.rules):
        for wanted in rule.notify or []:
            if wanted not in names:
                errors.append(
                    f"remediator.rules[{index}].notify: no notify target is named {wanted!r}"
                )
    journal: JournalConfig | None = None
    if parsed.journal is not None:
        password: SecretStr | None = None
        if parsed.journal.password_file is not None:
            try:
                password = SecretStr(_read_secret_file(parsed.journal.password_file))
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                errors.append(f"remediator.journal.password_file: cannot read it: {reason}")
        journal = JournalConfig(parsed.journal.url, password, parsed.journal.lease)
    return RemediatorConfig(
        journal=journal,
        listen=parsed.listen,
        auth=auth,
        panel_label=parsed.panel_label,
        dry_run=parsed.dry_run,
        state_file=parsed.state_file,
        max_concurrent_actions=parsed.max_concurrent_actions,
        action_timeout=parsed.action_timeout,
        rate_limit=parsed.rate_limit,
        rules=tuple(parsed.rules),
        journal_retention=parsed.journal_retention,
        shutdown_grace=parsed.shutdown_grace,
        external_url=parsed.external_url or "",
        approval_timeout=parsed.approval_timeout,
        notify=tuple(targets),
        circuit_breaker=parsed.circuit_breaker,
        manual=parsed.manual,
    )


def _target_secret(path: Path, check: Callable[[str], str]) -> SecretStr:
    """A notify target's secret file, read and checked; ValueError naming the problem."""
    try:
        text = _read_secret_file(path)
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    try:
        return SecretStr(check(text))
    except ValueError as exc:  # the message never repeats the secret
        raise ValueError(f"{str(path)!r}: {exc}") from None


def _bearer(token: str) -> str:
    if any(not char.isprintable() or char.isspace() for char in token):
        raise ValueError("the token holds spaces, newlines or control characters")
    return token


def _bot_token(token: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9:_\-]+", token):
        raise ValueError("the bot token holds characters a Bot API token never has")
    return token


def _resolve_targets(targets: list[NotifyTargetInput], errors: list[str]) -> list[NotifyTarget]:
    out = []
    for index, t in enumerate(targets):
        secrets: dict[str, SecretStr | None] = {"url": None, "bearer": None, "bot": None}
        files = (("url_file", "url", t.url_file, check_notify_url),
                 ("bearer_token_file", "bearer", t.bearer_token_file, _bearer),
                 ("bot_token_file", "bot", t.bot_token_file, _bot_token))  # fmt: skip
        problems = []
        for key, name, path, check in files:
            if path is None:
                continue
            try:
                secrets[name] = _target_secret(path, check)
            except ValueError as exc:
                problems.append(f"remediator.notify[{index}].{key}: {exc}")
        if problems:
            errors.extend(problems)
            continue
        url = SecretStr(t.url) if t.url is not None else secrets["url"]
        bearer, bot = secrets["bearer"], secrets["bot"]
        out.append(
            NotifyTarget(
                name=t.name,
                type=t.type,
                url=url,
                bearer_token=bearer,
                bot_token=bot,
                chat_id=str(t.chat_id) if t.chat_id is not None else "",
                api_url=t.api_url.rstrip("/"),
                outcomes=frozenset(t.outcomes),
                timeout=t.timeout,
                retry_for=t.retry_for,
            )
        )
    return out


Daemon_ = Literal["exporter", "remediator"]


def parse_config(
    data: Any,
    *,
    require_remediator_auth: bool = False,
    daemon: Daemon_ | None = None,
    panel_errors: dict[str, list[str]] | None = None,
) -> Config:
    """Validate an already-loaded YAML document; raise :class:`ConfigError` with every problem.

    ``daemon`` names the daemon that loads the file: it checks the shared sections
    (``defaults``, ``panels``) and its own, and the other daemon's section is used only
    when valid (its defaults otherwise), so a broken ``remediator:`` never stops the
    exporter and a broken ``exporter:`` never stops the remediator. ``daemon`` None
    checks every section. The webhook's auth is only required for the remediator
    (``daemon="remediator"`` or ``require_remediator_auth=True``).

    ``panel_errors`` (the doctor's): a dict that gets an entry for every configured
    panel, its own problems or ``[]``; those problems are then left out of the
    :class:`ConfigError`, and a panel that has any is left out of ``panels``.
    """
    errors: list[str] = []
    warnings: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            ["(top level): must be a mapping with defaults, panels, exporter, remediator"]
        )
    for key in data:
        if key not in _TOP_KEYS:
            errors.append(f"{key}: unknown key (expected one of {', '.join(_TOP_KEYS)})")
    if "panels" in data or daemon is not None:
        raw_panels = data.get("panels")
        if raw_panels is None or raw_panels == {}:
            errors.append("panels: no panels configured; name at least one panel with its url")
    panels = _build_panels(data.get("defaults"), data.get("panels"), errors, warnings, panel_errors)

    exporter_errors: list[str] = []
    exporter = ExporterConfig()
    try:
        exporter = ExporterConfig.model_validate(data.get("exporter") or {})
    except ValidationError as exc:
        exporter_errors.extend(_errors("exporter", exc))
    if daemon != "remediator":
        errors.extend(exporter_errors)

    remediator_errors: list[str] = []
    remediator_warnings: list[str] = []
    remediator = _build_remediator(data.get("remediator"), remediator_errors, remediator_warnings)
    if daemon == "remediator" or require_remediator_auth:
        errors.extend(remediator_errors)
        warnings.extend(remediator_warnings)
    elif daemon is None:
        errors.extend(e for e in remediator_errors if not e.startswith("remediator.auth"))
    if remediator is None and daemon == "exporter":
        remediator = _unused_remediator()
    if errors or remediator is None:
        raise ConfigError(errors or ["remediator: invalid"])
    return Config(panels=panels, exporter=exporter, remediator=remediator, warnings=tuple(warnings))


def _unused_remediator() -> RemediatorConfig:
    """The remediator section's defaults, for the exporter when that section is invalid."""
    defaults = _RemediatorInput()
    return RemediatorConfig(
        listen=defaults.listen,
        auth=None,
        panel_label=defaults.panel_label,
        dry_run=True,
        state_file=defaults.state_file,
        max_concurrent_actions=defaults.max_concurrent_actions,
        action_timeout=defaults.action_timeout,
        rate_limit=defaults.rate_limit,
        rules=(),
        journal_retention=defaults.journal_retention,
    )


# --------------------------------------------------------------------------- YAML layer

MAX_CONFIG_BYTES = 1024 * 1024
"""A config file larger than this (1 MiB) is refused unread."""
MAX_CONFIG_NODES = 100_000
"""YAML nodes after expanding aliases: a billion-laughs file is refused here, not in memory."""
MAX_CONFIG_DEPTH = 64
"""Nesting deeper than this is refused (the real config nests 5 levels)."""
MAX_SECRET_BYTES = 64 * 1024

_BOOL_TAG = "tag:yaml.org,2002:bool"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "<complex key>"


def _check_tree(root: yaml.Node) -> list[str]:
    """Walk the composed document once, expanding aliases as the constructor would.

    Refuses a key that appears twice in one mapping (YAML keeps the last one
    silently), nesting deeper than :data:`MAX_CONFIG_DEPTH` and more than
    :data:`MAX_CONFIG_NODES` nodes. Plain ``on``/``off``/``yes``/``no`` keys are
    retagged as strings: YAML 1.1 reads them as booleans, and a rule's ``on:`` key
    must stay ``on``.
    """
    problems: list[str] = []
    seen_nodes = 0
    stack: list[tuple[yaml.Node, str, int]] = [(root, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        seen_nodes += 1
        if seen_nodes > MAX_CONFIG_NODES:
            return [
                f"(top level): more than {MAX_CONFIG_NODES} values once aliases are expanded;"
                " refused (an alias bomb?)"
            ]
        if depth > MAX_CONFIG_DEPTH:
            where = path if len(path) <= 80 else path[:77] + "..."
            return [f"{where or '(top level)'}: nested deeper than {MAX_CONFIG_DEPTH} levels"]
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                stack.append((item, f"{path}[{index}]", depth + 1))
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    stack.append((value_node, path, depth + 1))
                    continue
                if (
                    isinstance(key_node, yaml.ScalarNode)
                    and key_node.tag == _BOOL_TAG
                    and key_node.style is None
                ):
                    key_node.tag = _STR_TAG
                key = _key_text(key_node)
                where = f"{path}.{key}" if path else key
                line = key_node.start_mark.line + 1
                if key in first_line:
                    problems.append(
                        f"{where}: appears twice in the same mapping (lines {first_line[key]}"
                        f" and {line}); YAML would silently keep only the last"
                    )
                else:
                    first_line[key] = line
                stack.append((key_node, where, depth + 1))
                stack.append((value_node, where, depth + 1))
    return problems


def _yaml_problem(source: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None)
    if not problem:
        problem = str(exc).splitlines()[0] if str(exc) else "not valid YAML"
    return f"{source}: {problem}{where}"


def load_yaml(text: str, source: str = "config") -> Any:
    """The YAML document in ``text``, checked by :func:`_check_tree` before it is built.

    Raises :class:`ConfigError` naming ``source`` for anything that is not one
    well-formed, reasonably sized YAML document.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(source, exc)]) from None
    except RecursionError:
        raise ConfigError(
            [f"{source}: nested deeper than {MAX_CONFIG_DEPTH} levels; refused"]
        ) from None
    if root is None:
        return None
    problems = _check_tree(root)
    if problems:
        raise ConfigError(problems)
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(source, exc)]) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # A plain scalar that looks like a date but is none (2024-13-45) raises ValueError.
        raise ConfigError([f"{source}: a value cannot be read: {exc}"]) from None
    finally:
        loader.dispose()


def read_config_text(path: str | os.PathLike[str]) -> str:
    """The text of the config file: at most :data:`MAX_CONFIG_BYTES`, UTF-8."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: the config file is over {MAX_CONFIG_BYTES} bytes; refused"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})"]
        ) from None


def load_config(
    path: str | os.PathLike[str],
    *,
    require_remediator_auth: bool = False,
    daemon: Daemon_ | None = None,
    panel_errors: dict[str, list[str]] | None = None,
) -> Config:
    """Read and validate the YAML config file at ``path`` (see :func:`parse_config`)."""
    data = load_yaml(read_config_text(path), str(path))
    return parse_config(
        data,
        require_remediator_auth=require_remediator_auth,
        daemon=daemon,
        panel_errors=panel_errors,
    )
