"""``brainycp-mail-remediator``: parse the arguments and run the command asked for.

Serving is :mod:`remediator.serve`, ``--check-config`` :mod:`remediator.checkcmd`,
``run`` :mod:`remediator.runcmd`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from brainycp.daemon import startup
from remediator.checkcmd import check_config
from remediator.runcmd import SUMMARY as RUN_SUMMARY
from remediator.runcmd import run_command
from remediator.serve import lock_state_file, serve_command
from remediator.settings.config import load_config


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


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (2 for config errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        return run_command(argv[1:], lock_state_file)
    args = _parser().parse_args(argv)
    start = startup.load_at_start(args, load_config, lambda config: config.remediator.listen)
    if isinstance(start, int):
        return start
    if args.check_config:
        return check_config(start.config)
    return serve_command(args, start)


if __name__ == "__main__":
    sys.exit(main())
