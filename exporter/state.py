"""The last poll results of every panel: plain data that pollers write and the collector reads.

Nothing here talks to a panel or knows about Prometheus. A failed poll records the failure
and leaves the last good values alone: a queue that cannot be read is unknown, not empty.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from brainycp.queue import QueueSummary

OPERATIONS = ("count_msg", "list_msg", "clamav", "spamassassin")
"""Values of the ``operation`` label, in exposition order."""


@dataclass
class OperationState:
    """The last poll of one operation on one panel."""

    attempted: bool = False
    success: bool = False
    duration_seconds: float = 0.0
    last_attempt: float | None = None
    """Unix time the last poll finished."""
    last_success: float | None = None
    """Unix time of the last successful poll."""
    last_reason: str = ""
    last_detail: str = ""
    errors: dict[str, int] = field(default_factory=dict)
    """Failed polls so far, by error reason."""
    polls: int = 0
    """Finished polls so far, successful or not."""
    created: float = field(default_factory=time.time)
    """Unix time the operation entered the config: its counters count from here."""
    error_created: dict[str, float] = field(default_factory=dict)
    """Unix time of the first failure, by error reason."""

    def is_fresh(self, now: float, max_staleness: float) -> bool:
        """True while the last good value is young enough to export."""
        return self.last_success is not None and now - self.last_success <= max_staleness


@dataclass
class PanelState:
    """Everything the exporter knows about one panel."""

    name: str
    daemons: tuple[str, ...] = ()
    list_enabled: bool = True
    operations: dict[str, OperationState] = field(default_factory=dict)
    queue_messages: int | None = None
    """From the last good ``count_msg``."""
    summary: QueueSummary | None = None
    """From the last good ``list_msg``."""
    top_senders: tuple[tuple[str, int], ...] = ()
    """``(sender, queued messages)``, most first, from the last good ``list_msg``."""
    top_recipient_domains: tuple[tuple[str, int], ...] = ()
    """``(recipient domain, queued messages)``, most first, from the last good ``list_msg``."""
    daemon_states: dict[str, str] = field(default_factory=dict)
    """``running`` / ``stopped`` / ``unknown`` per daemon, from its last good status."""
    labels: tuple[tuple[str, str], ...] = ()
    """The panel's configured labels (``labels:``), sorted by name; they go on its info series."""
    created: float = field(default_factory=time.time)
    """Unix time the panel entered the config."""

    def __post_init__(self) -> None:
        self._add_operations(self.created)

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)
        # A reload that adds a daemon (or turns list_msg on) adds its operation at once, so
        # its counters exist at 0 before its first poll.
        if name in ("daemons", "list_enabled") and "created" in self.__dict__:
            self._add_operations(time.time())

    def _add_operations(self, now: float) -> None:
        for name in self.operation_names():
            if name not in self.operations:
                self.operations[name] = OperationState(created=now)

    def operation(self, name: str) -> OperationState:
        """The state of ``name``, created on first use."""
        op = self.operations.get(name)
        if op is None:
            op = self.operations[name] = OperationState()
        return op

    def _attempt(
        self, operation: str, finished_at: float, duration: float, *, success: bool
    ) -> OperationState:
        """Count one finished poll of ``operation``; the caller records what it left."""
        op = self.operation(operation)
        op.attempted = True
        op.polls += 1
        op.success = success
        op.duration_seconds = duration
        op.last_attempt = finished_at
        return op

    def record_success(self, operation: str, finished_at: float, duration: float) -> None:
        """Mark a successful poll; the caller stores the value it read."""
        op = self._attempt(operation, finished_at, duration, success=True)
        op.last_success = finished_at
        op.last_reason = ""
        op.last_detail = ""

    def record_failure(
        self, operation: str, finished_at: float, duration: float, reason: str, detail: str = ""
    ) -> None:
        """Mark a failed poll; the last good value of the operation is left as it was."""
        op = self._attempt(operation, finished_at, duration, success=False)
        op.last_reason = reason
        op.last_detail = detail
        if reason not in op.errors:
            op.error_created[reason] = finished_at
        op.errors[reason] = op.errors.get(reason, 0) + 1

    def operation_names(self) -> tuple[str, ...]:
        """The operations this panel polls, in exposition order."""
        wanted = {"count_msg", *self.daemons}
        if self.list_enabled:
            wanted.add("list_msg")
        return tuple(op for op in OPERATIONS if op in wanted)


@dataclass
class ExporterState:
    """All panels, plus the settings the collector needs to judge staleness."""

    panels: dict[str, PanelState]
    max_staleness: float = 600.0
    top_senders: int = 0
    top_recipient_domains: int = 0
    shard: tuple[int, int] | None = None
    """``(index, count)`` when this replica serves one shard of the panels."""
    grafana_url: str = ""
    """``exporter.grafana_url``: where the fleet view links to the dashboards ("" = nowhere)."""
    render_errors: dict[str, int] = field(default_factory=dict)
    """Scrapes that left a panel out because its series could not be rendered, by panel."""
    render_errors_created: dict[str, float] = field(default_factory=dict)
    """Unix time of each panel's first render error."""
    info_labels: tuple[str, ...] = field(init=False)
    """Every label name any panel sets, sorted: the label set of ``brainycp_panel_info``."""

    def __post_init__(self) -> None:
        self.refresh_info_labels()

    def refresh_info_labels(self) -> None:
        """Recompute :attr:`info_labels` after the panel set or their labels changed."""
        names = {label for panel in self.panels.values() for label, _ in panel.labels}
        self.info_labels = tuple(sorted(names))

    @classmethod
    def for_panels(
        cls,
        panels: Iterable[PanelState],
        *,
        max_staleness: float = 600.0,
        top_senders: int = 0,
        top_recipient_domains: int = 0,
        shard: tuple[int, int] | None = None,
        grafana_url: str = "",
    ) -> ExporterState:
        """State for the given panels, keyed by name."""
        return cls(
            panels={p.name: p for p in panels},
            max_staleness=max_staleness,
            top_senders=top_senders,
            top_recipient_domains=top_recipient_domains,
            shard=shard,
            grafana_url=grafana_url,
        )
