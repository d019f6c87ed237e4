"""One server set-up for both daemons: the HTTP side from a bound socket to the stop.

:class:`HttpService` runs a daemon's ASGI app under uvicorn on the socket the daemon
bound first (:func:`~brainycp.daemon.listener.open_listener`), with the listener's limits,
TLS from the web config, ``SIGTERM``/``SIGINT`` to stop and ``SIGHUP`` to reload; the
signal handlers stay until the daemon has finished its own shutdown work.
:func:`guarded` puts the layers every daemon has in front of its app.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Collection, Iterable, Iterator
from types import TracebackType
from typing import Any

import uvicorn
from prometheus_client.registry import CollectorRegistry
from starlette.types import ASGIApp

from brainycp.daemon.basicauth import BasicAuthMiddleware
from brainycp.daemon.crossorigin import CrossOriginGuard
from brainycp.daemon.listener import DEFAULT_MAX_CONNECTIONS, server_config
from brainycp.daemon.reload import Reloader
from brainycp.daemon.responses import gzipped
from brainycp.daemon.webconfig import WebConfigHolder

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Server(uvicorn.Server):
    """Uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT.

    Uvicorn re-raises a captured signal after its shutdown, which would end the
    process with the signal (before the remediator drains its actions) instead of
    exit code 0. :attr:`startup_done` is set once uvicorn's start-up has ended, listening
    or not.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_done = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.startup_done.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpService:
    """A daemon's app served on its bound ``sock`` until a stop signal.

    Use it as ``async with``: inside, SIGTERM and SIGINT call ``on_stop(signal name)``
    and end :meth:`serve`; SIGHUP runs ``reloader``. The handlers are removed on leaving
    the block, after the daemon's own shutdown work. ``web`` gives the listener its TLS
    and keeps its SSL context for reloads; uvicorn waits at most ``shutdown_seconds``
    for open connections at the stop.
    """

    def __init__(
        self,
        app: ASGIApp,
        sock: socket.socket,
        web: WebConfigHolder,
        reloader: Reloader,
        *,
        host: str,
        port: int,
        shutdown_seconds: int,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        on_stop: Callable[[str], None] = lambda signame: None,
    ) -> None:
        uconfig = server_config(
            app,
            host=host,
            port=port,
            max_connections=max_connections,
            timeout_graceful_shutdown=shutdown_seconds,
        )
        web.load_listener(uconfig)
        self.server = Server(uconfig)
        self.sock = sock
        self.reloader = reloader
        self.on_stop = on_stop

    def stop(self, signame: str) -> None:
        """What a stop signal does: tell the daemon, then end :meth:`serve`."""
        self.on_stop(signame)
        self.server.should_exit = True

    async def __aenter__(self) -> HttpService:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.stop, sig.name)
        self.reloader.install(loop)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        for sig in (*STOP_SIGNALS, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    async def serve(self) -> None:
        """Serve until a stop signal, then close the listener and the connections."""
        await self.server.serve(sockets=[self.sock])

    async def wait_started(self, serving: asyncio.Future[None]) -> bool:
        """Wait until the server listens (True) or ``serving`` ended first (False)."""
        ready: asyncio.Future[Any] = asyncio.ensure_future(self.server.startup_done.wait())
        either: set[asyncio.Future[Any]] = {ready, serving}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        return self.server.started


def guarded(
    app: ASGIApp,
    web: WebConfigHolder,
    registry: CollectorRegistry,
    *,
    realm: str,
    open_paths: Collection[str] = (),
    trusted: Callable[[], Iterable[str]] = tuple,
) -> ASGIApp:
    """``app`` behind the layers both daemons put in front of theirs, outermost last:
    basic auth for the web config's users (not on ``open_paths``), the cross-origin guard
    (``trusted`` origins besides the request's host) and gzip; the guard's counter goes on
    ``registry``."""
    layered = BasicAuthMiddleware(
        app, web.auth, realm=realm, open_paths=open_paths, failures=web.failures
    )
    # A browser's cross-site form must not reach a state-changing endpoint.
    same_site = CrossOriginGuard(layered, trusted=trusted)
    registry.register(same_site.collector())
    return gzipped(same_site)
