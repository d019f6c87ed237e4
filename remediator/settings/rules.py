"""What a rule does and where the remediator stops: actions, selections, rules, the rate
limit, the circuit breaker and what a person may run by hand."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from brainycp.config.panels import Daemon
from brainycp.config.values import ByteSize, Duration, Strict
from brainycp.queue.identity import is_cut_label
from remediator.actions import ACTIONS, DESTRUCTIVE, taking
from remediator.actions.base import EXCLUSIVE
from remediator.settings.matchers import Matchers


def _registered(action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"must be one of {', '.join(ACTIONS)}")
    return action


Action = Annotated[str, AfterValidator(_registered)]
"""The name of an action in the registry (:data:`remediator.actions.ACTIONS`)."""
# What a rule without a parameter its action needs, or with one its action does not take, is
# told (``{action}``: the rule's action; ``{takers}``: the actions that take it).
_NEEDS = {
    "daemon": "daemon: {action} needs daemon: clamav or spamassassin",
    "select": "select: {action} needs a select block",
}
_ONLY = {
    "daemon": "daemon: only service actions take a daemon, not {action}",
    "force": "force: only {takers} takes force",
    "select": "select: only {takers} take select",
}


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
        """The parameters the action's kind needs and takes (the registry says which)."""
        kind = ACTIONS[self.action]
        for param in EXCLUSIVE:
            given = getattr(self, param) not in (None, False)
            if param in kind.needs and not given:
                raise ValueError(_NEEDS[param].format(action=self.action))
            if param not in kind.takes and given:
                takers = " and ".join(taking(param))
                raise ValueError(_ONLY[param].format(action=self.action, takers=takers))
        if kind.destructive and kind.everything and not self.allow_destructive:
            raise ValueError(
                f"allow_destructive: {self.action} removes {kind.everything} and cannot be "
                "undone; set allow_destructive: true on this rule to allow it"
            )
        if self.select is not None and self.select.is_empty() and not self.allow_destructive:
            raise ValueError(
                "select: an empty selection matches every queued message; "
                "name at least one criterion (or set allow_destructive: true)"
            )
        if not self.on:
            raise ValueError("on: must list firing, resolved or both")
        return self


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


MANUAL_DEFAULT_ACTIONS = tuple(
    name for name, kind in ACTIONS.items() if not kind.destructive and "select" not in kind.takes
)
"""What a person may run by hand unless ``manual.actions`` says otherwise: the actions
that need no selection and remove nothing for good."""


class ManualSettings(Strict):
    """``POST /actions`` and ``brainycp-mail-remediator run``: what a person may run by hand."""

    actions: list[Action] = Field(default_factory=lambda: list(MANUAL_DEFAULT_ACTIONS))
    allow_destructive: bool = False
    max_messages: int = Field(default=1000, ge=1, le=100000)

    @model_validator(mode="after")
    def _destructive(self) -> ManualSettings:
        risky = [a for a in self.actions if a in DESTRUCTIVE]
        if risky and not self.allow_destructive:
            raise ValueError(
                f"allow_destructive: {', '.join(risky)} can remove mail for good; set "
                "manual.allow_destructive: true to allow it by hand"
            )
        return self
