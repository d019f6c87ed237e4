"""The deployment files: Prometheus and Alertmanager configs pass their own checkers and
route the right alerts, the example config is valid, the systemd units verify and are
hardened, and the container file runs both daemons as a non-root user."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from brainycp.config import parse_config
from tests.support import PYTHON, REPO, require_binary

DEPLOY = REPO / "deploy"
# Alertmanager's own copy of the webhook token (it cannot enter /etc/brainycp-mail).
AM_TOKEN = "/etc/prometheus/brainycp-mail-webhook.token"
RULES = REPO / "alerts" / "brainycp-mail.rules.yml"
REMEDIATED = {
    "BrainyCPMailFrozenMessages",
    "BrainyCPClamAVDown",
    "BrainyCPSpamAssassinDown",
    "BrainyCPMailBouncesPiling",
    "BrainyCPMailSenderSurge",
}
ALL_ALERTS = {
    r["alert"]
    for g in yaml.safe_load(RULES.read_text())["groups"]
    for r in g["rules"]
    if "alert" in r
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)


def load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


# --------------------------------------------------------------------------- prometheus


def test_prometheus_config_scrapes_both_daemons_and_loads_the_rules() -> None:
    config = load("prometheus.yml")
    assert config["global"]["scrape_interval"] == "30s"
    assert config["rule_files"] == ["/etc/prometheus/rules/brainycp-mail.rules.yml"]
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs == {
        "brainycp-mail-exporter": ["127.0.0.1:9863"],
        "brainycp-mail-remediator": ["127.0.0.1:9864"],
        # BrainyCPRemediatorNotificationsFailing reads Alertmanager's own counters.
        "alertmanager": ["127.0.0.1:9093"],
    }
    am = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["127.0.0.1:9093"]


def test_the_daemon_down_alerts_watch_the_jobs_prometheus_scrapes() -> None:
    """A job name that differs would make ExporterDown fire forever (absent) or never."""
    thresholds = yaml.safe_load((REPO / "alerts" / "thresholds.yml").read_text())["alerts"]
    watched = {
        thresholds["BrainyCPExporterDown"]["job"],
        thresholds["BrainyCPRemediatorDown"]["job"],
    }
    shipped = {j["job_name"] for j in load("prometheus.yml")["scrape_configs"]}
    demo = set(re.findall(r'"job_name": "([^"]+)"', (REPO / "brainycp" / "demo.py").read_text()))
    assert watched <= shipped and watched <= demo
    rules = {
        r["alert"]: r["expr"]
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    for name, job in (
        ("BrainyCPExporterDown", "brainycp-mail-exporter"),
        ("BrainyCPRemediatorDown", "brainycp-mail-remediator"),
    ):
        assert f'up{{job="{job}"}} == 0' in rules[name]


def test_promtool_accepts_the_prometheus_config(tmp_path: Path) -> None:
    promtool = require_binary("promtool", "apt-get install prometheus")
    config = load("prometheus.yml")
    config["rule_files"] = [str(RULES)]  # the installed path does not exist here
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = run(promtool, "check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# --------------------------------------------------------------------------- alertmanager


def alertmanager_copy(tmp_path: Path) -> Path:
    """deploy/alertmanager.yml with the token file pointing at a temporary file."""
    token = tmp_path / "webhook.token"
    token.write_text("test-token\n")
    text = (DEPLOY / "alertmanager.yml").read_text()
    assert AM_TOKEN in text
    path = tmp_path / "alertmanager.yml"
    path.write_text(text.replace(AM_TOKEN, str(token)))
    return path


def test_amtool_accepts_the_alertmanager_config(tmp_path: Path) -> None:
    amtool = require_binary("amtool", "apt-get install prometheus-alertmanager")
    result = run(amtool, "check-config", str(alertmanager_copy(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_remediator_receiver_sends_resolved_with_a_bearer_token_file() -> None:
    config = load("alertmanager.yml")
    receivers = {r["name"]: r for r in config["receivers"]}
    (hook,) = receivers["brainycp-remediator"]["webhook_configs"]
    assert hook["url"] == "http://127.0.0.1:9864/webhook"
    assert hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth["credentials_file"] == AM_TOKEN
    assert "credentials" not in auth, "the token belongs in a file, not in the config"
    route = config["route"]
    assert route["group_by"] == ["alertname", "panel"]
    assert route["receiver"] != "brainycp-remediator"
    for key in ("group_wait", "group_interval", "repeat_interval"):
        assert route[key]
    (to_remediator,) = [r for r in route["routes"] if r["receiver"] == "brainycp-remediator"]
    assert to_remediator["continue"] is True


@pytest.mark.parametrize("alertname", sorted(ALL_ALERTS))
def test_only_remediated_alerts_reach_the_remediator_and_all_reach_people(
    tmp_path: Path, alertname: str
) -> None:
    amtool = require_binary("amtool", "apt-get install prometheus-alertmanager")
    result = run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={alertmanager_copy(tmp_path)}",
        f"alertname={alertname}",
        "panel=web01",
        "severity=warning",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    receivers = set(result.stdout.strip().split(","))
    expected = {"brainycp-remediator", "people"} if alertname in REMEDIATED else {"people"}
    assert receivers == expected


def test_alertmanager_routes_match_the_example_remediator_rules() -> None:
    rules = load("config.example.yml")["remediator"]["rules"]
    handled = set()
    for rule in rules:
        for matcher in rule["matchers"]:
            if matcher.startswith('alertname="'):
                handled.add(matcher.split('"')[1])
    assert handled == REMEDIATED


# --------------------------------------------------------------------------- example config


def test_the_example_config_is_valid_for_both_daemons(tmp_path: Path) -> None:
    text = (DEPLOY / "config.example.yml").read_text()
    for name in ("panel.pass", "mx01.pass", "webhook.token"):
        (tmp_path / name).write_text(f"secret-{name}\n")
        (tmp_path / name).chmod(0o400)  # as the README installs them
        text = text.replace(f"/etc/brainycp-mail/{name}", str(tmp_path / name))
    config = parse_config(yaml.safe_load(text), require_remediator_auth=True)
    assert set(config.panels) == {"web01", "web02", "mx01"}
    assert config.panels["web01"].url == "https://web01.example.net:8002/api/api.php"
    assert config.panels["mx01"].password.get_secret_value() == "secret-mx01.pass"
    assert config.panels["web02"].daemons == ("clamav",)
    assert config.remediator.auth is not None
    assert config.remediator.auth.bearer_token is not None
    assert str(config.remediator.state_file) == "/var/lib/brainycp-mail/remediator.sqlite"
    assert [r.action for r in config.remediator.rules] == [
        "delete_frozen",
        "restart_service",
        "restart_service",
        "delete_messages",
        "delete_messages",
    ]
    spam = config.remediator.rules[-1]
    assert spam.approval == "required" and spam.select is not None
    assert spam.select.templates() == {"sender": "sender"}
    assert config.remediator.circuit_breaker is not None
    assert config.warnings == ()


# --------------------------------------------------------------------------- systemd


def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


@pytest.mark.parametrize("daemon", ["exporter", "remediator"])
def test_systemd_unit_is_hardened(daemon: str) -> None:
    service = unit(f"brainycp-mail-{daemon}.service")["Service"]
    assert service["ExecStart"] == (
        f"/usr/local/bin/brainycp-mail-{daemon} --config /etc/brainycp-mail/config.yml"
    )
    assert service.get("User") or service.get("DynamicUser") == "yes"
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "Restart": "on-failure",
        "ReadOnlyPaths": "/etc/brainycp-mail",
    }.items():
        assert service.get(key) == value, key
    if daemon == "remediator":
        assert service["StateDirectory"] == "brainycp-mail"
    # systemctl reload sends SIGHUP, which reloads the config instead of ending the daemon.
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"


@pytest.mark.parametrize("daemon", ["exporter", "remediator"])
def test_systemd_analyze_verifies_the_unit(tmp_path: Path, daemon: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (optional check)")
    name = f"brainycp-mail-{daemon}.service"
    # verify insists that ExecStart exists: point it at this checkout's console script.
    binary = shutil.which(f"brainycp-mail-{daemon}") or str(
        Path(REPO / ".venv" / "bin" / f"brainycp-mail-{daemon}")
    )
    if not Path(binary).exists():
        pytest.skip(f"brainycp-mail-{daemon} is not installed")
    text = (DEPLOY / "systemd" / name).read_text()
    (tmp_path / name).write_text(text.replace(f"/usr/local/bin/brainycp-mail-{daemon}", binary))
    result = run(analyze, "verify", str(tmp_path / name))
    if result.returncode != 0 and "Failed to" in result.stderr and "bus" in result.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- container


def test_containerfile_runs_both_daemons_as_non_root() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert "RUN pip install . && rm -rf /src" in lines
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1] != "USER root"
    assert "EXPOSE 9863 9864" in lines
    assert any(line.startswith("ENTRYPOINT") for line in lines)
    assert "exporter|remediator" in text


# --------------------------------------------------------------------------- files and modes

SERVICE_ID, PROMETHEUS_ID, OTHER_ID = 64101, 64102, 64103


def can_read(uid: int, path: Path) -> bool:
    """Whether a process of ``uid`` (primary group ``uid``, no others) can read ``path``."""
    setpriv = require_binary("setpriv", "apt-get install util-linux")
    result = subprocess.run(
        [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", "cat", str(path)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


@pytest.fixture(scope="module")
def scratch_root() -> Iterator[Path]:
    """deploy/install-files.sh run into a scratch root, with numeric users for the
    service (the daemons) and prometheus (Prometheus and Alertmanager on Debian)."""
    if os.geteuid() != 0:
        pytest.skip("rendering the deploy steps needs root (chown)")
    # Not under pytest's 0700 tmp dir: other users must be able to walk to the files.
    root = Path(tempfile.mkdtemp(prefix="brainycp-deploy-", dir="/tmp"))
    root.chmod(0o755)
    env = {
        **os.environ,
        "DESTDIR": str(root),
        "SERVICE_USER": str(SERVICE_ID),
        "PROMETHEUS_USER": str(PROMETHEUS_ID),
    }
    result = subprocess.run(
        ["sh", str(DEPLOY / "install-files.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    try:
        yield root
    finally:
        shutil.rmtree(root)


def test_each_reader_can_read_what_it_needs_and_no_one_else_a_secret(scratch_root: Path) -> None:
    etc, prom = scratch_root / "etc" / "brainycp-mail", scratch_root / "etc" / "prometheus"
    rules = prom / "rules" / "brainycp-mail.rules.yml"
    am_token = prom / "brainycp-mail-webhook.token"
    service_reads = [etc / "config.yml", etc / "panel.pass", etc / "webhook.token"]
    for path in service_reads:
        assert can_read(SERVICE_ID, path), path
    assert can_read(PROMETHEUS_ID, rules), "Prometheus must read the rule file"
    assert can_read(PROMETHEUS_ID, am_token), "Alertmanager must read its webhook token"
    for path in [*service_reads, am_token]:
        assert not can_read(OTHER_ID, path), f"anyone can read {path}"
    for path in service_reads:
        assert not can_read(PROMETHEUS_ID, path), f"prometheus can read {path}"
    assert not can_read(SERVICE_ID, am_token)
    # The two copies of the token are one token.
    assert am_token.read_text() == (etc / "webhook.token").read_text()
    assert len((etc / "webhook.token").read_text()) == 64
    # Secrets are owner-only, so the daemons have no mode warning to give.
    for path in (etc / "panel.pass", etc / "webhook.token", am_token):
        assert path.stat().st_mode & 0o777 == 0o400, path
    assert rules.read_text() == RULES.read_text()


def test_the_rendered_config_loads_without_a_mode_warning(scratch_root: Path) -> None:
    etc = scratch_root / "etc" / "brainycp-mail"
    (etc / "panel.pass").write_text("panel-password")  # as the README says: content only
    (etc / "mx01.pass").write_text("other-password")
    (etc / "mx01.pass").chmod(0o400)
    text = (etc / "config.yml").read_text().replace("/etc/brainycp-mail/", f"{etc}/")
    config_path = scratch_root / "config.yml"
    config_path.write_text(text)
    for daemon in ("exporter", "remediator"):
        result = run(PYTHON, "-m", f"{daemon}.cli", "--config", str(config_path), "--check-config")
        assert result.returncode == 0, result.stderr
        assert "warning:" not in result.stdout + result.stderr
    assert (etc / "panel.pass").stat().st_mode & 0o777 == 0o400


@pytest.mark.parametrize("daemon", ["exporter", "remediator"])
def test_readme_install_steps_use_the_install_script(daemon: str) -> None:
    readme = (REPO / "README.md").read_text()
    assert "sh deploy/install-files.sh" in readme
    assert f"systemctl reload brainycp-mail-{daemon}" in readme
