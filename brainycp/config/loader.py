"""Load the one YAML config file both daemons read: the shared sections and one daemon's.

The file has four top-level keys: ``defaults`` and ``panels`` (shared, see
:mod:`brainycp.config.panels`), ``exporter`` and ``remediator`` (each daemon's own). A
daemon passes its :class:`Section` (its key, the function that validates it, and its
config type) to :func:`parse_config`; the other daemon's section is not read, so a broken
``remediator:`` never stops the exporter and a broken ``exporter:`` never stops the
remediator. :func:`parse_shared` checks only the shared sections (the doctor). Every
problem is reported as ``key.path: what is wrong``, all of them in one
:class:`~brainycp.config.errors.ConfigError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from brainycp.config.errors import ConfigError
from brainycp.config.panels import PanelConfig, build_panels
from brainycp.config.yamlguard import load_yaml_file

T = TypeVar("T")
C = TypeVar("C")

DAEMON_SECTIONS = ("exporter", "remediator")
"""The daemons' own top-level keys: known here by name only, validated by each daemon."""
TOP_KEYS = ("defaults", "panels", *DAEMON_SECTIONS)

SectionParser = Callable[[object, list[str], list[str]], T | None]
"""Validates a daemon's section: ``(raw value, errors, warnings)`` to its settings, or
None when it appended to ``errors`` why not."""


@dataclass(frozen=True)
class Section(Generic[T, C]):
    """One daemon's top-level ``key``, the function that validates it, and ``config``,
    which makes the daemon's whole config of ``(panels, section, warnings)``."""

    key: str
    parse: SectionParser[T]
    config: Callable[[dict[str, PanelConfig], T, tuple[str, ...]], C]


@dataclass(frozen=True)
class SharedConfig:
    """The shared sections of a config file: the panels (defaults applied, passwords
    read) and the warnings found."""

    panels: dict[str, PanelConfig]
    warnings: tuple[str, ...] = ()


def _shared(
    data: Any,
    errors: list[str],
    warnings: list[str],
    require_panels: bool,
    panel_errors: dict[str, list[str]] | None,
) -> tuple[dict[str, Any], dict[str, PanelConfig]]:
    """The document as a mapping and its valid panels; the problems go to ``errors``."""
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
    return data, panels


def parse_shared(
    data: Any, *, require_panels: bool = False, panel_errors: dict[str, list[str]] | None = None
) -> SharedConfig:
    """Validate the shared sections of a loaded YAML document; raise :class:`ConfigError`
    with every problem (the daemons' sections are not read).

    ``require_panels``: a file without panels is refused; otherwise only a ``panels`` key
    that names none is. ``panel_errors`` (the doctor's): a dict that gets an entry for
    every configured panel, its own problems or ``[]``; those problems are then left out
    of the :class:`ConfigError`, and a panel that has any is left out of ``panels``.
    """
    errors: list[str] = []
    warnings: list[str] = []
    _, panels = _shared(data, errors, warnings, require_panels, panel_errors)
    if errors:
        raise ConfigError(errors)
    return SharedConfig(panels, tuple(warnings))


def load_shared(
    path: str | os.PathLike[str], *, panel_errors: dict[str, list[str]] | None = None
) -> SharedConfig:
    """Read the config file at ``path`` and validate its shared sections (the doctor)."""
    return parse_shared(load_yaml_file(path), panel_errors=panel_errors)


def parse_config(data: Any, section: Section[T, C], *, require_panels: bool = False) -> C:
    """Validate the shared sections and ``section`` of a loaded YAML document into the
    daemon's config; raise :class:`ConfigError` with every problem (see
    :func:`parse_shared`). The other daemon's section is not read."""
    errors: list[str] = []
    warnings: list[str] = []
    document, panels = _shared(data, errors, warnings, require_panels, None)
    own = section.parse(document.get(section.key), errors, warnings)
    if own is None and not errors:
        errors.append(f"{section.key}: invalid")
    if errors or own is None:
        raise ConfigError(errors)
    return section.config(panels, own, tuple(warnings))
