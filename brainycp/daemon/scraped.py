"""Metric families made at each scrape from what a daemon's HTTP layers count."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector


class Scraped(Collector):
    """A collector whose families ``families()`` makes at each scrape, from live values."""

    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families()
