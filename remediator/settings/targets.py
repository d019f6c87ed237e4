"""Where the remediator tells people what it did: ``remediator.notify[]``, secrets resolved."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from brainycp.config.secrets import read_secret_file
from brainycp.config.values import Duration, PositiveDuration, Strict

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


class NotifyTargetInput(Strict):
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
    timeout: PositiveDuration = 10.0
    retry_for: Duration = 300.0

    @field_validator("url", "api_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        return None if value is None else check_notify_url(value)

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


def _target_secret(path: Path, check: Callable[[str], str]) -> SecretStr:
    """A notify target's secret file, read and checked; ValueError naming the problem."""
    try:
        text = read_secret_file(path)
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


def resolve_targets(targets: list[NotifyTargetInput], errors: list[str]) -> list[NotifyTarget]:
    """The targets whose secret files read and check; a line in ``errors`` for each other."""
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
