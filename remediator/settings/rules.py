"""What a rule does and where the remediator stops: actions, selections, rules, the rate
limit, the circuit breaker and what a person may run by hand."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, field_validator, model_validator

from brainycp.config.panels import Daemon
from brainycp.config.values import ByteSize, Duration, Strict
from brainycp.queue.identity import is_cut_label
from remediator.settings.matchers import Matchers

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
DESTRUCTIVE_ACTIONS = ("delete_all", "delete_messages")
"""Actions that remove mail and cannot be undone: a rule or a person needs ``allow_destructive``."""


# A selection value taken from an alert label: the whole value must be this template.
LABEL_TEMPLATE = re.compile(r"^\{\{\s*labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}$")
TEMPLATE_FIELDS = ("sender", "sender_domain", "recipient_domain")
_ADDRESS = re.compile(r"^[^\s<>@]+@[^\s<>@]+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?$")


class Selection(Strict):
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


class Rule(Strict):
    """One ``remediator.rules[]`` entry: which alerts, what action, and its safety limits."""

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
        return self.action in DESTRUCTIVE_ACTIONS


class RateLimit(Strict):
    """At most ``max_actions`` actions started per ``per`` seconds, over every rule."""

    max_actions: int = Field(default=60, ge=1)
    per: Duration = 3600.0


class CircuitBreaker(Strict):
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


class ManualSettings(Strict):
    """``POST /actions`` and ``brainycp-mail-remediator run``: what a person may run by hand."""

    actions: list[Action] = Field(default_factory=lambda: list(MANUAL_DEFAULT_ACTIONS))
    allow_destructive: bool = False
    max_messages: int = Field(default=1000, ge=1, le=100000)

    @model_validator(mode="after")
    def _destructive(self) -> ManualSettings:
        risky = [a for a in self.actions if a in DESTRUCTIVE_ACTIONS]
        if risky and not self.allow_destructive:
            raise ValueError(
                f"allow_destructive: {', '.join(risky)} can remove mail for good; set "
                "manual.allow_destructive: true to allow it by hand"
            )
        return self
