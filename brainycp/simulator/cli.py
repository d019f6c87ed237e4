"""``brainycp-panel-sim``: parse arguments, build the panels, serve them under uvicorn."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import time
from collections.abc import Sequence

import uvicorn

from brainycp import __version__
from brainycp.config.values import split_listen, zone_of
from brainycp.daemon.listener import bound_port, open_listener
from brainycp.daemon.logsetup import LOG_LEVELS, setup_logging
from brainycp.simulator import mta
from brainycp.simulator.app import Panel, SimSettings, SimulatorApp, User
from brainycp.simulator.state import (
    FLAVOURS,
    SCENARIO_TABLE,
    SCENARIOS,
    Flavour,
    PanelState,
    panel_seed,
)

log = logging.getLogger("brainycp.simulator")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def parse_users(text: str) -> dict[str, User]:
    """``admin:secret:root,bob:pw:user`` -> users; ArgumentTypeError when malformed."""
    users: dict[str, User] = {}
    for item in text.split(","):
        parts = item.strip().split(":")
        if len(parts) == 2:
            parts.append("root")
        if len(parts) != 3 or not parts[0] or parts[2] not in ("root", "user"):
            raise argparse.ArgumentTypeError(
                f"{item!r}: expected name:password:role with role root or user"
            )
        users[parts[0]] = User(password=parts[1], role=parts[2])
    return users


def parse_panel(text: str) -> tuple[str, str | None, str | None]:
    """``NAME[:SCENARIO[:FLAVOUR]]``; ArgumentTypeError when malformed."""
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not _NAME.fullmatch(parts[0]):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME[:SCENARIO[:FLAVOUR]]")
    scenario = parts[1] if len(parts) > 1 and parts[1] else None
    flavour = parts[2] if len(parts) > 2 and parts[2] else None
    if scenario is not None and scenario not in SCENARIOS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: scenario must be one of {', '.join(SCENARIOS)}"
        )
    if flavour is not None and flavour not in FLAVOURS:
        raise argparse.ArgumentTypeError(f"{text!r}: flavour must be exim or postfix")
    return parts[0], scenario, flavour


def _listen(text: str) -> tuple[str, int]:
    try:
        host, port = split_listen(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT") from None
    if not host or not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT")
    return host, port


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def _zone(text: str) -> str:
    try:
        zone_of(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="brainycp-panel-sim",
        description="A fake BrainyCP panel (mail API) for tests and demos.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", 8002),
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:8002)",
    )
    parser.add_argument(
        "--flavour",
        choices=FLAVOURS,
        default="exim",
        help="mail server of panels that do not name one (default exim)",
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="quiet",
        help="scenario of panels that do not name one (default quiet)",
    )
    parser.add_argument(
        "--users",
        type=parse_users,
        default=parse_users("admin:admin:root"),
        metavar="NAME:PASSWORD:ROLE,...",
        help="logins; role root or user (default admin:admin:root)",
    )
    parser.add_argument(
        "--messages",
        type=_count,
        default=None,
        metavar="N",
        help="initial queue size of every panel (default: the scenario's)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--time-scale",
        type=_non_negative,
        default=60.0,
        metavar="X",
        help="simulated seconds per real second (default 60)",
    )
    parser.add_argument(
        "--latency",
        type=_non_negative,
        default=0.0,
        metavar="SECONDS",
        help="delay added to every API call (default 0)",
    )
    _add_panel_flags(parser)
    parser.add_argument(
        "--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)"
    )
    parser.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    _add_mta_flags(parser)
    return parser


def _add_panel_flags(parser: argparse.ArgumentParser) -> None:
    """Which panels to serve and how their API behaves."""
    parser.add_argument(
        "--panel",
        type=parse_panel,
        action="append",
        default=[],
        metavar="NAME[:SCENARIO[:FLAVOUR]]",
        help="add a named panel (repeatable); the first is also the default",
    )
    parser.add_argument(
        "--panels",
        type=_count,
        default=0,
        metavar="N",
        help="add N quiet panels named panel0001...",
    )
    _add_choice(
        parser, "--detail-format", ("string", "lines", "objects"), "how list_msg sends detail"
    )
    parser.add_argument(
        "--timezone",
        type=_zone,
        default="UTC",
        metavar="ZONE",
        help="the panels' clock zone, e.g. Europe/Moscow: Postfix listings print local "
        "arrival times in it (default UTC)",
    )
    parser.add_argument(
        "--no-relay",
        action="store_true",
        help="no relay configured: controll_msg reship answers 102",
    )
    _add_choice(
        parser,
        "--login-style",
        ("both", "username", "login"),
        "credential fields the panels read: username/password, login/pass, or either",
    )


def _add_choice(
    parser: argparse.ArgumentParser, flag: str, choices: tuple[str, ...], help_text: str
) -> None:
    """``flag`` taking one of ``choices``, the first by default."""
    parser.add_argument(
        flag, choices=choices, default=choices[0], help=f"{help_text} (default {choices[0]})"
    )


def _add_mta_flags(parser: argparse.ArgumentParser) -> None:
    """``--mta exim`` and how to run this machine's Exim."""
    real = parser.add_argument_group(
        "real MTA", "--mta exim: one panel whose mail operations run this machine's Exim"
    )
    real.add_argument(
        "--mta",
        choices=("exim",),
        default=None,
        help="serve one panel backed by the real mail server instead of simulated panels",
    )
    real.add_argument(
        "--exim",
        default=None,
        metavar="PATH",
        help="Exim binary (default: exim on PATH, else /usr/sbin/exim4)",
    )
    real.add_argument(
        "--exiqgrep",
        default=None,
        metavar="PATH",
        help="exiqgrep script (default: exiqgrep on PATH, else /usr/sbin/exiqgrep)",
    )
    real.add_argument(
        "--exim-config",
        default=os.environ.get(mta.CONFIG_ENV) or None,
        metavar="FILE",
        help=f"Exim configuration passed as -C FILE (default: ${mta.CONFIG_ENV}, else "
        "Exim's own); see docs/simulator.md for one that never delivers",
    )
    real.add_argument(
        "--command-timeout",
        type=_non_negative,
        default=mta.DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"limit for each Exim command (default {mta.DEFAULT_TIMEOUT:g})",
    )


def build_app(args: argparse.Namespace) -> SimulatorApp:
    """Panels and settings from parsed arguments."""
    specs: list[tuple[str, str, Flavour]] = []
    for name, scenario, flavour in args.panel:
        specs.append((name, scenario or args.scenario, flavour or args.flavour))
    specs.extend((f"panel{i:04d}", "quiet", args.flavour) for i in range(1, args.panels + 1))
    if not specs:
        specs.append(("default", args.scenario, args.flavour))
    names = [s[0] for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit(f"brainycp-panel-sim: duplicate panel names: {', '.join(duplicates)}")
    epoch = time.time()
    panels = [
        Panel(
            name=name,
            scenario=scenario,
            state=PanelState(
                flavour=flavour,
                scenario=SCENARIO_TABLE[scenario],
                seed=panel_seed(args.seed, name),
                time_scale=args.time_scale,
                clock=time.monotonic,
                sim_epoch=epoch,
                initial_messages=args.messages,
            ),
        )
        for name, scenario, flavour in specs
    ]
    # The flags are named as the settings they give (wall_clock stays the real clock).
    given = {f.name for f in dataclasses.fields(SimSettings)} & set(vars(args))
    settings = SimSettings(**{name: getattr(args, name) for name in given})
    return SimulatorApp(panels, settings)


def build_mta_app(args: argparse.Namespace) -> mta.EximPanelApp:
    """The ``--mta exim`` panel; SystemExit(2) when Exim or its configuration is unusable."""
    if args.panel or args.panels:
        raise SystemExit("brainycp-panel-sim: --mta serves one panel; drop --panel/--panels")
    commands = mta.EximCommands(
        exim=args.exim or mta.default_binary("exim", "/usr/sbin/exim4", "/usr/sbin/exim"),
        exiqgrep=args.exiqgrep or mta.default_binary("exiqgrep", "/usr/sbin/exiqgrep"),
        config=args.exim_config,
        timeout=args.command_timeout or mta.DEFAULT_TIMEOUT,
    )
    problem = mta.check_setup(commands)
    if problem:
        print(f"brainycp-panel-sim: {problem}", file=sys.stderr)
        raise SystemExit(2)
    return mta.EximPanelApp(
        commands=commands,
        users=args.users,
        login_style=getattr(args, "login_style", "both"),
        no_relay=args.no_relay,
        latency=args.latency,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``brainycp-panel-sim``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    setup_logging(args.log_level, "text")
    host, port = args.listen
    app: SimulatorApp | mta.EximPanelApp
    if args.mta is not None:
        app = build_mta_app(args)
        described = [app.describe()]
    else:
        app = build_app(args)
        described = [f"{p.name} ({p.scenario}, {p.state.flavour})" for p in app.panels.values()]
    shown = ", ".join(described[:5]) + (
        f", ... {len(described) - 5} more" if len(described) > 5 else ""
    )
    scheme = "https" if args.tls_cert else "http"
    # Bound here, not by uvicorn, so the line below names the port the kernel chose
    # when --listen asks for port 0 (the tests start it so and read the port back).
    sock = open_listener(host, port, log)
    if sock is None:
        return 1
    log.info(
        "brainycp-panel-sim %s listening on %s://%s:%d/api/api.php, %d panel(s): %s",
        __version__, scheme, host, bound_port(sock), len(described), shown,
    )  # fmt: skip
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=4096,
        timeout_graceful_shutdown=2,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
