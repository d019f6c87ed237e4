"""The HTTP side: ``/metrics`` from the shared state, the fleet view (``/``), ``/healthz``."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from brainycp.daemon.asgiguard import QueryGuard
from brainycp.daemon.htmlpages import stylesheet_response
from exporter.collector import ExporterCollector, render_bytes
from exporter.fleet import FleetView
from exporter.state import ExporterState


def build_registry(
    state: ExporterState, *, clock: Callable[[], float] = time.time, process: bool = True
) -> CollectorRegistry:
    """An own registry (not the global one) with the exporter's collector.

    ``process=True`` adds prometheus-client's process and platform collectors.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ExporterCollector(state, clock))
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry


def process_registry() -> CollectorRegistry:
    """prometheus-client's process and platform collectors, in a registry of their own."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def service_discovery(state: ExporterState, host: str) -> list[dict[str, object]]:
    """Prometheus HTTP SD entries: one per panel, scraped at ``host`` with ``target=PANEL``.

    ``host`` is where the request for this list came to (its Host header), so
    Prometheus scrapes the replica that serves the panel, under the name it used.
    """
    entries: list[dict[str, object]] = []
    for name in sorted(state.panels):
        labels = {**dict(state.panels[name].labels), "__param_target": name, "panel": name}
        entries.append({"targets": [host], "labels": labels})
    return entries


def create_app(
    state: ExporterState,
    *,
    clock: Callable[[], float] = time.time,
    extra: CollectorRegistry | None = None,
) -> Starlette:
    """The Starlette app; no route ever calls a panel.

    ``/metrics`` is :func:`~exporter.collector.render_text` of the state followed by
    ``extra`` (by default the process and platform collectors): the same bytes as
    :func:`build_registry` would give, several times faster for a large fleet.
    """
    others = process_registry() if extra is None else extra

    async def metrics(request: Request) -> Response:
        body = render_bytes(state, clock()) + generate_latest(others)
        # The classic 0.0.4 text format is what render_text writes and every Prometheus reads.
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)

    fleet = FleetView(state, clock)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def probe(request: Request) -> Response:
        # Multi-target mode: one panel's series from the last poll; never calls the panel.
        target = request.query_params.get("target", "")
        if target not in state.panels:
            reason = "no target given" if not target else "unknown target (not served here)"
            return PlainTextResponse(f"{reason}\n", status_code=404)
        body = render_bytes(state, clock(), panels=(target,), own=False)
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)

    async def sd(request: Request) -> Response:
        # The address this request came to; the raw Host header, never parsed into a URL
        # (a hostile one must not become a 500).
        host = request.headers.get("host", "")
        if not host:
            server = request.scope.get("server") or ("127.0.0.1", 0)
            host = f"{server[0]}:{server[1]}"
        return JSONResponse(service_discovery(state, host))

    return Starlette(
        middleware=[Middleware(QueryGuard)],
        routes=[
            Route("/metrics", metrics),
            Route("/", fleet.page),
            Route("/style.css", stylesheet_response),
            Route("/healthz", healthz),
            Route("/probe", probe),
            Route("/sd", sd),
        ],
    )
