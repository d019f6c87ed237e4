"""The HTTP side: ``/metrics`` from the shared state, the fleet view (``/``), ``/healthz``."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as _untyped_openmetrics
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
from exporter.collector import OPENMETRICS_EOF, ExporterCollector, render_bytes
from exporter.fleet import FleetView
from exporter.state import ExporterState

# prometheus-client's OpenMetrics writer, for the process collectors after our own series.
openmetrics_latest: Callable[[CollectorRegistry], bytes] = _untyped_openmetrics


def build_registry(
    state: ExporterState,
    *,
    clock: Callable[[], float] = time.time,
    process: bool = True,
    created: bool = False,
) -> CollectorRegistry:
    """An own registry (not the global one) with the exporter's collector.

    ``process=True`` adds prometheus-client's process and platform collectors;
    ``created=True`` gives the counters their creation times (for OpenMetrics).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ExporterCollector(state, clock, created=created))
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


def wants_openmetrics(accept: str) -> bool:
    """True when ``accept`` (an Accept header) prefers OpenMetrics 1.0 to the text format.

    Prometheus asks ``application/openmetrics-text;version=1.0.0,...,text/plain;
    version=0.0.4;q=0.5,*/*;q=0.1``; a client that names neither gets the text format.
    """
    best = {"openmetrics": 0.0, "text": 0.0}
    for entry in accept.split(","):
        media, *params = (part.strip() for part in entry.split(";"))
        options = dict(p.partition("=")[::2] for p in params)
        try:
            quality = float(options.get("q", "1"))
        except ValueError:
            continue
        if media == "application/openmetrics-text":
            if options.get("version", "1.0.0") == "1.0.0":
                best["openmetrics"] = max(best["openmetrics"], quality)
        elif media in ("text/plain", "text/*", "*/*"):
            best["text"] = max(best["text"], quality)
    return best["openmetrics"] > 0 and best["openmetrics"] >= best["text"]


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

    ``/metrics`` is :func:`~exporter.collector.render_bytes` of the state followed by
    ``extra`` (by default the process and platform collectors): the same bytes as
    :func:`build_registry` would give, several times faster for a large fleet. It is
    OpenMetrics 1.0 when the client prefers it (:func:`wants_openmetrics`; Prometheus
    does), else the 0.0.4 text format; so is ``/probe``.
    """
    others = process_registry() if extra is None else extra

    async def metrics(request: Request) -> Response:
        now = clock()
        if wants_openmetrics(request.headers.get("accept", "")):
            own = render_bytes(state, now, openmetrics=True)
            # One "# EOF" at the very end, after the process collectors.
            body = own[: -len(OPENMETRICS_EOF)] + openmetrics_latest(others)
            return Response(body, media_type=OPENMETRICS_TYPE)
        body = render_bytes(state, now) + generate_latest(others)
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
        openmetrics = wants_openmetrics(request.headers.get("accept", ""))
        body = render_bytes(state, clock(), panels=(target,), own=False, openmetrics=openmetrics)
        return Response(
            body, media_type=OPENMETRICS_TYPE if openmetrics else CONTENT_TYPE_PLAIN_0_0_4
        )

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
