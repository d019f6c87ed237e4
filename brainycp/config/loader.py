"""Load the one YAML config file both daemons read: the shared sections and one daemon's.

The file has four top-level keys: ``defaults`` and ``panels`` (shared, see
:mod:`brainycp.config.panels`), ``exporter`` and ``remediator`` (each daemon's own). A
daemon passes its :class:`Section` (its key and the function that validates it); the
other daemon's section is not read, so a broken ``remediator:`` never stops the exporter
and a broken ``exporter:`` never stops the remediator. Without a section only the shared
ones are checked (the doctor). Every problem is reported as ``key.path: what is wrong``,
all of them in one :class:`~brainycp.config.errors.ConfigError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from brainycp.config.errors import ConfigError
from brainycp.config.panels import PanelConfig, build_panels
from brainycp.config.yamlguard import load_yaml, read_config_text

T = TypeVar("T")

DAEMON_SECTIONS = ("exporter", "remediator")
"""The daemons' own top-level keys: known here by name only, validated by each daemon."""
TOP_KEYS = ("defaults", "panels", *DAEMON_SECTIONS)

SectionParser = Callable[[object, list[str], list[str]], T | None]
"""Validates a daemon's section: ``(raw value, errors, warnings)`` to its settings, or
None when it appended to ``errors`` why not."""


@dataclass(frozen=True)
class Section(Generic[T]):
    """One daemon's top-level key and the function that validates it."""

    key: str
    parse: SectionParser[T]


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """A validated config file: the panels (defaults applied, passwords read), the
    daemon's section (None when none was asked for), and the warnings found."""

    panels: dict[str, PanelConfig]
    section: T
    warnings: tuple[str, ...] = ()


@overload
def parse_config(
    data: Any,
    section: None = None,
    *,
    require_panels: bool = False,
    panel_errors: dict[str, list[str]] | None = None,
) -> Loaded[None]: ...


@overload
def parse_config(
    data: Any,
    section: Section[T],
    *,
    require_panels: bool = False,
    panel_errors: dict[str, list[str]] | None = None,
) -> Loaded[T]: ...


def parse_config(
    data: Any,
    section: Section[Any] | None = None,
    *,
    require_panels: bool = False,
    panel_errors: dict[str, list[str]] | None = None,
) -> Loaded[Any]:
    """Validate an already-loaded YAML document; raise :class:`ConfigError` with every problem.

    ``require_panels`` (a daemon at start): a file without panels is refused; otherwise
    only a ``panels`` key that names none is. ``panel_errors`` (the doctor's): a dict
    that gets an entry for every configured panel, its own problems or ``[]``; those
    problems are then left out of the :class:`ConfigError`, and a panel that has any is
    left out of ``panels``.
    """
    errors: list[str] = []
    warnings: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            ["(top level): must be a mapping with defaults, panels, exporter, remediator"]
        )
    for key in data:
        if key not in TOP_KEYS:
            errors.append(f"{key}: unknown key (expected one of {', '.join(TOP_KEYS)})")
    if "panels" in data or require_panels:
        raw_panels = data.get("panels")
        if raw_panels is None or raw_panels == {}:
            errors.append("panels: no panels configured; name at least one panel with its url")
    panels = build_panels(data.get("defaults"), data.get("panels"), errors, warnings, panel_errors)
    own = None
    if section is not None:
        own = section.parse(data.get(section.key), errors, warnings)
        if own is None and not errors:
            errors.append(f"{section.key}: invalid")
    if errors:
        raise ConfigError(errors)
    return Loaded(panels=panels, section=own, warnings=tuple(warnings))


@overload
def load_config(
    path: str | os.PathLike[str],
    section: None = None,
    *,
    require_panels: bool = False,
    panel_errors: dict[str, list[str]] | None = None,
) -> Loaded[None]: ...


@overload
def load_config(
    path: str | os.PathLike[str],
    section: Section[T],
    *,
    require_panels: bool = False,
    panel_errors: dict[str, list[str]] | None = None,
) -> Loaded[T]: ...


def load_config(
    path: str | os.PathLike[str],
    section: Section[Any] | None = None,
    *,
    require_panels: bool = False,
    panel_errors: dict[str, list[str]] | None = None,
) -> Loaded[Any]:
    """Read and validate the YAML config file at ``path`` (see :func:`parse_config`)."""
    data = load_yaml(read_config_text(path), str(path))
    return parse_config(data, section, require_panels=require_panels, panel_errors=panel_errors)
