"""Reload without a restart (``SIGHUP``, ``POST /-/reload``) and the gate in front of it.

Both daemons reload the same way: :class:`Reloader` runs the daemon's own reload
function one at a time and keeps ``brainycp_config_last_reload_successful`` and
``..._success_timestamp_seconds``; :class:`OpsMiddleware` answers ``/-/reload`` and
asks for credentials on the paths a daemon protects. A reload that fails changes
nothing: the daemon keeps the config it runs with.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Protocol, TypeVar

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from brainycp.config.errors import ConfigError
from brainycp.daemon.access import AuthFailures, Identity, remember
from brainycp.daemon.basicauth import basic_credentials
from brainycp.daemon.responses import header, send_json
from brainycp.daemon.scraped import Scraped
from brainycp.daemon.webconfig import WebConfigHolder

log = logging.getLogger("brainycp.reload")

ReloadFunction = Callable[[], Sequence[str]]
"""Re-reads the config and applies it; returns the problems (empty when it was applied)."""


class Reloader:
    """Runs reloads one at a time and remembers how the last one went."""

    def __init__(self, reload: ReloadFunction, *, clock: Callable[[], float] = time.time) -> None:
        self._reload = reload
        self._clock = clock
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Sequence[str]]] = set()
        self.successful = True
        self.success_timestamp = clock()

    async def reload(self, trigger: str) -> list[str]:
        """Reload now; the problems, each logged on its own line, or [] when applied."""
        async with self._lock:
            try:
                problems = list(self._reload())
            except Exception as exc:  # a bug must not leave the daemon half-reloaded silently
                log.exception("reload failed")
                problems = [f"internal error: {type(exc).__name__}"]
            if problems:
                self.successful = False
                for problem in problems:
                    log.error("reload (%s): %s", trigger, problem)
                log.error("reload (%s) failed; still running with the previous config", trigger)
            else:
                self.successful = True
                self.success_timestamp = self._clock()
                log.info("config reloaded", extra={"trigger": trigger})
            return problems

    def on_signal(self) -> None:
        """SIGHUP handler: start a reload in the background."""
        task = asyncio.get_running_loop().create_task(self.reload("SIGHUP"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reload on SIGHUP (which would otherwise end the process)."""
        loop.add_signal_handler(signal.SIGHUP, self.on_signal)

    def collector(self) -> Collector:
        """``brainycp_config_last_reload_successful`` and its timestamp, for the registry."""
        return Scraped(self._families)

    def _families(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "brainycp_config_last_reload_successful",
            "Whether the last config reload succeeded (1) or was refused (0).",
            value=1 if self.successful else 0,
        )
        yield GaugeMetricFamily(
            "brainycp_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load (the start counts).",
            value=self.success_timestamp,
        )


Authorize = Callable[[Scope], Awaitable[Identity | None]]
"""Who sent a request (:func:`brainycp.daemon.access.identity` and what a daemon adds), or None."""
AUTHENTICATED = "brainycp.authenticated"
"""Scope key set on a request that :class:`OpsMiddleware` authenticated (its
:class:`~brainycp.daemon.access.Identity` is recorded too)."""


@dataclass
class OpsMiddleware:
    """Serves ``POST /-/reload`` and guards the paths outside ``open_paths``.

    ``authorize(scope)`` says who may reload or see a guarded path (None: nobody);
    ``challenge`` is the ``WWW-Authenticate`` value of a 401. With ``guard_all=False``
    only ``/-/reload`` is guarded. A refused request that sent credentials is counted
    on ``failures``.
    """

    app: ASGIApp
    reloader: Reloader
    authorize: Authorize
    _: KW_ONLY
    challenge: str | None
    refusal: str = "missing or wrong credentials"
    guard_all: bool = False
    open_paths: Collection[str] = ()
    failures: AuthFailures | None = None

    async def _admit(self, scope: Scope, send: Send) -> bool:
        """Record who sent ``scope``; else answer 401/403 (and count it) and say False."""
        who = await self.authorize(scope)
        if who is not None:
            remember(scope, who)
            # The app's own checks (the remediator's people endpoints) trust this mark.
            scope[AUTHENTICATED] = True
            return True
        sent = header(scope, b"authorization")
        if sent is not None and self.failures is not None:
            creds = basic_credentials(sent)
            self.failures.record(scope, creds[0] if creds else None, "not accepted here")
        await self._refuse(send)
        return False

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": self.refusal}).encode()
        if self.challenge is None:
            await send_json(send, 403, body, [])
        else:
            await send_json(send, 401, body, [(b"www-authenticate", self.challenge.encode())])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/-/reload":
            if scope["method"] not in ("POST", "PUT"):
                body = b'{"error": "use POST /-/reload"}'
                await send_json(send, 405, body, [(b"allow", b"POST, PUT")])
                return
            if not await self._admit(scope, send):
                return
            problems = await self.reloader.reload("/-/reload")
            if problems:
                body = json.dumps({"status": "error", "errors": problems}).encode()
                await send_json(send, 400, body, [])
            else:
                await send_json(send, 200, b'{"status": "success"}', [])
            return
        if self.guard_all and path not in self.open_paths and not await self._admit(scope, send):
            return
        await self.app(scope, receive, send)


class LoadedConfig(Protocol):
    """What a daemon's config gives a reload besides its settings."""

    @property
    def warnings(self) -> tuple[str, ...]: ...


C = TypeVar("C", bound=LoadedConfig)


def reload_files(
    config_path: str | None,
    load: Callable[[str], C],
    web: WebConfigHolder,
    *,
    refuse: Callable[[C], list[str]],
    apply: Callable[[C], None],
    logger: logging.Logger,
) -> list[str]:
    """Re-read the config file (with ``load``) and the web config, and apply all of both;
    else apply nothing and return the problems.

    ``refuse`` lists what the running daemon cannot take from the new config (a change
    that needs a restart); the web config must suit the running listener
    (:meth:`WebConfigHolder.problems`). ``apply`` switches the daemon to the new config
    after the web config is in force and the config's warnings are logged.
    """
    if config_path is None:
        return ["no config file to reload"]
    try:
        config = load(config_path)
        new_web = web.reread()
    except ConfigError as exc:
        return exc.errors
    problems = refuse(config) + web.problems(new_web)
    if problems or (problems := web.use_web(new_web)):
        return problems
    for warning in config.warnings:
        logger.warning("config: %s", warning)
    apply(config)
    return []
