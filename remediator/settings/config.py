"""The remediator's view of the config file: its ``remediator`` section validated and
resolved (secrets read, names checked), with the shared panels."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator

from brainycp.config import loader
from brainycp.config.errors import validation_errors
from brainycp.config.panels import PanelConfig
from brainycp.config.secrets import read_secret_file, unreadable_reason
from brainycp.config.values import Duration, Listen, SecondsDuration, Strict
from brainycp.config.yamlguard import load_yaml_file
from remediator.settings.rules import CircuitBreaker, ManualSettings, RateLimit, Rule
from remediator.settings.targets import NotifyTarget, NotifyTargetInput, resolve_targets
from remediator.settings.webhook import AuthInput, AuthKeys, WebhookAuth, resolve_auth

# libpq connection parameters that carry a secret: never in a URL (logs, ps, errors).
_JOURNAL_URL_SECRETS = frozenset({"password", "sslpassword"})


class _JournalInput(Strict):
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


class _RemediatorInput(Strict):
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
    approval_timeout: SecondsDuration = 3600.0
    notify: list[NotifyTargetInput] = Field(default_factory=list)
    circuit_breaker: CircuitBreaker | None = None
    manual: ManualSettings = Field(default_factory=lambda: ManualSettings())

    @field_validator("external_url")
    @classmethod
    def _external_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

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
    """The ``remediator`` section, validated and resolved (secrets read)."""

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


def build_remediator(
    raw: object, errors: list[str], warnings: list[str] | None = None
) -> RemediatorConfig | None:
    """The ``remediator`` section validated and resolved; None when ``errors`` says why not."""
    try:
        parsed = _RemediatorInput.model_validate(raw or {})
    except ValidationError as exc:
        errors.extend(validation_errors("remediator", exc))
        if isinstance(raw, dict):
            try:
                only = AuthKeys.model_validate(raw)
                resolve_auth(only.auth, only.insecure_no_auth, errors)
            except ValidationError:
                pass  # the auth keys' own errors are already in the list above
        return None
    auth = resolve_auth(parsed.auth, parsed.insecure_no_auth, errors, warnings)
    # Cooldowns and the rate limit are decided from journal rows: they must outlive them.
    longest = max([parsed.rate_limit.per, *(r.cooldown for r in parsed.rules)])
    if 0 < parsed.journal_retention < longest:
        errors.append(
            f"remediator.journal_retention: {parsed.journal_retention:g}s is shorter than the"
            f" longest cooldown or rate_limit.per ({longest:g}s); rows those decisions read"
            " would be pruned"
        )
    targets = resolve_targets(parsed.notify, errors)
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
                password = SecretStr(read_secret_file(parsed.journal.password_file))
            except (OSError, ValueError) as exc:
                reason = unreadable_reason(exc)
                errors.append(f"remediator.journal.password_file: cannot read it: {reason}")
        journal = JournalConfig(parsed.journal.url, password, parsed.journal.lease)
    return RemediatorConfig(
        **{
            **parsed.values_for(RemediatorConfig),
            "journal": journal,
            "auth": auth,
            "rules": tuple(parsed.rules),
            "external_url": parsed.external_url or "",
            "notify": tuple(targets),
        }
    )


@dataclass(frozen=True)
class Config:
    """The config file as the remediator reads it: the shared panels and its own section."""

    panels: dict[str, PanelConfig]
    remediator: RemediatorConfig
    warnings: tuple[str, ...] = ()


def section(*, require_auth: bool) -> loader.Section[RemediatorConfig, Config]:
    """The ``remediator`` section for the loader. Without ``require_auth`` (a check of the
    rules alone) a missing or unreadable ``auth`` is no error and its warnings are dropped."""

    def parse(raw: object, errors: list[str], warnings: list[str]) -> RemediatorConfig | None:
        own_errors: list[str] = []
        own_warnings: list[str] = []
        built = build_remediator(raw, own_errors, own_warnings)
        if require_auth:
            errors.extend(own_errors)
            warnings.extend(own_warnings)
        else:
            errors.extend(e for e in own_errors if not e.startswith("remediator.auth"))
        return built

    return loader.Section("remediator", parse, Config)


def parse_config(data: Any, *, require_auth: bool = False, require_panels: bool = False) -> Config:
    """Validate a loaded YAML document (:func:`brainycp.config.loader.parse_config`)."""
    own = section(require_auth=require_auth)
    return loader.parse_config(data, own, require_panels=require_panels)


def load_config(
    path: str | os.PathLike[str], *, require_auth: bool = True, require_panels: bool = True
) -> Config:
    """Read and validate the config file as the remediator does at start and at reload:
    with at least one panel and the webhook's auth (or ``insecure_no_auth``)."""
    data = load_yaml_file(path)
    return parse_config(data, require_auth=require_auth, require_panels=require_panels)
