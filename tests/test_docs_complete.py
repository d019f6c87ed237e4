"""The operator docs are complete against the code: every metric either daemon can serve
is in docs/metrics.md, every config key of the settings models in docs/configuration.md,
every HTTP route in the docs of its daemon; every relative link and ``#anchor`` in the
README, docs/ and bench/README.md resolves; and the docs cite no issue numbers.

Every alert and recording rule of alerts/ has its row in docs/alerts.md. Checked
elsewhere, not repeated here: every alert has a runbook section (tests/test_alerts.py) and
every registered action a row in docs/remediation.md and docs/configuration.md
(tests/test_remediator_action_registry.py). In process, no
subprocess: the names are read from the code's own models, routes and sources (the config
keys from the pydantic models that validate the YAML, private to their modules but the one
list of the keys each section takes)."""

from __future__ import annotations

import ast
import inspect
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from starlette.routing import Route

from brainycp.config.loader import TOP_KEYS
from brainycp.config.panels import _PanelInput
from brainycp.daemon.reload import OpsMiddleware
from exporter import settings as exporter_settings
from exporter.app import create_app
from exporter.poller import initial_state
from exporter.settings import ExporterConfig
from remediator.console import Console
from remediator.metrics import Stats, registry
from remediator.settings.config import _RemediatorInput
from tests.docs_support import github_anchors, prose_lines
from tests.remediator_support import remediator
from tests.support import REPO

DOCS = REPO / "docs"
OPERATOR_DOCS = [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]
ALL_DOCS = [*OPERATOR_DOCS, REPO / "bench" / "README.md"]

# Where the daemons' series are written: their packages and the shared HTTP kit.
METRIC_SOURCES = [REPO / "exporter", REPO / "remediator", REPO / "brainycp" / "daemon"]
METRIC_NAME = re.compile(r"brainycp_[a-z0-9_]+")


# --------------------------------------------------------------------------- tables


def table_rows(markdown: str) -> Iterator[list[str]]:
    """The cells of every table body row of ``markdown`` (header and rule rows left out)."""
    previous = ""
    for line in prose_lines(markdown):
        if line.startswith("|") and not re.fullmatch(r"\|[\s|:-]*\|?", line.strip()):
            if previous.startswith("|"):
                yield [cell.strip() for cell in line.strip().strip("|").split("|")]
            previous = line
        elif line.startswith("|"):
            previous = line
        else:
            previous = ""


def sections(markdown: str) -> dict[str, str]:
    """The text under each ``##``/``###`` heading (up to the next one), by heading text."""
    found: dict[str, str] = {}
    parts = re.split(r"^(#{2,3} .*)$", markdown, flags=re.M)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        found[heading.lstrip("#").strip()] = body
    return found


# --------------------------------------------------------------------------- metrics


def metric_names_in_code() -> set[str]:
    """Every metric family name the daemons' code hands to a metric family or a counter:
    a string literal ``brainycp_...`` that is the first argument of a call."""
    names: set[str] = set()
    for root in METRIC_SOURCES:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (isinstance(node, ast.Call) and node.args):
                    continue
                first = node.args[0]
                value = first.value if isinstance(first, ast.Constant) else None
                if isinstance(value, str) and METRIC_NAME.fullmatch(value):
                    names.add(value)
    return names


def documented_metrics() -> set[str]:
    """The metric names in the first cell of the tables of docs/metrics.md, without
    labels and without the ``_total`` a counter's samples carry."""
    names: set[str] = set()
    for cells in table_rows((DOCS / "metrics.md").read_text()):
        for name in re.findall(r"`(brainycp_[a-z0-9_]+)", cells[0]):
            names.add(name.removesuffix("_total"))
    return names


def test_the_source_scan_finds_every_family_the_collectors_yield() -> None:
    """The scan below is only as good as what it sees: the remediator's collector (every
    optional family switched on) and the exporter's family specs are all in it."""
    stats = Stats()
    stats.controls = lambda: {"paused": {"value": 0}}
    stats.awaiting = lambda: 0
    stats.oldest_awaiting = lambda: 1.0
    yielded = {family.name for family in registry(stats).collect()}
    from exporter import collector

    specs = {v.name for v in vars(collector).values() if isinstance(v, collector.FamilySpec)}
    assert len(yielded) >= 14 and len(specs) >= 18
    assert yielded | specs <= metric_names_in_code()


def test_every_metric_the_daemons_serve_is_in_the_metrics_doc() -> None:
    missing = metric_names_in_code() - documented_metrics()
    assert not missing, f"docs/metrics.md has no row for {sorted(missing)}"


def test_the_metrics_doc_lists_no_metric_the_code_does_not_serve() -> None:
    stale = documented_metrics() - metric_names_in_code()
    assert not stale, f"docs/metrics.md documents {sorted(stale)}, which nothing serves"


# --------------------------------------------------------------------------- config keys


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def config_keys(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, bool]]:
    """Every key of ``model`` as a dotted path (a list of mappings adds no index), and
    whether the key holds a mapping of its own keys."""
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        nested = _models(field.annotation)
        yield key, bool(nested)
        for sub in nested:
            yield from config_keys(sub, key + ".")


def documented_keys(body: str) -> dict[str, str]:
    """The keys in the first cell of each table row of ``body``, with the row's other
    cells. ``a.b` / `.c``` names ``a.b`` and ``a.c``; ``a`, `b`` names both."""
    keys: dict[str, str] = {}
    for cells in table_rows(body):
        base = ""
        for key in re.findall(r"`([^`]+)`", cells[0]):
            if key.startswith(".") and base:
                key = base + key
            base = key.rsplit(".", 1)[0] if "." in key else ""
            keys[key] = " | ".join(cells[1:])
    return keys


def undocumented(model: type[BaseModel], body: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Keys of ``model`` that ``body`` documents neither in a row of their own nor, for a
    key of a nested mapping, in backticks in its parent's row."""
    keys = documented_keys(body)
    missing = []
    for key, nested in config_keys(model):
        if nested or key.split(".")[0] in skip or key in keys:
            continue
        parent, _, leaf = key.rpartition(".")
        if parent and f"`{leaf}`" in keys.get(parent, ""):
            continue
        missing.append(key)
    return missing


def config_section(heading: str) -> str:
    return sections((DOCS / "configuration.md").read_text())[heading]


@pytest.mark.parametrize(
    ("model", "heading", "skip"),
    [
        (_PanelInput, "`defaults` and `panels`", ()),
        (ExporterConfig, "`exporter`", ()),
        (_RemediatorInput, "`remediator`", ("rules", "notify")),
        (typing.get_args(_RemediatorInput.model_fields["rules"].annotation)[0], "Rules", ()),
        (
            typing.get_args(_RemediatorInput.model_fields["notify"].annotation)[0],
            "Notification targets (`notify[]`)",
            (),
        ),
    ],
    ids=["panels", "exporter", "remediator", "rules", "notify"],
)
def test_every_config_key_is_in_the_configuration_doc(
    model: type[BaseModel], heading: str, skip: tuple[str, ...]
) -> None:
    missing = undocumented(model, config_section(heading), skip)
    assert not missing, f"docs/configuration.md, section {heading}, lacks {missing}"


def test_every_top_level_section_has_its_heading() -> None:
    headings = " ".join(sections((DOCS / "configuration.md").read_text()))
    assert all(f"`{key}`" in headings for key in TOP_KEYS), (TOP_KEYS, headings)


# --------------------------------------------------------------------------- routes


def documented_routes(*names: str) -> set[str]:
    """``METHOD /path`` and bare ``/path`` spans in the first cells of the tables of the
    named docs (their endpoint tables); ``ID`` stands for a number, and ``/x/...`` for
    everything under ``/x``."""
    cells = [row[0] for name in names for row in table_rows((DOCS / name).read_text())]
    spans = re.findall(r"`((?:GET |POST )?/[^`\s?]*)", " ".join(cells))
    # `POST /actions/ID/approve|deny` names both.
    return {
        f"{head}{alt}" for span in spans for head, _, alts in [span.rpartition("/")]
        for alt in ([f"/{a}" for a in alts.split("|")] if head else [span])
    }  # fmt: skip


def is_documented(method: str, path: str, documented: set[str]) -> bool:
    shown = re.sub(r"\{[^}]+\}", "ID", path)
    for span in documented:
        verb, _, where = span.rpartition(" ")
        if verb and verb != method:
            continue
        if where == shown or (where.endswith("/...") and shown.startswith(where[:-4])):
            return True
    return False


def routes(app: Any) -> Iterator[tuple[str, str]]:
    for route in app.routes:
        if isinstance(route, Route):
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                yield method, route.path


def gate_paths() -> list[str]:
    """The paths the shared reload gate answers itself, in front of either app."""
    return re.findall(r'path == "(/[^"]*)"', inspect.getsource(OpsMiddleware))


def test_every_route_of_the_exporter_is_documented() -> None:
    config = exporter_settings.parse_config(
        {"panels": {"web01": {"url": "http://127.0.0.1:9", "username": "a", "password": "b"}}}
    )
    served = [*routes(create_app(initial_state(config))), *(("POST", p) for p in gate_paths())]
    documented = documented_routes("metrics.md", "operations.md")
    missing = [f"{m} {p}" for m, p in served if not is_documented(m, p, documented)]
    assert len(served) >= 7 and not missing, f"exporter routes without docs: {missing}"


def test_every_route_of_the_remediator_is_documented(tmp_path: Path) -> None:
    rem = remediator(tmp_path)
    try:
        served = [*routes(rem.app()), *routes(Console(rem).app())]
    finally:
        rem.journal.close()
    served += [("POST", path) for path in gate_paths()]
    documented = documented_routes("remediation.md")
    missing = [f"{m} {p}" for m, p in served if not is_documented(m, p, documented)]
    assert len(served) >= 25 and not missing, f"remediator routes without docs: {missing}"


# --------------------------------------------------------------------------- alerts


def rules_file() -> list[dict[str, Any]]:
    doc = yaml.safe_load((REPO / "alerts" / "brainycp-mail.rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def first_cells(heading: str) -> str:
    body = sections((DOCS / "alerts.md").read_text())[heading]
    return " ".join(cells[0] for cells in table_rows(body))


def test_every_alert_has_its_row_in_the_alerts_doc() -> None:
    cells = first_cells("Alerts")
    alerts = [rule["alert"] for rule in rules_file() if "alert" in rule]
    missing = [name for name in alerts if f"[{name}](runbooks.md#{name.lower()})" not in cells]
    assert len(alerts) >= 20 and not missing, f"docs/alerts.md has no row for {missing}"


def test_every_recording_rule_has_its_row_in_the_alerts_doc() -> None:
    cells = first_cells("Recording rules")
    records = [rule["record"] for rule in rules_file() if "record" in rule]
    missing = [name for name in records if f"`{name}`" not in cells]
    assert len(records) >= 10 and not missing, f"docs/alerts.md has no row for {missing}"


# --------------------------------------------------------------------------- links


def relative_links(markdown: str) -> Iterator[str]:
    """Targets of the Markdown links and images of ``markdown`` that stay in the
    repository (no scheme, no ``mailto:``), outside code blocks and code spans."""
    for line in prose_lines(markdown):
        prose = re.sub(r"`[^`]*`", "", line)
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):
                yield target


def broken_links(doc: Path) -> list[str]:
    broken = []
    for target in relative_links(doc.read_text()):
        path, _, anchor = target.partition("#")
        where = (doc.parent / path).resolve() if path else doc
        if not where.exists():
            broken.append(f"{target}: no {where.relative_to(REPO)}")
        elif anchor and (where.suffix != ".md" or anchor not in github_anchors(where.read_text())):
            broken.append(f"{target}: no heading #{anchor}")
    return broken


@pytest.mark.parametrize("doc", ALL_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(doc: Path) -> None:
    assert not broken_links(doc)


def test_the_link_check_sees_links_and_anchors() -> None:
    """Guards the check above: the README links into docs/ with anchors it can resolve."""
    readme = REPO / "README.md"
    targets = list(relative_links(readme.read_text()))
    assert sum("#" in t for t in targets) >= 5 and len(targets) >= 15, targets


# --------------------------------------------------------------------------- issue numbers

ISSUE_REFERENCE = re.compile(
    r"\bissues?\s+#?\d+|(?<![\w&/#])#\d+\b|\(\d{1,2}\.\d\)|\bPR\s*#?\d+", re.IGNORECASE
)


@pytest.mark.parametrize("doc", ALL_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_docs_cite_no_issue_numbers(doc: Path) -> None:
    found = [
        f"{n}: {match.group(0)}"
        for n, line in enumerate(doc.read_text().splitlines(), 1)
        for match in ISSUE_REFERENCE.finditer(line)
    ]
    assert not found, found
