"""``brainycp-mail-exporter``: parse arguments, load the config, start (or poll once)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from prometheus_client import generate_latest
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp

from brainycp import __version__
from brainycp.access import AuthFailures
from brainycp.config.errors import ConfigError
from brainycp.config.values import parse_listen, parse_shard, split_listen
from brainycp.crossorigin import CrossOriginGuard
from brainycp.lifecycle import GZIP_LEVEL, OpsMiddleware, Reloader
from brainycp.listener import Server, open_listener, server_config
from brainycp.logsetup import LOG_FORMATS, LOG_LEVELS, setup_logging
from brainycp.queue import c_readers
from brainycp.webconfig import (
    BasicAuthMiddleware,
    WebConfig,
    load_web_config,
)
from brainycp.webconfig import WebConfigHolder as SharedWebConfigHolder
from exporter.app import build_registry, create_app, process_registry
from exporter.poller import Poller, initial_state
from exporter.settings import Config, load_config
from exporter.shard import shard_config
from exporter.state import ExporterState

log = logging.getLogger("exporter")

CONFIG_ENV = "BRAINYCP_MAIL_CONFIG"
EXIT_OK, EXIT_POLL_FAILED, EXIT_CONFIG = 0, 1, 2
# Uvicorn waits at most this long for open connections at shutdown; SIGTERM must end within 5s.
GRACEFUL_SHUTDOWN_SECONDS = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainycp-mail-exporter",
        description="Poll the mail queues of BrainyCP panels and serve Prometheus metrics.",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV),
        help=f"YAML config file (default: ${CONFIG_ENV})",
    )
    parser.add_argument("--listen", help="HOST:PORT to serve on (overrides exporter.listen)")
    parser.add_argument(
        "--shard",
        metavar="INDEX/COUNT",
        help="serve only the panels whose name hashmods to INDEX (0-based; see exporter.shard)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config",
        metavar="FILE",
        help="TLS and basic auth for every endpoint (the Prometheus exporter-toolkit format)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--once",
        action="store_true",
        help="poll every panel once, print the metrics and exit (0 all ok, 1 a poll failed)",
    )
    mode.add_argument(
        "--check-config", action="store_true", help="validate the config file and exit"
    )
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="least severe level logged"
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text (one line a record) or json (one object a line)",
    )
    parser.add_argument(
        "--version", action="version", version=f"brainycp-mail-exporter {__version__}"
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
    return EXIT_OK if ok else EXIT_POLL_FAILED


def reload_config(
    path: str,
    poller: Poller,
    web_path: str | None,
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
    try:
        config = load_config(path)
        new_web = load_web_config(web_path) if web_path else None
    except ConfigError as exc:
        return exc.errors
    # --shard wins over exporter.shard; either way the set is recomputed on the new panels.
    config = shard_config(config, cli_shard)
    problems = []
    if not cli_listen and config.exporter.listen != listen:
        problems.append(
            f"exporter.listen: the listener is on {listen}; moving it to"
            f" {config.exporter.listen} needs a restart"
        )
    problems += web.problems(new_web)
    if problems or (problems := web.use_web(new_web)):
        return problems
    for warning in config.warnings:
        log.warning("config: %s", warning)
    if web.listener is not None:
        # uvicorn reads the limit per new connection: the new cap applies from the next.
        web.listener.limit_concurrency = config.exporter.max_connections
    poller.apply(config)
    return []


class WebConfigHolder(SharedWebConfigHolder):
    """The web config in force; reload over HTTP needs it to authenticate clients."""

    def __init__(self, web: WebConfig | None) -> None:
        super().__init__(web, log)
        self.failures = AuthFailures("brainycp_exporter_http_auth_failures", "exporter")


def build_app(state: ExporterState, reloader: Reloader, web: WebConfigHolder) -> ASGIApp:
    """The exporter's app behind reload, basic auth and gzip (outermost first: gzip)."""
    extra = process_registry()
    extra.register(reloader.collector())
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
    app = BasicAuthMiddleware(app, web.auth, realm="brainycp-mail-exporter", failures=web.failures)
    # A browser's cross-site form must not reload (docs/operations.md).
    same_site = CrossOriginGuard(app)
    extra.register(same_site.collector())
    app = same_site
    # Prometheus asks for gzip: 1,000 panels are ~2.8 MB of text, ~0.1 MB compressed.
    return GZipMiddleware(app, minimum_size=1024, compresslevel=GZIP_LEVEL)


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
        return EXIT_POLL_FAILED
    state = initial_state(config)
    poller = Poller(config, state)
    holder = WebConfigHolder(web)
    reloader = Reloader(
        lambda: (
            reload_config(
                config_path, poller, web_path, holder, listen, cli_shard, cli_listen=cli_listen
            )
            if config_path
            else ["no config file to reload"]
        )
    )
    uconfig = server_config(
        build_app(state, reloader, holder),
        host=host,
        port=port,
        max_connections=config.exporter.max_connections,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    holder.load_listener(uconfig)
    server = Server(uconfig)
    loop = asyncio.get_running_loop()

    def stop(signame: str) -> None:
        log.info("stopping", extra={"signal": signame})
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig.name)
    reloader.install(loop)
    scheduler = AsyncIOScheduler(timezone=UTC)
    poller.schedule(scheduler)
    scheduler.start()
    log.info(
        "exporter started",
        extra={
            "listen": listen,
            "panels": len(config.panels),
            "version": __version__,
            "tls": web is not None and web.tls is not None,
            "basic_auth": web is not None and bool(web.users),
            # Which listings a C reader parses; "python" when none is built (docs/metrics.md).
            "queue_readers": ",".join(c_readers()) or "python",
        },
    )
    try:
        await server.serve(sockets=[listener])
    finally:
        scheduler.shutdown(wait=False)
        await poller.aclose()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    if not server.started:
        return EXIT_POLL_FAILED
    log.info("exporter stopped")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``brainycp-mail-exporter``; returns the exit code."""
    args = _parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    if not args.config:
        print(f"error: no config file: pass --config FILE or set {CONFIG_ENV}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        config = load_config(args.config)
        listen = parse_listen(args.listen) if args.listen else config.exporter.listen
        web = load_web_config(args.web_config) if args.web_config else None
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as exc:
        print(f"--listen: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        cli_shard = parse_shard(args.shard) if args.shard else None
        config = shard_config(config, cli_shard)
    except ValueError as exc:
        print(f"--shard: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.check_config:
        shard = config.exporter.shard
        where = f" in shard {shard[0]}/{shard[1]}" if shard else ""
        web_ok = f"; {args.web_config} OK" if web else ""
        print(f"config OK: {len(config.panels)} panels{where}{web_ok}")
        return EXIT_OK
    if args.once:
        return asyncio.run(run_once(config))
    try:
        return asyncio.run(
            serve(
                config,
                listen,
                config_path=args.config,
                web_path=args.web_config,
                web=web,
                cli_shard=cli_shard,
                cli_listen=args.listen is not None,
            )
        )
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
