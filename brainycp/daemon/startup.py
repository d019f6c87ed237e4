"""The daemons' command line: the flags both take, the exit codes, and the config at start.

Both daemons take ``--config`` (default ``$BRAINYCP_MAIL_CONFIG``), ``--listen``,
``--web.config.file``, ``--check-config``, ``--log-level``, ``--log-format`` and
``--version``, and share the exit codes (the doctor too): 0 after a stop, 1 when they
cannot run (the port is taken, a poll failed), 2 for a config they cannot use, with one
line per problem on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from brainycp import __version__
from brainycp.config.errors import ConfigError
from brainycp.config.values import parse_listen
from brainycp.daemon.logsetup import LOG_FORMATS, LOG_LEVELS
from brainycp.daemon.webconfig import WebConfig, load_web_config

CONFIG_ENV = "BRAINYCP_MAIL_CONFIG"
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
"""0: stopped, or all went well; 1: could not run (a port taken) or a check failed (a
poll, a doctor's step); 2: a config it cannot use (or the remediator's journal)."""

C = TypeVar("C")


def add_daemon_flags(
    parser: argparse.ArgumentParser,
    *,
    section: str,
    web_config_help: str,
    check_config_help: str,
    other_modes: Sequence[tuple[str, str]] = (),
) -> None:
    """Add the flags every daemon takes. ``section`` names the daemon's config key;
    ``other_modes`` are ``(flag, help)`` of switches that exclude ``--check-config`` and
    each other (the exporter's ``--once``)."""
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV),
        help=f"YAML config file (default: ${CONFIG_ENV})",
    )
    parser.add_argument(
        "--listen",
        help=f"HOST:PORT to serve on (default: {section}.listen); port 0: any free port,"
        " named in the start-up log line",
    )
    parser.add_argument(
        "--web.config.file", dest="web_config", metavar="FILE", help=web_config_help
    )
    modes = parser.add_mutually_exclusive_group()
    for flag, text in other_modes:
        modes.add_argument(flag, action="store_true", help=text)
    modes.add_argument("--check-config", action="store_true", help=check_config_help)
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="least severe level logged"
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text (one line a record) or json (one object a line)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


@dataclass(frozen=True)
class Start(Generic[C]):
    """What a daemon starts with: its config, where to listen, and the web config."""

    config: C
    listen: str
    """``--listen``, else the config's."""
    web: WebConfig | None


def load_at_start(
    args: argparse.Namespace, load: Callable[[str], C], listen_of: Callable[[C], str]
) -> Start[C] | int:
    """The config (``load``), the address and the web config named by the common flags;
    else :data:`EXIT_CONFIG` after one line per problem on stderr."""
    if not args.config:
        print(f"error: no config file: pass --config FILE or set {CONFIG_ENV}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        config = load(args.config)
        listen = parse_listen(args.listen, any_port=True) if args.listen else listen_of(config)
        web = load_web_config(args.web_config) if args.web_config else None
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as exc:
        print(f"--listen: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return Start(config, listen, web)


def run_daemon(main: Coroutine[Any, Any, int]) -> int:
    """Run a daemon's ``main`` on a new event loop; its exit code (0 on Ctrl-C)."""
    try:
        return asyncio.run(main)
    except KeyboardInterrupt:
        return EXIT_OK
