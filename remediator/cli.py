"""``brainycp-mail-remediator``: parse arguments, check the config, start the server.

One event loop (``asyncio.run``) holds uvicorn, the action runner and the panel clients.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fcntl
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from starlette.types import ASGIApp, Scope

from brainycp import __version__
from brainycp.backoff import Backoff
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
from remediator.journal import JOURNAL_ERRORS, SCHEMA_VERSION, Journal, JournalError
from remediator.manual import rule_for_row
from remediator.metrics import Stats
from remediator.routes.common import authorized
from remediator.runcmd import SUMMARY as RUN_SUMMARY
from remediator.runcmd import run_command
from remediator.runner import Runner
from remediator.settings.config import Config, RemediatorConfig, load_config
from remediator.settings.rules import Rule

log = logging.getLogger("remediator")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def describe_rule(rule: Rule, global_dry_run: bool = False) -> str:
    """One line: ``name: matchers -> action (cooldown ...)``, for ``--check-config``."""
    what: str = rule.action
    if rule.daemon:
        what += f" {rule.daemon}"
    if rule.force:
        what += " (force)"
    if rule.select is not None:
        criteria = []
        for key, value in rule.select.model_dump().items():
            if value is None:
                continue
            if key == "older_than":
                value = _duration(value)
            criteria.append(f"{key}={value}")
        what += " where " + ", ".join(criteria) if criteria else " on every queued message"
        verb = "act on the oldest" if rule.limit == "first" else "refuse above"
        what += f"; {verb} {rule.max_messages}"
    extras = [f"cooldown {_duration(rule.cooldown)}"]
    if rule.rerun_after is not None:
        extras.append(f"rerun_after {_duration(rule.rerun_after)}")
    if rule.on != ["firing"]:
        extras.append("on " + "+".join(rule.on))
    if rule.max_runs_per_episode is not None:
        extras.append(f"at most {rule.max_runs_per_episode} runs per episode")
    if rule.approval == "required":
        extras.append("NEEDS APPROVAL")
    if rule.notify is not None:
        extras.append("notify " + (", ".join(rule.notify) or "nobody"))
    if rule.dry_run or global_dry_run:
        extras.append("DRY RUN")
    matchers = ", ".join(str(m) for m in rule.matchers)
    return f"{rule.name}: {matchers} -> {what} ({', '.join(extras)})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainycp-mail-remediator",
        usage="%(prog)s [options]\n       %(prog)s run --panel PANEL --action ACTION [options]",
        description="Receive Alertmanager webhooks and run the configured actions on\n"
        "BrainyCP panels, safely (dedupe, cooldown, rate limit, journal).",
        epilog=f"commands:\n  run    {RUN_SUMMARY}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    startup.add_daemon_flags(
        parser,
        section="remediator",
        web_config_help="TLS and basic auth for every endpoint but /webhook (exporter-toolkit"
        " format)",
        check_config_help="validate the config, list each rule and what it would do, and exit",
    )
    return parser


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
        remediator.use_web_users(bool(self.auth.users))  # approve/deny lines: curl -u

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
        self.remediator.use_web_users(bool(self.auth.users))
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


async def open_journal(rconfig: RemediatorConfig) -> Journal | int:
    """The configured journal, schema migrated; else the exit code (the reason logged):
    2 when it is unfit (corrupt, empty, not a journal, or from a newer version).

    PostgreSQL that cannot be reached yet is retried until it answers: replicas
    started before the database wait for it instead of exiting.
    """
    if rconfig.journal is None:
        try:
            return Journal(rconfig.state_file)
        except (JournalError, OSError) as exc:
            # Corrupt, empty, foreign or newer journal: refuse it untouched, with the fix.
            log.error("%s", exc)
        except JOURNAL_ERRORS as exc:
            log.error("journal %s: %s", rconfig.state_file, exc)
        return startup.EXIT_CONFIG
    settings = rconfig.journal
    password = settings.password.get_secret_value() if settings.password else None
    journal = Journal.postgres(settings.url, password, lease=settings.lease)
    where = _safe_url(settings.url)
    backoff = Backoff(1.0, 10.0)
    while True:
        try:
            before = await journal.call_patient(journal.migrate)
        except JournalError as exc:
            log.error("cannot use the journal %s: %s", where, exc)
            journal.close()
            return startup.EXIT_CONFIG
        except JOURNAL_ERRORS as exc:
            log.error("journal %s not reachable yet (retrying): %s", where, _first_line(exc))
            await backoff.wait()
            continue
        log.info(
            "journal: PostgreSQL %s, schema version %d%s; this replica is %s",
            where,
            SCHEMA_VERSION,
            f" (migrated from {before})" if before != SCHEMA_VERSION else "",
            journal.owner,
        )
        return journal


def _safe_url(url: str) -> str:
    """The journal URL for logs: the config refuses passwords in it; drop any query too."""
    return url.split("?", 1)[0]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


class Adopter:
    """Apply the restart rules to unfinished rows this replica took over (at start, or
    from a replica whose lease expired): log and count the interrupted ones, run the
    resumed ones again."""

    def __init__(self, config: Config, journal: Journal, runner: Runner, stats: Stats) -> None:
        self.config = config
        self.journal = journal
        self.runner = runner
        self.stats = stats
        self.rules = {rule.name: rule for rule in config.remediator.rules}

    async def interrupted(self, ids: Sequence[int]) -> None:
        for action_id in ids:
            row = await self.journal.call(self.journal.get, action_id)
            if row is not None:
                self.stats.outcome(row.panel, row.action, "interrupted")
                log.warning(
                    "action %d (%s on %s) was interrupted by a restart; not re-run",
                    action_id,
                    row.action,
                    row.panel,
                    extra={"rule": row.rule, "panel": row.panel, "alertname": row.alertname},
                )

    async def resumed(self, ids: Sequence[int]) -> None:
        for action_id in ids:
            row = await self.journal.call(self.journal.get, action_id)
            if row is None:
                continue
            params = await self.journal.call(self.journal.params, action_id)
            rule = rule_for_row(row.rule, row.action, params, self.rules)
            if rule is None or row.panel not in self.config.panels:
                await self.journal.call(
                    self.journal.finish,
                    action_id,
                    "cancelled",
                    "its rule or panel left the config; not run after the restart",
                    time.time(),
                )
                self.stats.outcome(row.panel, row.action, "cancelled")
                continue
            log.info("action %d (%s on %s) runs after a restart", action_id, row.action, row.panel)
            self.runner.submit(action_id, rule, row.panel, row.alertname)


async def keep_leases(journal: Journal, adopt: Adopter) -> None:
    """Shared journal: renew this replica's leases and take over expired ones, every
    third of the lease. A failure is logged and retried at the next turn."""
    while True:
        await asyncio.sleep(journal.lease / 3)  # a period, not synchronisation
        now = time.time()
        try:
            await journal.call(journal.renew, sorted(adopt.runner.active), now)
            resumed, interrupted = await journal.call(journal.take_over, now)
        except JOURNAL_ERRORS as exc:  # the journal's health says it too
            log.error("journal: cannot renew leases: %s", _first_line(exc))
            continue
        if resumed or interrupted:
            log.warning(
                "journal: took over %d unfinished actions whose replica stopped renewing them",
                len(resumed) + len(interrupted),
            )
        await adopt.interrupted(interrupted)
        await adopt.resumed(resumed)


PRUNE_EVERY = 3600.0


async def prune_forever(journal: Journal, retention: float) -> None:
    """Prune the journal at start and then every hour; a failure is logged and retried."""
    while True:
        try:
            removed = await journal.call(journal.prune, time.time() - retention)
        except JOURNAL_ERRORS as exc:
            log.error("cannot prune the journal: %s", exc)
        else:
            if removed:
                log.info("journal: pruned %d rows older than %gd", removed, retention / 86400)
        await asyncio.sleep(PRUNE_EVERY)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (2 for config errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        return run_command(argv[1:], lock_state_file)
    args = _parser().parse_args(argv)
    start = startup.load_at_start(args, load_config, lambda config: config.remediator.listen)
    if isinstance(start, int):
        return start
    config = start.config
    rconfig = config.remediator
    if args.check_config:
        print(f"config OK: {len(config.panels)} panels, {len(rconfig.rules)} rules")
        for warning in config.warnings:
            print(f"warning: {warning}")
        if rconfig.auth is None:
            print("warning: remediator.insecure_no_auth: the webhook accepts anyone")
        for rule in rconfig.rules:
            print(describe_rule(rule, rconfig.dry_run))
        return startup.EXIT_OK
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


if __name__ == "__main__":
    sys.exit(main())
