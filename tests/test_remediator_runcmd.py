"""``brainycp-mail-remediator run``: listed in the daemon's help, every option explained, and
the daemon's scheme: https when its web config serves TLS, or a clear word when it does."""

from __future__ import annotations

import subprocess
from pathlib import Path

import bcrypt
import httpx
import pytest
import yaml

from remediator.runcmd import run_parser
from tests.remediator_support import write_config
from tests.support import PYTHON, free_port, running, wait_until
from tests.tls_support import SERVER_CERT, SERVER_KEY, client_context

# Every test here starts a process (the in-process tier, make test-fast, skips them).
pytestmark = pytest.mark.e2e


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "remediator.cli", *args], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def test_the_daemon_help_lists_the_run_command() -> None:
    shown = cli("--help")
    assert shown.returncode == 0
    assert "\ncommands:\n  run    run one action by hand" in shown.stdout
    assert "run --panel PANEL --action ACTION" in shown.stdout


def test_every_run_option_has_help() -> None:
    parser = run_parser()
    unexplained = [a.option_strings for a in parser._actions if not a.help]
    assert not unexplained
    shown = cli("run", "--help")
    assert shown.returncode == 0 and "--web.config.file FILE" in shown.stdout


def test_run_takes_the_daemons_scheme_or_says_to_pass_https(tmp_path: Path) -> None:
    """A TLS remediator: with the daemon's --web.config.file `run` goes to https:// on its
    own; without it, the plain request meets TLS and `run` says which --url to pass."""
    port = free_port()
    config = write_config(tmp_path / "config.yml", free_port(), port, tmp_path / "s.db", [])
    password = tmp_path / "ops.pw"
    password.write_text("ops-pw\n")
    hashed = bcrypt.hashpw(b"ops-pw", bcrypt.gensalt(4)).decode()
    web = tmp_path / "web.yml"
    tls = {"cert_file": str(SERVER_CERT), "key_file": str(SERVER_KEY)}
    web.write_text(yaml.safe_dump({"tls_server_config": tls, "basic_auth_users": {"ops": hashed}}))
    daemon = [
        PYTHON,
        "-m",
        "remediator.cli",
        "--config",
        str(config),
        "--web.config.file",
        str(web),
    ]
    run = ["run", "--config", str(config), "--panel", "nope", "--action", "delete_frozen"]
    base = f"https://127.0.0.1:{port}"
    with (
        running(daemon, log=tmp_path / "remediator.log"),
        httpx.Client(verify=client_context(), timeout=10) as client,
    ):
        wait_until(lambda: client.get(f"{base}/healthz").status_code == 401, what="TLS up")
        through_tls = cli(*run, "--web.config.file", str(web), "--ca-file", str(SERVER_CERT),
                          "--user", "ops", "--password-file", str(password))  # fmt: skip
        plain = cli(*run)
    # The daemon answered over TLS: its refusal of an unknown panel, as JSON.
    assert through_tls.returncode == 1, through_tls.stderr
    assert "panel 'nope' is not configured" in through_tls.stdout, through_tls.stdout
    assert plain.returncode == 1
    assert plain.stderr == (
        f"error: the remediator at http://127.0.0.1:{port} speaks TLS: pass --url {base}"
        " (and --ca-file if its certificate is your own)\n"
    )
