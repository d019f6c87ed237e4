"""``brainycp-mail-remediator run``: one action by hand, via the daemon or alone on its journal."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from brainycp.config.errors import ConfigError
from brainycp.config.values import split_listen
from brainycp.config.yamlguard import load_yaml, read_config_text
from remediator.actions import ACTIONS, DESTRUCTIVE, taking
from remediator.app import Remediator
from remediator.journal import Journal
from remediator.metrics import Stats
from remediator.runner import Runner
from remediator.settings.config import Config, load_config

LockStateFile = Callable[[Path], int | None]
"""The daemon's journal lock (``remediator.serve.lock_state_file``): a descriptor, or None
when a running remediator holds it."""
SUMMARY = "run one action by hand with the remediator's safety (see: run --help)"
"""The line the daemon's ``--help`` shows for this command."""
FINAL_WAIT = 30.0
PROBE_TIMEOUT = 5.0
"""Seconds to find out whether a daemon that did not answer plain HTTP speaks TLS."""


def run_parser() -> argparse.ArgumentParser:
    """The arguments of ``run``, each with its help."""
    parser = argparse.ArgumentParser(
        prog="brainycp-mail-remediator run",
        description="Run one action by hand with the remediator's safety: through the "
        "running daemon (POST /actions) when it answers, else alone on the same journal.",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("BRAINYCP_MAIL_CONFIG"),
        help="the remediator's YAML config (default: $BRAINYCP_MAIL_CONFIG): panels,"
        " credentials, the daemon's address and the journal",
    )
    parser.add_argument("--panel", required=True, help="the panel to act on (a panels: name)")
    parser.add_argument(
        "--action",
        required=True,
        help=f"what to do: {', '.join(ACTIONS)} (remediator.manual.actions allows them)",
    )
    parser.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="selection criterion (sender, sender_domain, recipient_domain, bounce, frozen, "
        "older_than, larger_than); repeatable, all must hold",
    )
    parser.add_argument("--daemon", help="clamav or spamassassin (service actions)")
    parser.add_argument(
        "--max-messages",
        type=int,
        metavar="N",
        help="most messages the action may touch (default: remediator.manual.max_messages)",
    )
    parser.add_argument(
        "--limit",
        choices=("refuse", "first"),
        help="above --max-messages: refuse the action (default) or act on the oldest N",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"{' and '.join(taking('force'))} only: the panel's dellete_forse",
    )
    parser.add_argument("--dry-run", action="store_true", help="show what would be touched")
    parser.add_argument(
        "--allow-destructive",
        action="store_true",
        help=f"needed to really run {' or '.join(DESTRUCTIVE)}",
    )
    parser.add_argument(
        "--by",
        default=os.environ.get("USER", ""),
        help="who asks, journaled with the action (default: $USER)",
    )
    parser.add_argument(
        "--url",
        help="the daemon's address (default: remediator.listen, https:// when"
        " --web.config.file serves TLS, else http://)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config",
        metavar="FILE",
        help="the daemon's --web.config.file: with tls_server_config the default --url is https://",
    )
    parser.add_argument(
        "--user",
        help="a basic_auth_users name of the daemon's --web.config.file (default: send the"
        " webhook credentials, which the daemon accepts when it has no web config users)",
    )
    parser.add_argument(
        "--password-file",
        metavar="FILE",
        help="file holding --user's password (default: $BRAINYCP_WEB_PASSWORD)",
    )
    parser.add_argument("--ca-file", metavar="FILE", help="CA bundle to verify an https --url")
    return parser


def _request_of(args: argparse.Namespace) -> dict[str, object] | str:
    select: dict[str, object] = {}
    for item in args.select:
        key, sep, value = item.partition("=")
        if not sep or not key:
            return f"--select {item!r}: use KEY=VALUE, e.g. sender=spam@example.com"
        select[key.strip()] = {"true": True, "false": False}.get(value.lower(), value)
    request: dict[str, object] = {
        "panel": args.panel,
        "action": args.action,
        "dry_run": args.dry_run,
        "by": args.by,
        "allow_destructive": args.allow_destructive,
    }
    if select:
        request["select"] = select
    for key in ("daemon", "max_messages", "limit"):
        if getattr(args, key) is not None:
            request[key] = getattr(args, key)
    if args.force:
        request["force"] = True
    return request


def _web_user_headers(user: str, password_file: str | None) -> dict[str, str] | str:
    """Basic auth for a web-config user; an error text when the password is missing."""
    if password_file:
        try:
            password = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            return f"--password-file {password_file}: cannot read it ({type(exc).__name__})"
    else:
        password = os.environ.get("BRAINYCP_WEB_PASSWORD", "")
        if not password:
            return "--user needs --password-file FILE or $BRAINYCP_WEB_PASSWORD"
    pair = f"{user}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def _auth_headers(config: Config) -> dict[str, str]:
    auth = config.remediator.auth
    if auth is None:
        return {}
    if auth.bearer_token is not None:
        return {"Authorization": f"Bearer {auth.bearer_token.get_secret_value()}"}
    assert auth.basic_username is not None and auth.basic_password is not None
    pair = f"{auth.basic_username}:{auth.basic_password.get_secret_value()}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def serves_tls(web_config: str) -> bool:
    """Whether the daemon's web config has ``tls_server_config``.

    Only that key is read: its certificate key is the daemon's, which the person
    running ``run`` need not be able to read.
    """
    data = load_yaml(read_config_text(web_config), web_config)
    return isinstance(data, dict) and bool(data.get("tls_server_config"))


def default_url(config: Config, tls: bool) -> str:
    """``http(s)://HOST:PORT`` of ``remediator.listen`` (a wildcard address: loopback)."""
    host, port = split_listen(config.remediator.listen)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"{'https' if tls else 'http'}://{'[' + host + ']' if ':' in host else host}:{port}"


def speaks_tls(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the server at ``url``'s host and port answers a TLS handshake (its
    certificate is not checked: this only tells which scheme it speaks)."""
    parsed = httpx.URL(url)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((parsed.host, parsed.port or 80), timeout=timeout) as raw,
            context.wrap_socket(raw),
        ):
            return True
    except ssl.SSLError as exc:
        # A TLS alert (a client certificate it requires, say) is a TLS server too.
        return "ALERT" in str(exc.reason or "").upper()
    except OSError:
        return False


def _exit_code(answer: dict[str, object]) -> int:
    ok = ("succeeded", "skipped_nothing_to_do", "dry_run")
    return 0 if answer.get("outcome") in ok else 1


def _through_daemon(
    base: str,
    request: dict[str, object],
    headers: dict[str, str],
    config: Config,
    verify: str | bool,
) -> int | None:
    """Ask the daemon at ``base``: the exit code, or None when nobody listens there."""
    action_timeout = config.remediator.action_timeout
    try:
        with httpx.Client(timeout=action_timeout + 10, trust_env=False, verify=verify) as http:
            answer = http.post(f"{base}/actions", json=request, headers=headers)
            body = answer.json()
            if answer.status_code == 202:
                action_id = body["action_id"]
                deadline = time.monotonic() + action_timeout + FINAL_WAIT
                while time.monotonic() < deadline:
                    body = http.get(f"{base}/actions/{action_id}", headers=headers).json()
                    if body["outcome"] not in ("pending", "running"):
                        break
                    time.sleep(0.2)  # polling the action's outcome, not synchronisation
            print(json.dumps(body, indent=2, ensure_ascii=False))
            return _exit_code(body) if answer.status_code < 400 else 1
    except httpx.ConnectError as exc:
        if isinstance(exc.__cause__, ssl.SSLError) or "SSL" in str(exc):
            print(f"error: TLS with {base} failed: {exc}; pass --ca-file", file=sys.stderr)
            return 1
        return None  # nobody listens: the caller runs alone
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        if base.startswith("http://") and speaks_tls(base):
            https = "https://" + base.removeprefix("http://")
            print(f"error: the remediator at {base} speaks TLS: pass --url {https}"
                  " (and --ca-file if its certificate is your own)", file=sys.stderr)  # fmt: skip
            return 1
        print(f"error: the remediator at {base} answered badly: {type(exc).__name__}",
              file=sys.stderr)  # fmt: skip
        return 1
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        print(f"error: the remediator at {base} answered badly: {type(exc).__name__}",
              file=sys.stderr)  # fmt: skip
        return 1


def run_command(argv: Sequence[str], lock_state_file: LockStateFile) -> int:
    """``brainycp-mail-remediator run ...``: returns the exit code.

    ``lock_state_file`` is the daemon's journal lock, taken before running alone.
    """
    args = run_parser().parse_args(argv)
    if not args.config:
        print("error: --config FILE is required (or set BRAINYCP_MAIL_CONFIG)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        tls = serves_tls(args.web_config) if args.web_config and not args.url else False
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 2
    request = _request_of(args)
    if isinstance(request, str):
        print(f"error: {request}", file=sys.stderr)
        return 2
    base = (args.url or default_url(config, tls)).rstrip("/")
    headers = _web_user_headers(args.user, args.password_file) if args.user else None
    if isinstance(headers, str):
        print(f"error: {headers}", file=sys.stderr)
        return 2
    code = _through_daemon(
        base, request, headers or _auth_headers(config), config, args.ca_file or True
    )
    if code is not None:
        return code
    if config.remediator.journal is not None:
        # Alone on the shared journal it would hold no lease renewals: replicas could adopt
        # its action mid-run. Ask a running replica instead.
        print(f"error: no remediator answers at {base}; with a PostgreSQL journal, `run` talks "
              "to a running replica (pass its --url)", file=sys.stderr)  # fmt: skip
        return 1
    lock = lock_state_file(config.remediator.state_file)
    if lock is None:
        print(f"error: a remediator holds {config.remediator.state_file} but does not answer at "
              f"{base}; pass --url", file=sys.stderr)  # fmt: skip
        return 1
    try:
        print(f"no remediator answers at {base}; running alone on its journal",
              file=sys.stderr)  # fmt: skip
        status, body = asyncio.run(_run_alone(config, request))
        print(json.dumps(body, indent=2, ensure_ascii=False))
        return _exit_code(body) if status < 400 else 1
    finally:
        os.close(lock)


async def _run_alone(config: Config, request: dict[str, object]) -> tuple[int, dict[str, object]]:
    rconfig = config.remediator
    journal = Journal(rconfig.state_file)
    stats = Stats()
    runner = Runner(
        journal, config.panels, {r.name: r for r in rconfig.rules}, stats,
        max_concurrent=1, action_timeout=rconfig.action_timeout,
    )  # fmt: skip
    remediator = Remediator(config, journal, runner, stats)
    remediator.notifier.start()
    try:
        status, body = await remediator.operator.run_manual(request)
        if status == 202:
            await runner.idle()
            row = await journal.call(journal.get, int(body["action_id"]))
            assert row is not None
            body = {**row.as_json(), **await journal.call(journal.detail, row.id)}
        return status, body
    finally:
        await runner.close()
        await remediator.notifier.close(grace=10.0)
        journal.close()
