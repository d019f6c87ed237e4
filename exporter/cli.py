"""``brainycp-mail-exporter``: parse arguments, load the config, start (or poll once)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from prometheus_client import generate_latest

from brainycp import __version__
from brainycp.config import (
    Config,
    ConfigError,
    load_config,
    parse_listen,
    parse_shard,
    split_listen,
)
from brainycp.listener import server_config
from brainycp.logsetup import LOG_FORMATS, LOG_LEVELS, setup_logging
from exporter.app import build_registry, create_app
from exporter.poller import Poller, initial_state
from exporter.shard import shard_config

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
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--once",
        action="store_true",
        help="poll every panel once, print the metrics and exit (0 all ok, 1 a poll failed)",
    )
    mode.add_argument(
        "--check-config", action="store_true", help="validate the config file and exit"
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text")
    parser.add_argument(
        "--version", action="version", version=f"brainycp-mail-exporter {__version__}"
    )
    return parser


class _Server(uvicorn.Server):
    """Uvicorn without its own signal handling: the exporter owns SIGTERM/SIGINT.

    Uvicorn re-raises a captured signal after shutdown, which would end the process
    with the signal instead of exit code 0.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass


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


async def serve(config: Config, listen: str) -> int:
    """Run the scheduler and the HTTP server on this loop until SIGTERM/SIGINT."""
    host, port = split_listen(listen)
    state = initial_state(config)
    poller = Poller(config, state)
    server = _Server(
        server_config(
            create_app(state),
            host=host,
            port=port,
            max_connections=config.exporter.max_connections,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
    )
    loop = asyncio.get_running_loop()

    def stop(signame: str) -> None:
        log.info("stopping", extra={"signal": signame})
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig.name)
    scheduler = AsyncIOScheduler(timezone=UTC)
    poller.schedule(scheduler)
    scheduler.start()
    log.info(
        "exporter started",
        extra={"listen": listen, "panels": len(config.panels), "version": __version__},
    )
    try:
        await server.serve()
    finally:
        scheduler.shutdown(wait=False)
        await poller.aclose()
        for sig in (signal.SIGTERM, signal.SIGINT):
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
        config = load_config(args.config, daemon="exporter")
        listen = parse_listen(args.listen) if args.listen else config.exporter.listen
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as exc:
        print(f"--listen: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        config = shard_config(config, parse_shard(args.shard) if args.shard else None)
    except ValueError as exc:
        print(f"--shard: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.check_config:
        shard = config.exporter.shard
        where = f" in shard {shard[0]}/{shard[1]}" if shard else ""
        print(f"config OK: {len(config.panels)} panels{where}")
        return EXIT_OK
    if args.once:
        return asyncio.run(run_once(config))
    try:
        return asyncio.run(serve(config, listen))
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
