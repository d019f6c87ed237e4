"""Actions a person asks for: the rule a journal row runs with, and manual requests.

A journal row records what its action runs with beyond its rule (``params``):
the selection with alert-label values filled in, or a whole manual request.
:func:`rule_for_row` rebuilds the exact rule from it, so an action run after an
approval or a restart acts on what was journaled, not on the config of the day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from remediator.actions import DESTRUCTIVE
from remediator.settings.rules import ManualSettings, Rule, Selection

MANUAL_RULE = "(manual)"
_REQUEST_KEYS = {
    "panel", "action", "select", "daemon", "dry_run", "by", "max_messages", "limit", "force",
    "allow_destructive",
}  # fmt: skip


class ManualError(ValueError):
    """A manual request that cannot run; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ManualRequest:
    panel: str
    rule: Rule
    dry_run: bool
    by: str

    def params(self) -> dict[str, Any]:
        """What the journal keeps to rebuild :attr:`rule` (see :func:`rule_for_row`)."""
        r = self.rule
        return {
            "manual": {
                "action": r.action,
                "daemon": r.daemon,
                "force": r.force,
                "select": r.select.model_dump(mode="json") if r.select else None,
                "max_messages": r.max_messages,
                "limit": r.limit,
            },
            "dry_run": self.dry_run,
        }


def _text(data: Mapping[str, Any], key: str, limit: int) -> str:
    value = data.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > limit:
        raise ManualError(422, f"{key} must be a string of at most {limit} characters")
    return value


def _manual_rule(spec: Mapping[str, Any]) -> Rule:
    data = {k: v for k, v in spec.items() if v is not None}
    data.update(name=MANUAL_RULE, matchers=[f'alertname="{MANUAL_RULE}"'], allow_destructive=True)
    return Rule.model_validate(data)


def parse_request(
    data: object, settings: ManualSettings, panels: Mapping[str, object]
) -> ManualRequest:
    """Validate a ``POST /actions`` body; raise :class:`ManualError` with the answer."""
    if not isinstance(data, dict):
        raise ManualError(422, "the body must be a JSON object")
    unknown = sorted(set(data) - _REQUEST_KEYS)
    if unknown:
        raise ManualError(422, f"unknown key: {unknown[0]}")
    panel = _text(data, "panel", 200)
    if panel not in panels:
        raise ManualError(422, f"panel {panel!r} is not configured")
    action = data.get("action")
    if action not in settings.actions:
        allowed = ", ".join(settings.actions) or "none"
        raise ManualError(
            403, f"action {action!r} may not be run by hand (manual.actions: {allowed})"
        )
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ManualError(422, "dry_run must be true or false")
    allow = data.get("allow_destructive", False)
    if not isinstance(allow, bool):
        raise ManualError(422, "allow_destructive must be true or false")
    if action in DESTRUCTIVE and not dry_run and not allow:
        raise ManualError(
            422,
            f'allow_destructive: {action} removes mail for good; send "allow_destructive": '
            "true (CLI: --allow-destructive) after a dry run",
        )
    max_messages = data.get("max_messages", settings.max_messages)
    if (
        isinstance(max_messages, bool)
        or not isinstance(max_messages, int)
        or not 1 <= max_messages <= settings.max_messages
    ):
        raise ManualError(422, f"max_messages must be a number from 1 to {settings.max_messages}")
    select = data.get("select")
    if select is not None and not isinstance(select, dict):
        raise ManualError(422, "select must be an object")
    if isinstance(select, dict) and any(isinstance(v, str) and "{{" in v for v in select.values()):
        raise ManualError(422, "select: label templates are for rules, not manual requests")
    spec = {
        "action": action,
        "daemon": data.get("daemon"),
        "force": data.get("force", False),
        "select": select,
        "max_messages": max_messages,
        "limit": data.get("limit", "refuse"),
    }
    try:
        rule = _manual_rule(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        raise ManualError(422, f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    if rule.select is not None and rule.select.is_empty():
        raise ManualError(422, "select: name at least one criterion (an empty one matches all)")
    return ManualRequest(panel, rule, dry_run, _text(data, "by", 200))


def rule_for_row(
    rule_name: str, action: str, params: Mapping[str, Any], rules: Mapping[str, Rule]
) -> Rule | None:
    """The rule a journal row runs with; None when its rule left the config or changed action."""
    spec = params.get("manual")
    if rule_name == MANUAL_RULE and isinstance(spec, dict):
        try:
            return _manual_rule(spec)
        except ValidationError:
            return None
    rule = rules.get(rule_name)
    if rule is None or rule.action != action:
        return None
    select = params.get("select")
    if rule.select is None or not isinstance(select, dict):
        return rule
    update: dict[str, Any] = {"select": Selection.model_validate(select)}
    for key in ("max_messages", "limit"):
        if key in params:
            update[key] = params[key]
    return rule.model_copy(update=update)


def selection_params(rule: Rule, select: Selection | None) -> dict[str, Any]:
    """What a journal row keeps of the selection it runs with (see :func:`rule_for_row`):
    ``select`` (label values filled in), ``max_messages`` and ``limit``, as requested."""
    if select is None:
        return {}
    return {
        "select": select.model_dump(mode="json"),
        "max_messages": rule.max_messages,
        "limit": rule.limit,
    }
