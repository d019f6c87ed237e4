"""``brainycp-mail-exporter``: parse arguments, load the config, start (or poll once)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from prometheus_client import generate_latest
from starlette.types import ASGIApp

from brainycp import __version__
from brainycp.config.values import parse_shard, split_listen
from brainycp.daemon import startup
from brainycp.daemon.access import AuthFailures
from brainycp.daemon.listener import bound_address, open_listener
from brainycp.daemon.logsetup import setup_logging
from brainycp.daemon.reload import OpsMiddleware, Reloader, reload_files
from brainycp.daemon.server import HttpService, guarded
from brainycp.daemon.webconfig import WebConfig, WebConfigHolder
from brainycp.queue import c_readers
from exporter.app import build_registry, create_app, process_registry
from exporter.poller import Poller, initial_state
from exporter.settings import Config, load_config
from exporter.shard import shard_config
from exporter.state import ExporterState

log = logging.getLogger("exporter")

# Uvicorn waits at most this long for open connections at shutdown; SIGTERM must end within 5s.
GRACEFUL_SHUTDOWN_SECONDS = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainycp-mail-exporter",
        description="Poll the mail queues of BrainyCP panels and serve Prometheus metrics.",
    )
    startup.add_daemon_flags(
        parser,
        section="exporter",
        web_config_help="TLS and basic auth for every endpoint (the Prometheus exporter-toolkit"
        " format)",
        check_config_help="validate the config file and exit",
        other_modes=[
            (
                "--once",
                "poll every panel once, print the metrics and exit (0 all ok, 1 a poll failed)",
            )
        ],
    )
    parser.add_argument(
        "--shard",
        metavar="INDEX/COUNT",
        help="serve only the panels whose name hashmods to INDEX (0-based; see exporter.shard)",
    )
    return parser


async def run_once(config: Config) -> int:
    """Poll every panel once and print the exposition text; 0 when every poll succeeded."""
    state = initial_state(config)
    poller = Poller(config, state)
    try:
        ok = await poller.poll_once()
    finally:
        await poller.aclose()
    sys.stdout.write(generate_latest(build_registry(state, process=False)).decode())
    sys.stdout.flush()
    return startup.EXIT_OK if ok else startup.EXIT_FAILED


def reload_config(
    path: str | None,
    poller: Poller,
    web: WebConfigHolder,
    listen: str,
    cli_shard: tuple[int, int] | None = None,
    *,
    cli_listen: bool = False,
) -> list[str]:
    """Re-read the config (and the web config) and apply all of it; else apply nothing
    and return the problems.

    A change the running listener cannot take (TLS on or off, a dropped client CA,
    ``exporter.listen`` when ``--listen`` does not pin it) fails the whole reload.
    ``cli_shard`` (``--shard``) pins the shard; without it the reloaded file's
    ``exporter.shard`` is used, so changing INDEX/COUNT there moves panels at once.
    """

    def refuse(config: Config) -> list[str]:
        if cli_listen or config.exporter.listen == listen:
            return []
        return [
            f"exporter.listen: the listener is on {listen}; moving it to"
            f" {config.exporter.listen} needs a restart"
        ]

    def apply(config: Config) -> None:
        if web.listener is not None:
            # uvicorn reads the limit per new connection: the new cap applies from the next.
            web.listener.limit_concurrency = config.exporter.max_connections
        poller.apply(config)

    # --shard wins over exporter.shard; either way the set is recomputed on the new panels.
    return reload_files(
        path,
        lambda file: shard_config(load_config(file), cli_shard),
        web,
        refuse=refuse,
        apply=apply,
        logger=log,
    )


def web_holder(web: WebConfig | None, path: str | None = None) -> WebConfigHolder:
    """The exporter's web config in force; reload over HTTP needs it to authenticate."""
    failures = AuthFailures("brainycp_exporter_http_auth_failures", "exporter")
    return WebConfigHolder(web, log, path=path, failures=failures)


def build_app(state: ExporterState, reloader: Reloader, web: WebConfigHolder) -> ASGIApp:
    """The exporter's app behind reload, basic auth, the cross-origin guard and gzip."""
    extra = process_registry()
    extra.register(reloader.collector())
    if web.failures is not None:
        extra.register(web.failures.collector())
    app: ASGIApp = create_app(state, extra=extra)
    app = OpsMiddleware(
        app,
        reloader,
        web.authorize,
        challenge=None,
        refusal="reload over HTTP needs --web.config.file with basic_auth_users or verified"
        " client certificates; send SIGHUP instead",
        failures=web.failures,
    )
    # Prometheus asks for gzip: 1,000 panels are ~2.8 MB of text, ~0.1 MB compressed.
    return guarded(app, web, extra, realm="brainycp-mail-exporter")


async def serve(
    config: Config,
    listen: str,
    *,
    config_path: str | None = None,
    web_path: str | None = None,
    web: WebConfig | None = None,
    cli_shard: tuple[int, int] | None = None,
    cli_listen: bool = False,
) -> int:
    """Run the scheduler and the HTTP server on this loop until SIGTERM/SIGINT.

    SIGHUP (and an authorized ``POST /-/reload``) re-reads ``config_path`` and ``web_path``.
    Returns 1 without starting anything when ``listen`` cannot be bound (one log line).
    """
    host, port = split_listen(listen)
    listener = open_listener(host, port, log)
    if listener is None:
        return startup.EXIT_FAILED
    state = initial_state(config)
    poller = Poller(config, state)
    holder = web_holder(web, web_path)
    reloader = Reloader(
        lambda: reload_config(config_path, poller, holder, listen, cli_shard, cli_listen=cli_listen)
    )
    http = HttpService(
        build_app(state, reloader, holder),
        listener,
        holder,
        reloader,
        host=host,
        port=port,
        max_connections=config.exporter.max_connections,
        shutdown_seconds=GRACEFUL_SHUTDOWN_SECONDS,
        on_stop=lambda signame: log.info("stopping", extra={"signal": signame}),
    )
    async with http:
        scheduler = AsyncIOScheduler(timezone=UTC)
        poller.schedule(scheduler)
        scheduler.start()
        log.info(
            "exporter started",
            extra={
                # The bound address: with port 0 in --listen, the port the kernel chose.
                "listen": bound_address(host, listener),
                "panels": len(config.panels),
                "version": __version__,
                "tls": web is not None and web.tls is not None,
                "basic_auth": web is not None and bool(web.users),
                # Which listings a C reader parses; "python" when none is built (docs/metrics.md).
                "queue_readers": ",".join(c_readers()) or "python",
            },
        )
        try:
            await http.serve()
        finally:
            scheduler.shutdown(wait=False)
            await poller.aclose()
    if not http.server.started:
        return startup.EXIT_FAILED
    log.info("exporter stopped")
    return startup.EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``brainycp-mail-exporter``; returns the exit code."""
    args = _parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    start = startup.load_at_start(args, load_config, lambda config: config.exporter.listen)
    if isinstance(start, int):
        return start
    try:
        cli_shard = parse_shard(args.shard) if args.shard else None
        config = shard_config(start.config, cli_shard)
    except ValueError as exc:
        print(f"--shard: {exc}", file=sys.stderr)
        return startup.EXIT_CONFIG
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.check_config:
        shard = config.exporter.shard
        where = f" in shard {shard[0]}/{shard[1]}" if shard else ""
        web_ok = f"; {args.web_config} OK" if start.web else ""
        print(f"config OK: {len(config.panels)} panels{where}{web_ok}")
        return startup.EXIT_OK
    if args.once:
        return asyncio.run(run_once(config))
    return startup.run_daemon(
        serve(
            config,
            start.listen,
            config_path=args.config,
            web_path=args.web_config,
            web=start.web,
            cli_shard=cli_shard,
            cli_listen=args.listen is not None,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
