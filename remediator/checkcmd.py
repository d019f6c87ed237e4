"""``brainycp-mail-remediator --check-config``: validate the config and say, a line a
rule, what each rule would do."""

from __future__ import annotations

from brainycp.daemon import startup
from remediator.settings.config import Config
from remediator.settings.rules import Rule


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def describe_rule(rule: Rule, global_dry_run: bool = False) -> str:
    """One line: ``name: matchers -> action (cooldown ...)``, for ``--check-config``."""
    what: str = rule.action
    if rule.daemon:
        what += f" {rule.daemon}"
    if rule.force:
        what += " (force)"
    if rule.select is not None:
        criteria = []
        for key, value in rule.select.model_dump().items():
            if value is None:
                continue
            if key == "older_than":
                value = _duration(value)
            criteria.append(f"{key}={value}")
        what += " where " + ", ".join(criteria) if criteria else " on every queued message"
        verb = "act on the oldest" if rule.limit == "first" else "refuse above"
        what += f"; {verb} {rule.max_messages}"
    extras = [f"cooldown {_duration(rule.cooldown)}"]
    if rule.rerun_after is not None:
        extras.append(f"rerun_after {_duration(rule.rerun_after)}")
    if rule.on != ["firing"]:
        extras.append("on " + "+".join(rule.on))
    if rule.max_runs_per_episode is not None:
        extras.append(f"at most {rule.max_runs_per_episode} runs per episode")
    if rule.approval == "required":
        extras.append("NEEDS APPROVAL")
    if rule.notify is not None:
        extras.append("notify " + (", ".join(rule.notify) or "nobody"))
    if rule.dry_run or global_dry_run:
        extras.append("DRY RUN")
    matchers = ", ".join(str(m) for m in rule.matchers)
    return f"{rule.name}: {matchers} -> {what} ({', '.join(extras)})"


def check_config(config: Config) -> int:
    """Print the verdict, the warnings and every rule's line; the exit code (0)."""
    rconfig = config.remediator
    print(f"config OK: {len(config.panels)} panels, {len(rconfig.rules)} rules")
    for warning in config.warnings:
        print(f"warning: {warning}")
    if rconfig.auth is None:
        print("warning: remediator.insecure_no_auth: the webhook accepts anyone")
    for rule in rconfig.rules:
        print(describe_rule(rule, rconfig.dry_run))
    return startup.EXIT_OK
