"""Metric families built from the last poll results; a scrape never calls a panel.

:func:`family_rows` is a pure function of an :class:`~exporter.state.ExporterState` and
the current time that decides every series; :func:`build_families` presents the rows as
prometheus-client families (for :class:`ExporterCollector`) and :func:`render_bytes` as
the text format or OpenMetrics directly, for fast scrapes of large fleets. Values read
from a panel are exported while their operation's last success is at most
``max_staleness`` old; after that their series disappear, while ``brainycp_up``,
``brainycp_poll_*`` and the counters stay. The counters of every operation a panel polls
exist at 0 from the moment it is configured (for the reasons in :data:`ZERO_REASONS`), so
``increase()`` sees their first event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from brainycp import __version__
from brainycp.queue import AGE_BUCKETS, DEFERRAL_REASONS
from exporter.state import ExporterState, PanelState

log = logging.getLogger("exporter.collector")

_FROM_POLL = (
    ", as of the last successful {op} poll"
    " (its time is in brainycp_poll_last_success_timestamp_seconds)."
)


def _help(text: str, operation: str) -> str:
    return text + _FROM_POLL.format(op=operation)


# prometheus-client's own float formatting (Go style), so both renderings agree.
_fmt: Callable[[float], str] = floatToGoString
_LE = tuple(_fmt(bound) for bound in AGE_BUCKETS)
_HISTOGRAM_LINES = len(_LE) + 2  # one age histogram row is this many lines


def _fresh_list(panel: PanelState, now: float, max_staleness: float) -> bool:
    op = panel.operations.get("list_msg")
    return panel.summary is not None and op is not None and op.is_fresh(now, max_staleness)


Kind = Literal["gauge", "counter", "gaugehistogram"]


@dataclass(frozen=True, eq=False)
class FamilySpec:
    """Name, type, HELP text and label names of one metric family. Compared and hashed
    by identity: a render looks its spec up about 20 times a panel, and the dataclass's
    field-wise hash made :func:`family_rows` a fifth slower (1,000 panels)."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]


def _spec(name: str, kind: Kind, help: str, *labels: str) -> FamilySpec:
    return FamilySpec(name, kind, help, labels)


UP = _spec(
    "brainycp_up",
    "gauge",
    "1 when the last count_msg poll of the panel succeeded, else 0.",
    "panel",
)
MESSAGES = _spec(
    "brainycp_mail_queue_messages",
    "gauge",
    _help("Messages in the mail queue", "count_msg"),
    "panel",
)
FROZEN = _spec(
    "brainycp_mail_queue_frozen_messages",
    "gauge",
    _help("Frozen messages in the mail queue (always 0 on Postfix)", "list_msg"),
    "panel",
)
BOUNCES = _spec(
    "brainycp_mail_queue_bounce_messages",
    "gauge",
    _help("Queued bounces (null sender <>)", "list_msg"),
    "panel",
)
HELD = _spec(
    "brainycp_mail_queue_held_messages",
    "gauge",
    _help("Held messages in the mail queue (Postfix)", "list_msg"),
    "panel",
)
SIZE = _spec(
    "brainycp_mail_queue_size_bytes",
    "gauge",
    _help("Total size of the queued messages in bytes", "list_msg"),
    "panel",
)
OLDEST = _spec(
    "brainycp_mail_queue_oldest_message_age_seconds",
    "gauge",
    _help("Age of the oldest queued message in seconds (0 when the queue is empty)", "list_msg"),
    "panel",
)
AGES = _spec(
    "brainycp_mail_queue_message_age_seconds",
    "gaugehistogram",
    _help("Ages of the queued messages in seconds", "list_msg"),
    "panel",
)
DAEMON_UP = _spec(
    "brainycp_mail_daemon_up",
    "gauge",
    _help("1 when the daemon is running, 0 when it is stopped", "status"),
    "panel",
    "daemon",
)
DAEMON_UNKNOWN = _spec(
    "brainycp_mail_daemon_status_unknown",
    "gauge",
    _help("1 when the status text matched neither the running nor the stopped patterns", "status"),
    "panel",
    "daemon",
)
SUCCESS = _spec(
    "brainycp_poll_success",
    "gauge",
    "1 when the last poll of this operation succeeded, else 0.",
    "panel",
    "operation",
)
DURATION = _spec(
    "brainycp_poll_duration_seconds",
    "gauge",
    "Duration of the last poll of this operation in seconds.",
    "panel",
    "operation",
)
LAST_SUCCESS = _spec(
    "brainycp_poll_last_success_timestamp_seconds",
    "gauge",
    "Unix time of the last successful poll of this operation.",
    "panel",
    "operation",
)
POLLS = _spec(
    "brainycp_polls",
    "counter",
    "Finished polls (successful or not) since the exporter started, by operation.",
    "panel",
    "operation",
)
ERRORS = _spec(
    "brainycp_poll_errors",
    "counter",
    "Failed polls since the exporter started, by operation and reason.",
    "panel",
    "operation",
    "reason",
)
ZERO_REASONS = ("connect", "http_status", "timeout")
"""Reasons whose ``brainycp_poll_errors_total`` series exist at 0 for every operation a panel
polls, so that ``increase()`` counts their first failure: the failures a panel gives for a
moment, while it, its web server or the network in between restarts or is overloaded,
often one alone. Any other reason means something stays broken and repeats at every poll;
its series appears at its first failure (docs/metrics.md, "Counters before their first
event")."""
BUILD_INFO = _spec(
    "brainycp_exporter_build_info",
    "gauge",
    "Always 1; the version label is the exporter's version.",
    "version",
)


SHARD_INFO = _spec(
    "brainycp_exporter_shard_info",
    "gauge",
    "Always 1; the shard this replica serves (index 0 of count 1 when it serves every panel).",
    "index",
    "count",
)
RENDER_ERRORS = _spec(
    "brainycp_exporter_render_errors",
    "counter",
    "Scrapes that left the panel out because its series could not be rendered.",
    "panel",
)


def _info_spec(label_names: tuple[str, ...]) -> FamilySpec:
    return _spec(
        "brainycp_panel_info",
        "gauge",
        "Always 1; the panel's configured labels (empty for a label only other panels set).",
        "panel",
        *label_names,
    )


def _senders_spec(top: int) -> FamilySpec:
    return _spec(
        "brainycp_mail_queue_sender_messages",
        "gauge",
        _help(f"Queued messages of the {top} senders with most of them", "list_msg"),
        "panel",
        "sender",
    )


def _domains_spec(top: int) -> FamilySpec:
    return _spec(
        "brainycp_mail_queue_recipient_domain_messages",
        "gauge",
        _help(
            f"Queued messages with a pending recipient in each of the {top} recipient domains "
            "with most of them",
            "list_msg",
        ),
        "panel",
        "domain",
    )


DEFERRALS = _spec(
    "brainycp_mail_queue_deferral_reason_messages",
    "gauge",
    _help(
        "Queued messages with a recipient deferred for each class of reason the listing shows "
        "(Postfix only)",
        "list_msg",
    ),
    "panel",
    "reason",
)
UNPARSED = _spec(
    "brainycp_mail_queue_unparsed_lines",
    "gauge",
    _help("Lines (or objects) of the queue listing that could not be read", "list_msg"),
    "panel",
)


Row = tuple[tuple[str, ...], Any]
"""Label values in the spec's order, and the value; for a counter the value is
``(count, unix time the series was created)``, for the gauge histogram
``(cumulative bucket counts, sum)``."""


def family_rows(
    state: ExporterState,
    now: float,
    version: str = __version__,
    *,
    panels: Iterable[str] | None = None,
    own: bool = True,
) -> list[tuple[FamilySpec, list[Row]]]:
    """Every ``brainycp_*`` family for ``state`` at unix time ``now`` as plain rows.

    ``panels`` limits the rows to those panels (default: every panel, sorted); ``own``
    adds the exporter's own series (build and shard info, render errors). Families
    without a series are left out. This is the one place that decides which series
    exist and what they hold; :func:`build_families` and :func:`render_bytes` only
    present the rows.
    """
    stale_after = state.max_staleness
    senders_spec = _senders_spec(state.top_senders)
    info_spec = _info_spec(state.info_labels)
    domains_spec = _domains_spec(state.top_recipient_domains)
    rows: dict[FamilySpec, list[Row]] = {
        spec: []
        for spec in (
            UP,
            MESSAGES,
            FROZEN,
            BOUNCES,
            HELD,
            SIZE,
            OLDEST,
            AGES,
            senders_spec,
            domains_spec,
            DEFERRALS,
            UNPARSED,
            DAEMON_UP,
            DAEMON_UNKNOWN,
            SUCCESS,
            DURATION,
            LAST_SUCCESS,
            POLLS,
            ERRORS,
            info_spec,
            BUILD_INFO,
            SHARD_INFO,
            RENDER_ERRORS,
        )
    }
    if own:
        rows[BUILD_INFO].append(((version,), 1.0))
        index, count = state.shard or (0, 1)
        rows[SHARD_INFO].append(((str(index), str(count)), 1.0))
        created = state.render_errors_created
        for name in sorted(state.render_errors):
            rows[RENDER_ERRORS].append(((name,), (state.render_errors[name], created[name])))

    for name in sorted(state.panels) if panels is None else panels:
        panel = state.panels[name]
        own_labels = dict(panel.labels)
        rows[info_spec].append(((name, *(own_labels.get(k, "") for k in state.info_labels)), 1.0))
        count_op = panel.operations.get("count_msg")
        if count_op is not None and count_op.attempted:
            rows[UP].append(((name,), 1.0 if count_op.success else 0.0))
            if panel.queue_messages is not None and count_op.is_fresh(now, stale_after):
                rows[MESSAGES].append(((name,), panel.queue_messages))
        if panel.summary is not None and _fresh_list(panel, now, stale_after):
            _listing_rows(rows, state, name, panel, senders_spec, domains_spec)
        _daemon_rows(rows, name, panel, now, stale_after)
        _operation_rows(rows, name, panel)

    return [(spec, spec_rows) for spec, spec_rows in rows.items() if spec_rows]


def _listing_rows(
    rows: dict[FamilySpec, list[Row]],
    state: ExporterState,
    name: str,
    panel: PanelState,
    senders_spec: FamilySpec,
    domains_spec: FamilySpec,
) -> None:
    """The rows a fresh queue listing gives: counts, ages, top senders and domains."""
    summary = panel.summary
    assert summary is not None
    panel_only = (name,)
    rows[FROZEN].append((panel_only, summary.frozen))
    rows[BOUNCES].append((panel_only, summary.bounces))
    rows[HELD].append((panel_only, summary.held))
    rows[SIZE].append((panel_only, summary.bytes))
    rows[OLDEST].append((panel_only, summary.oldest_age_seconds or 0.0))
    rows[AGES].append((panel_only, (tuple(summary.cumulative_buckets()), summary.age_sum_seconds)))
    if state.top_senders > 0:
        rows[senders_spec].extend(((name, sender), n) for sender, n in panel.top_senders)
    if state.top_recipient_domains > 0:
        rows[domains_spec].extend(((name, domain), n) for domain, n in panel.top_recipient_domains)
    # Only where the listing shows reasons (Postfix): on Exim, 0 would claim too much.
    rows[DEFERRALS].extend(
        ((name, reason), n)
        for reason, n in zip(DEFERRAL_REASONS, summary.deferral_reasons, strict=False)
    )
    rows[UNPARSED].append((panel_only, summary.unparsed_lines))


def _daemon_rows(
    rows: dict[FamilySpec, list[Row]], name: str, panel: PanelState, now: float, stale: float
) -> None:
    """Each daemon's up and unknown rows, from a fresh status answer."""
    for daemon in panel.daemons:
        op = panel.operations.get(daemon)
        daemon_state = panel.daemon_states.get(daemon)
        if op is None or daemon_state is None or not op.is_fresh(now, stale):
            continue
        if daemon_state in ("running", "stopped"):
            rows[DAEMON_UP].append(((name, daemon), 1.0 if daemon_state == "running" else 0.0))
        rows[DAEMON_UNKNOWN].append(((name, daemon), 1.0 if daemon_state == "unknown" else 0.0))


def _operation_rows(rows: dict[FamilySpec, list[Row]], name: str, panel: PanelState) -> None:
    """Each operation's poll counters (from the config on, at 0) and its last result."""
    polls, errors = rows[POLLS], rows[ERRORS]
    success, duration, last_success = rows[SUCCESS], rows[DURATION], rows[LAST_SUCCESS]
    for operation in panel.operation_names():
        op = panel.operations.get(operation)
        if op is None:
            continue
        labels = (name, operation)
        polls.append((labels, (op.polls, op.created)))
        counted = op.errors
        reasons = sorted(counted.keys() | ZERO_REASONS) if counted else ZERO_REASONS
        for reason in reasons:
            zero = reason in ZERO_REASONS
            since = op.created if zero else op.error_created.get(reason, op.created)
            errors.append(((name, operation, reason), (counted.get(reason, 0), since)))
        if not op.attempted:
            continue
        success.append((labels, 1.0 if op.success else 0.0))
        duration.append((labels, op.duration_seconds))
        if op.last_success is not None:
            last_success.append((labels, op.last_success))


def build_families(
    state: ExporterState, now: float, version: str = __version__, *, created: bool = False
) -> list[Metric]:
    """The families of :func:`family_rows` as prometheus-client metric families.

    ``created`` gives each counter its creation time (OpenMetrics ``_created``); leave it
    off for the text format, which would show it as extra ``*_created`` gauges. Panels
    whose series cannot be written are left out, as :func:`render_bytes` does.
    """
    names = sorted(state.panels)
    try:
        _render(family_rows(state, now, version, panels=names))
    except Exception:
        names = renderable_panels(state, now, names, version)
    families: list[Metric] = []
    for spec, rows in family_rows(state, now, version, panels=names):
        labels = list(spec.labels)
        if spec.kind == "gaugehistogram":
            histogram = GaugeHistogramMetricFamily(spec.name, spec.help, labels=labels)
            for values, (buckets, total) in rows:
                pairs = [(le, float(count)) for le, count in zip(_LE, buckets, strict=True)]
                histogram.add_metric(list(values), pairs, total)
            families.append(histogram)
        elif spec.kind == "counter":
            counter = CounterMetricFamily(spec.name, spec.help, labels=labels)
            for values, (count, since) in rows:
                counter.add_metric(list(values), count, created=since if created else None)
            families.append(counter)
        else:
            gauge = GaugeMetricFamily(spec.name, spec.help, labels=labels)
            for values, value in rows:
                gauge.add_metric(list(values), value)
            families.append(gauge)
    return families


# ---------------------------------------------------------------------------- exposition

OPENMETRICS_EOF = b"# EOF\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _template(name: str, keys: list[str], order: list[int], first: str = "") -> str:
    """A ``str.format`` template of one sample line up to its value: ``{i}`` is the i-th
    label value of a row, already escaped."""
    labels = [first] if first else []
    labels += [f'{key}="{{{i}}}"' for key, i in zip(keys, order, strict=True)]
    return f"{name}{{{{{','.join(labels)}}}}} "


LINE_CACHE: dict[tuple[str, tuple[str, ...]], str] = {}
"""Sample lines up to their value, by template and label values, kept from one scrape to
the next: a fleet's series barely change between scrapes, and formatting and escaping
their labels was most of a scrape's work (1,000 panels: 57 ms of CPU without, 38 ms with;
about 9 MB per format scraped). Emptied when it outgrows the limit :func:`render_bytes`
sets from the fleet's size."""


def _render(
    families: list[tuple[FamilySpec, list[Row]]], openmetrics: bool = False, keep: int | None = None
) -> bytes:
    """``families`` in the text format (0.0.4), or in OpenMetrics 1.0 without its ``# EOF``
    line; encoded. Raises on a value it cannot write.

    Each line is its label part (from one template per family, kept in :data:`LINE_CACHE`,
    which is emptied first when it holds more than ``keep`` lines) and its value
    (formatted once per scrape for all equal values).
    """
    fmt = _fmt
    # Seeded with 0, the commonest value (a -0.0, equal to it, prints as 0.0 too).
    numbers: dict[float, str] = {0: "0.0"}
    cache = LINE_CACHE
    if keep is not None and len(cache) > keep:
        cache.clear()
    made = cache.get

    def num(value: float) -> str:
        out = numbers.get(value)
        if out is None:
            out = numbers[value] = fmt(value)
        return out

    def line(template: str, values: tuple[str, ...]) -> str:
        out = made((template, values))
        if out is None:
            out = cache[(template, values)] = template.format(*map(_escape_value, values))
        return out

    out: list[str] = []
    append = out.append
    number = numbers.get
    for spec, rows in families:
        name = spec.name
        if openmetrics:
            # OpenMetrics escapes quotes in HELP too; the family is named without _total.
            help_text = _escape_value(spec.help)
            append(f"# HELP {name} {help_text}\n# TYPE {name} {spec.kind}\n")
        else:
            if spec.kind == "counter":
                name += "_total"
            kind = {"counter": "counter", "gauge": "gauge"}.get(spec.kind, "histogram")
            help_text = _escape_help(spec.help)
            append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
        # prometheus-client writes labels sorted by name.
        order = sorted(range(len(spec.labels)), key=lambda i: spec.labels[i])
        keys = [spec.labels[i] for i in order]
        if spec.kind == "gaugehistogram":
            # "le" sorts before every label we use ("panel").
            bucket_lines = [_template(f"{name}_bucket", keys, order, f'le="{le}"') for le in _LE]
            gcount_line = _template(f"{name}_gcount", keys, order)
            gsum_line = _template(f"{name}_gsum", keys, order)
            counts: list[str] = []
            sums: list[str] = []
            for values, (buckets, total) in rows:
                for template, count in zip(bucket_lines, buckets, strict=True):
                    append(f"{line(template, values)}{number(count) or num(count)}\n")
                # _gcount is the +Inf bucket, as prometheus-client writes it.
                gcount = f"{line(gcount_line, values)}{num(float(buckets[-1]))}\n"
                gsum = f"{line(gsum_line, values)}{num(total)}\n"
                if openmetrics:
                    append(gcount + gsum)
                else:
                    counts.append(gcount)
                    sums.append(gsum)
            if not openmetrics:
                # The text format has no gauge histogram: _gcount and _gsum become gauges.
                for suffix, lines in (("_gcount", counts), ("_gsum", sums)):
                    append(f"# HELP {name}{suffix} {help_text}\n# TYPE {name}{suffix} gauge\n")
                    out.extend(lines)
        elif spec.kind == "counter" and openmetrics:
            total_line = _template(f"{name}_total", keys, order)
            created_line = _template(f"{name}_created", keys, order)
            for values, (count, since) in rows:
                append(f"{line(total_line, values)}{number(count) or num(count)}\n")
                append(f"{line(created_line, values)}{number(since) or num(since)}\n")
        elif spec.kind == "counter":
            template = _template(name, keys, order)
            for values, (count, _) in rows:
                append(f"{line(template, values)}{number(count) or num(count)}\n")
        else:
            template = _template(name, keys, order)
            for values, value in rows:
                append(f"{line(template, values)}{number(value) or num(value)}\n")
    return "".join(out).encode("utf-8")


def renderable_panels(
    state: ExporterState, now: float, names: list[str], version: str = __version__
) -> list[str]:
    """The panels of ``names`` whose series can be written; each other one is counted in
    ``state.render_errors`` (and logged the first time)."""
    good: list[str] = []
    for name in names:
        try:
            _render(family_rows(state, now, version, panels=[name], own=False))
        except Exception:
            first = name not in state.render_errors
            state.render_errors[name] = state.render_errors.get(name, 0) + 1
            if first:
                state.render_errors_created[name] = now
                log.exception(
                    "panel left out of the scrape: its series cannot be rendered",
                    extra={"panel": name},
                )
        else:
            good.append(name)
    return good


def render_bytes(
    state: ExporterState,
    now: float,
    version: str = __version__,
    *,
    panels: Iterable[str] | None = None,
    own: bool = True,
    openmetrics: bool = False,
) -> bytes:
    """The Prometheus text format (0.0.4) of :func:`family_rows`, UTF-8 encoded; with
    ``openmetrics``, OpenMetrics 1.0 instead, ending in ``# EOF``.

    Byte for byte what prometheus-client's ``generate_latest`` (or its OpenMetrics
    ``generate_latest``) makes of :func:`build_families` (the tests compare them), written
    directly because prometheus-client's generic path costs about 0.4 s per 1,000 panels
    per scrape, over the 100 ms a scrape may take.

    It always renders: should a panel's series not be writable (the checks in
    :mod:`exporter.values` keep such values out, so this is the last line of defence),
    that panel is left out and counted in ``brainycp_exporter_render_errors_total``.
    """
    names = sorted(state.panels) if panels is None else list(panels)
    families = family_rows(state, now, version, panels=names, own=own)
    # Room for every line of the whole fleet in both formats (/probe renders one panel).
    lines = sum(len(rows) for _, rows in families) + _HISTOGRAM_LINES * len(names)
    keep = 2 * max(lines, lines * len(state.panels) // max(1, len(names))) + 10_000
    try:
        body = _render(families, openmetrics, keep)
    except Exception:
        good = renderable_panels(state, now, names, version)
        body = _render(family_rows(state, now, version, panels=good, own=own), openmetrics, keep)
    return body + OPENMETRICS_EOF if openmetrics else body


class ExporterCollector(Collector):
    """A prometheus-client collector over the shared state; ``clock`` gives unix time.

    ``created`` adds the counters' creation times, for an OpenMetrics exposition.
    """

    def __init__(
        self, state: ExporterState, clock: Callable[[], float] = time.time, *, created: bool = False
    ) -> None:
        self.state = state
        self.clock = clock
        self.created = created

    def collect(self) -> Iterator[Metric]:
        yield from build_families(self.state, self.clock(), created=self.created)
