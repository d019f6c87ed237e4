"""A faster writer of the Prometheus text format, byte-identical to prometheus-client's.

``prometheus_client.generate_latest`` spends ~8 us per sample (label-name validation and
escaping per sample); 1,000 panels are ~34,000 samples, over 250 ms a scrape. This writer
escapes each label value once and formats each sample with one f-string.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

_TYPES = {
    "counter": "counter",
    "gauge": "gauge",
    "gaugehistogram": "histogram",
    "histogram": "histogram",
    "summary": "summary",
    "unknown": "untyped",
}
_SUFFIXED = ("_created", "_gsum", "_gcount")


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _line(name: str, labels: dict[str, str], value: float) -> str:
    if labels:
        text = ",".join(f'{k}="{_escape(labels[k])}"' for k in sorted(labels))
        return f"{name}{{{text}}} {floatToGoString(value)}\n"  # type: ignore[no-untyped-call]
    return f"{name} {floatToGoString(value)}\n"  # type: ignore[no-untyped-call]


def render(families: Iterable[Metric]) -> str | None:
    """The text format of ``families``; None when one needs prometheus-client's writer.

    Only gauges, counters and (gauge) histograms without timestamps or exemplars are
    written here; anything else makes the caller fall back to ``generate_latest``.
    """
    out: list[str] = []
    for metric in families:
        mtype = _TYPES.get(metric.type)
        if mtype is None:
            return None
        name = metric.name + "_total" if metric.type == "counter" else metric.name
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {mtype}\n")
        extra: dict[str, list[str]] = {}
        for sample in metric.samples:
            if sample.timestamp is not None or sample.exemplar is not None:
                return None
            line = _line(sample.name, sample.labels, sample.value)
            for suffix in _SUFFIXED:
                if sample.name == metric.name + suffix:
                    extra.setdefault(suffix, []).append(line)
                    break
            else:
                out.append(line)
        for suffix, lines in extra.items():
            out.append(f"# HELP {metric.name}{suffix} {doc}\n")
            out.append(f"# TYPE {metric.name}{suffix} gauge\n")
            out.extend(lines)
    return "".join(out)
