"""Which panels a replica serves: Prometheus's ``hashmod`` of the panel name.

The split is the one a ``hashmod`` relabelling would make (Prometheus
``model/relabel/relabel.go``: ``binary.BigEndian.Uint64(md5(value)[8:]) % modulus``), so
an operator can reproduce it with Prometheus's own rules or a line of Python.
"""

from __future__ import annotations

import dataclasses
import hashlib

from exporter.settings import Config


def hashmod(value: str, modulus: int) -> int:
    """Prometheus's ``hashmod``: the last 8 bytes of MD5(value), big-endian, modulo ``modulus``."""
    digest = hashlib.md5(value.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % modulus


def in_shard(panel: str, shard: tuple[int, int] | None) -> bool:
    """True when ``panel`` belongs to ``shard`` (``(index, count)``; None is every panel)."""
    if shard is None:
        return True
    index, count = shard
    return hashmod(panel, count) == index


def shard_config(config: Config, shard: tuple[int, int] | None = None) -> Config:
    """``config`` with only the panels of ``shard`` (default: ``exporter.shard`` of the config).

    The served panel set is a function of the config and the shard alone, so a reload
    (or a change of COUNT) recomputes it with the same call.
    """
    if shard is None:
        shard = config.exporter.shard
    exporter = config.exporter.model_copy(update={"shard": shard})
    panels = {name: panel for name, panel in config.panels.items() if in_shard(name, shard)}
    return dataclasses.replace(config, panels=panels, exporter=exporter)
