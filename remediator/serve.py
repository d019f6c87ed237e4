"""``brainycp-mail-remediator`` serving: the journal lock, reload and the gate in front of
the app, and the daemon's life from start to drained stop."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fcntl
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from starlette.types import ASGIApp, Scope

from brainycp import __version__
from brainycp.config.values import split_listen
from brainycp.daemon import startup
from brainycp.daemon.access import NO_AUTH, WEBHOOK_CREDENTIALS, AuthFailures, Identity, identity
from brainycp.daemon.listener import open_listener
from brainycp.daemon.logsetup import setup_logging
from brainycp.daemon.reload import OpsMiddleware, Reloader, reload_files
from brainycp.daemon.responses import header
from brainycp.daemon.server import HttpService, guarded
from brainycp.daemon.webconfig import WebConfig, WebConfigHolder
from remediator.app import Remediator
from remediator.console import Console, mount
from remediator.journal import Journal
from remediator.metrics import Stats
from remediator.recovery import Adopter, keep_leases, open_journal, prune_forever
from remediator.routes.common import authorized
from remediator.runner import Runner
from remediator.settings.config import Config, RemediatorConfig, load_config

log = logging.getLogger("remediator")


def lock_state_file(state_file: Path) -> int | None:
    """Hold an exclusive lock beside the journal for the life of the process.

    Recovery rewrites unfinished rows; a second remediator on the same journal
    (started by mistake, or a restart racing the old process) must not do that
    under a live one, or it would interrupt or re-run actions still in flight.
    Returns the lock's file descriptor, or None when another process holds it;
    raises ``OSError`` when the lock file cannot be created.
    """
    state_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{state_file}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


RESTART_ONLY = ("listen", "state_file", "journal_retention", "journal")
"""``remediator`` keys read only at start: a reload that changes one is refused."""


class Lifecycle(WebConfigHolder):
    """Reload and the gate in front of every path but ``/webhook``, ``/metrics``, ``/healthz``.

    A request there is let in for who it is (:meth:`authorize`): a web-config user or a
    client certificate verified on its connection, else the webhook's own credentials.
    """

    OPEN_PATHS = frozenset({"/webhook", "/metrics", "/healthz"})

    def __init__(
        self,
        remediator: Remediator,
        config_path: str | None,
        web_path: str | None,
        web: WebConfig | None = None,
        *,
        cli_listen: bool = False,
    ) -> None:
        failures = AuthFailures("brainycp_remediator_http_auth_failures", "remediator")
        super().__init__(web, log, path=web_path, failures=failures)
        self.remediator = remediator
        self.config_path = config_path
        self.cli_listen = cli_listen
        self.reloader = Reloader(self.reload)
        self.gate: OpsMiddleware | None = None
        self.failures: AuthFailures = failures
        self._use_web_login()

    async def authorize(self, scope: Scope) -> Identity | None:
        """Who sent the request: what the web config's users or this connection's client
        certificate proved, else the webhook's credentials; None when nothing did."""
        who = identity(scope)
        if who is not None:
            return who
        auth = self.remediator.rconfig.auth
        if not authorized(header(scope, b"authorization"), auth):
            return None
        if auth is None:
            return Identity("anyone", NO_AUTH)
        return Identity(auth.basic_username or "webhook token", WEBHOOK_CREDENTIALS)

    def _use_web_login(self) -> None:
        """The approve/deny lines in notifications log in as this web config guards them."""
        client_cert = self.web is not None and self.web.requires_client_cert
        self.remediator.use_web_login(bool(self.auth.users), client_cert)

    def _restart_only(self, new: RemediatorConfig) -> list[str]:
        running = self.remediator.rconfig
        return [
            f"remediator.{key}: read only at start; the change needs a restart"
            for key in RESTART_ONLY
            if getattr(new, key) != getattr(running, key)
            and not (key == "listen" and self.cli_listen)
        ]

    def reload(self) -> list[str]:
        """Re-read the config and the web config and apply all of it between
        notifications; else apply nothing and return the problems."""
        return reload_files(
            self.config_path,
            load_config,
            self,
            refuse=lambda config: self._restart_only(config.remediator),
            apply=self._apply,
            logger=log,
        )

    def _apply(self, config: Config) -> None:
        new = config.remediator
        # --listen may differ from the file's listen; the running one stays.
        pinned = dataclasses.replace(new, listen=self.remediator.rconfig.listen)
        self.remediator.reconfigure(dataclasses.replace(config, remediator=pinned))
        self._use_web_login()
        if self.gate is not None:
            self.gate.challenge = self.remediator.challenge
        log.info(
            "%d rules, %d panels", len(new.rules), len(config.panels), extra={"trigger": "reload"}
        )

    def app(self) -> ASGIApp:
        """The remediator's app behind reload, the state gate, the console, basic auth, the
        cross-origin guard and gzip."""
        self.remediator.registry.register(self.reloader.collector())
        self.remediator.registry.register(self.failures.collector())
        self.gate = OpsMiddleware(
            self.remediator.app(),
            self.reloader,
            self.authorize,
            challenge=self.remediator.challenge,
            guard_all=True,
            open_paths=self.OPEN_PATHS,
            failures=self.failures,
        )
        # The console's pages (/console/) sit beside the gate: they act only for a
        # web-config user whom basic auth verified, whatever the gate accepts.
        pages = mount(Console(self.remediator), self.gate)
        return guarded(
            pages,
            self,
            self.remediator.registry,
            realm="brainycp-mail-remediator",
            open_paths={"/webhook"},
            trusted=lambda: (self.remediator.external_url,),
        )


async def serve(
    config: Config,
    host: str,
    port: int,
    *,
    config_path: str | None = None,
    web_path: str | None = None,
    web: WebConfig | None = None,
    cli_listen: bool = False,
) -> int:
    """Run until SIGTERM/SIGINT: recover the journal, serve, then drain the runner.

    At the signal, queued actions stop starting (they stay ``pending`` and run at
    the next start), the listener closes, and running actions get
    ``remediator.shutdown_grace`` seconds to finish. SIGHUP and an authorized
    ``POST /-/reload`` re-read ``config_path`` and ``web_path``. Returns the exit
    code: 0 after a stop, 1 when the port cannot be bound, 2 when the journal is
    unfit (corrupt, empty, not a journal, or from a newer version).
    """
    listener = open_listener(host, port, log)
    if listener is None:
        return startup.EXIT_FAILED
    rconfig = config.remediator
    journal = await open_journal(rconfig)
    if isinstance(journal, int):
        listener.close()
        return journal
    stats = Stats()
    rules = {rule.name: rule for rule in rconfig.rules}
    runner = Runner(
        journal,
        config.panels,
        rules,
        stats,
        max_concurrent=rconfig.max_concurrent_actions,
        action_timeout=rconfig.action_timeout,
    )
    # SQLite: this process holds the lock file, so every unfinished row is its own.
    # PostgreSQL: only rows whose replica let the lease expire (it died) are taken.
    recover = journal.take_over if journal.shared else journal.recover
    resumed, interrupted = await journal.call(recover, time.time())
    adopt = Adopter(config, journal, runner, stats)
    await adopt.interrupted(interrupted)
    remediator = Remediator(config, journal, runner, stats)
    remediator.notifier.start()
    for action_id in interrupted:
        remediator.notify_action(action_id, "interrupted")
    expiring = asyncio.create_task(remediator.expire_forever())
    # Built with the web config in force (not swapped in like a reload would, which
    # warned at every TLS start that turning TLS on needs a restart).
    lifecycle = Lifecycle(remediator, config_path, web_path, web, cli_listen=cli_listen)
    pruning = (
        asyncio.create_task(prune_forever(journal, rconfig.journal_retention))
        if rconfig.journal_retention > 0
        else None
    )

    def stop(signame: str) -> None:
        if not http.server.should_exit:
            log.info(
                "%s: stopping; running actions get up to %gs to finish",
                signame,
                remediator.rconfig.shutdown_grace,
            )
        runner.stop_starting()

    http = HttpService(
        lifecycle.app(),
        listener,
        lifecycle,
        lifecycle.reloader,
        host=host,
        port=port,
        shutdown_seconds=5,
        on_stop=stop,
    )
    async with http:
        serving = asyncio.create_task(http.serve())
        leases: asyncio.Task[None] | None = None
        if await http.wait_started(serving):
            log.info(
                "remediator %s listening on %s:%d, %d rules, %d panels",
                __version__,
                host,
                port,
                len(rules),
                len(config.panels),
            )
            await adopt.resumed(resumed)
            if journal.shared:
                leases = asyncio.create_task(keep_leases(journal, adopt))
        try:
            await serving
        finally:
            await wind_down(remediator, journal, (expiring, pruning, leases))
    log.info("remediator stopped")
    return startup.EXIT_OK


async def wind_down(
    remediator: Remediator, journal: Journal, tasks: Sequence[asyncio.Task[None] | None]
) -> None:
    """After the listener closed: cancel the background ``tasks``, give running actions
    ``shutdown_grace`` (the value in force now) to finish, send what notifications can
    still go, and close the journal."""
    for task in tasks:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finished, cut_off = await remediator.runner.drain(remediator.rconfig.shutdown_grace)
    await remediator.notifier.close()
    journal.close()
    if finished or cut_off:
        log.info(
            "stopped: %d running actions finished, %d cut off at shutdown_grace "
            "(left running; recovered at the next start)",
            finished,
            cut_off,
        )


def serve_command(args: argparse.Namespace, start: startup.Start[Config]) -> int:
    """Serve with the config loaded at start, until a signal stops it; the exit code.

    SQLite: the journal's lock file keeps a second remediator off it; PostgreSQL:
    replicas share the journal and leases keep them apart.
    """
    config = start.config
    rconfig = config.remediator
    setup_logging(args.log_level, args.log_format)
    for warning in config.warnings:
        log.warning("config: %s", warning)
    if rconfig.auth is None:
        log.warning(
            "remediator.insecure_no_auth is set: anyone who can reach the webhook can "
            "trigger actions on the panels"
        )
    if rconfig.dry_run:
        log.warning("dry_run is on: no action changes anything on a panel")
    host, port = split_listen(start.listen)

    def run() -> int:
        return startup.run_daemon(
            serve(
                config,
                host,
                port,
                config_path=args.config,
                web_path=args.web_config,
                web=start.web,
                cli_listen=args.listen is not None,
            )
        )

    if rconfig.journal is not None:
        # PostgreSQL: replicas share the journal; leases, not a lock file, keep them apart.
        return run()
    try:
        lock = lock_state_file(rconfig.state_file)
    except OSError as exc:
        log.error("cannot lock the journal %s: %s", rconfig.state_file, exc.strerror or exc)
        return startup.EXIT_FAILED
    if lock is None:
        log.error("cannot lock the journal %s: another remediator is using it", rconfig.state_file)
        return startup.EXIT_FAILED
    try:
        return run()
    finally:
        os.close(lock)
