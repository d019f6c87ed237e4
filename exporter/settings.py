"""The exporter's settings: its ``exporter`` section, and the config file as it reads it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator

from brainycp.config import loader
from brainycp.config.errors import validation_errors
from brainycp.config.panels import PanelConfig
from brainycp.config.values import Duration, Listen, SecondsDuration, Shard, Strict
from brainycp.config.yamlguard import load_yaml_file


class ExporterConfig(Strict):
    """The ``exporter`` section: where to listen, how often to poll, what to export."""

    listen: Listen = "0.0.0.0:9863"
    interval: SecondsDuration = 60.0
    list_interval: Duration = 300.0
    max_concurrency: int = Field(default=32, ge=1, le=10000)
    max_staleness: Duration = 600.0
    top_senders: int = Field(default=0, ge=0, le=1000)
    top_recipient_domains: int = Field(default=0, ge=0, le=1000)
    shard: Shard = None
    """``(index, count)``: serve only the panels whose name hashes to ``index``."""
    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    """Concurrent HTTP connections; a request beyond them gets a 503."""
    grafana_url: str = ""
    """Grafana's base URL: the fleet view (``/``) links to the shipped dashboards there."""

    @field_validator("grafana_url")
    @classmethod
    def _grafana_url(cls, value: str) -> str:
        if not value:
            return ""
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises on a port that is not a number or out of range)
        except ValueError as exc:
            raise ValueError(f"is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. https://grafana.example.net")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials (the page shows it to every visitor)")
        if parts.query or parts.fragment:
            raise ValueError("must be Grafana's base URL, without ?query or #fragment")
        if any(ord(c) < 0x21 or c in "<>\"'" for c in value):
            raise ValueError("must not hold spaces, quotes, angle brackets or control characters")
        return value.rstrip("/")


def parse_section(raw: object, errors: list[str], warnings: list[str]) -> ExporterConfig | None:
    """The ``exporter`` section validated; None when ``errors`` got the reasons."""
    try:
        return ExporterConfig.model_validate(raw or {})
    except ValidationError as exc:
        errors.extend(validation_errors("exporter", exc))
        return None


@dataclass(frozen=True)
class Config:
    """The config file as the exporter reads it: the shared panels and its own section."""

    panels: dict[str, PanelConfig]
    exporter: ExporterConfig
    warnings: tuple[str, ...] = ()


SECTION = loader.Section("exporter", parse_section, Config)


def parse_config(data: Any, *, require_panels: bool = False) -> Config:
    """Validate a loaded YAML document (:func:`brainycp.config.loader.parse_config`)."""
    return loader.parse_config(data, SECTION, require_panels=require_panels)


def load_config(path: str | os.PathLike[str], *, require_panels: bool = True) -> Config:
    """Read and validate the config file as the exporter does at start and at reload."""
    return parse_config(load_yaml_file(path), require_panels=require_panels)
