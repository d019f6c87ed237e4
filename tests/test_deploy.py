"""The deployment, as an operator gets it: the sdist carries everything, and what the
README's "Installing for real" does (the wheel built from the sdist into the documented
virtualenv, deploy/install-files.sh) works in a scratch root. There the systemd units
verify, every reader reads what it needs and no one else a secret, and a real Prometheus
and Alertmanager started with the shipped files load every rule group, scrape every job
and send the webhook with the installed token. Also: the example config is valid and
the Alertmanager routes send the right alerts to the remediator."""

from __future__ import annotations

import configparser
import datetime as dt
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from remediator.settings.config import parse_config
from tests.deploy_support import (
    DEPLOY,
    OTHER_ID,
    PROMETHEUS_ID,
    SERVICE_ID,
    VENV,
    Dists,
    as_user,
    build_dists,
    install_files,
    install_venv,
    open_dir,
    sdist_names,
    setup_verify_root,
    webhook_receiver,
    writable_by,
)
from tests.support import (
    ANY_PORT,
    PYTHON,
    REPO,
    alertmanager_args,
    free_port,
    prometheus_args,
    require_binary,
    running,
    secret_file,
    serving,
    serving_on_free_port,
    wait_until,
)

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


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=60, check=False
    )


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
    for name in ("prometheus.yml", "prometheus-multi-target.yml"):
        config = load(name)
        shipped = {j["job_name"] for j in config["scrape_configs"]}
        # Every file Prometheus may run with has the jobs the alerts need, Alertmanager's
        # (NotificationsFailing) included, and the rules where install-files.sh puts them.
        assert watched | {"alertmanager"} <= shipped, name
        assert config["rule_files"] == ["/etc/prometheus/rules/brainycp-mail.rules.yml"], name
    demo = set(re.findall(r'"job_name": "([^"]+)"', (REPO / "tests" / "demo.py").read_text()))
    assert watched <= demo
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


@pytest.mark.e2e
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


@pytest.mark.e2e
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
    config = parse_config(yaml.safe_load(text), require_auth=True)
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


# --------------------------------------------------------------------------- sdist and wheel


@pytest.fixture(scope="module")
def dists() -> Iterator[Dists]:
    workdir = open_dir("brainycp-dists-")
    try:
        yield build_dists(workdir)
    finally:
        shutil.rmtree(workdir)


SHIPPED_TREES = ("alerts", "dashboards", "deploy", "docs", "tests", "bench")


def checkout_files(top: str) -> set[str]:
    """The files under ``top`` in this checkout, less caches and build output."""
    skipped = {"__pycache__", ".hypothesis", ".pytest_cache"}
    return {
        str(path.relative_to(REPO))
        for path in (REPO / top).rglob("*")
        if path.is_file()
        and not skipped & set(path.relative_to(REPO).parts)
        and path.suffix not in (".pyc", ".so")
    }


@pytest.mark.e2e
def test_the_sdist_carries_a_working_deployment(dists: Dists) -> None:
    names = sdist_names(dists.sdist)
    for top in SHIPPED_TREES:
        missing = checkout_files(top) - names
        assert not missing, f"not in the sdist: {sorted(missing)[:10]}"
    assert {
        "LICENSE",
        "README.md",
        "Makefile",
        "conftest.py",
        "pyproject.toml",
        "setup.py",
        "brainycp/queue/_scan.h",
        "deploy/install-files.sh",
        "tests/support.py",
        "tests/fixtures/tls/cert.pem",
        "alerts/brainycp-mail.rules.yml",
    } <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".so"))]
    license_text = (dists.source / "LICENSE").read_text()
    assert license_text.startswith("MIT License\n\nCopyright (c) 2026 brainycp-mail contributors")
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in license_text
    metadata = (dists.source / "PKG-INFO").read_text()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata


@pytest.mark.e2e
def test_the_wheel_built_from_the_sdist_holds_the_packages_and_their_files(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = set(wheel.namelist())
    # The wheel is what operators install: the repository's tooling (the demo, the process
    # harness, the tests) stays out of it; the simulator stays in (brainycp-panel-sim).
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]
    assert not [n for n in names if n.rsplit("/", 1)[-1] in ("demo.py", "harness.py")]
    assert not [n for n in names if n.rsplit("/", 1)[-1].startswith(("test_", "conftest"))]
    assert "brainycp/simulator/cli.py" in names
    for needed in (
        "brainycp/daemon/templates/base.html",
        "exporter/templates/fleet.html",
        "brainycp/py.typed",
        "remediator/cli.py",
    ):
        assert needed in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


# --------------------------------------------------------------------------- installed


@dataclass
class Installed:
    root: Path
    venv: Path
    source: Path
    output: str

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        """``code`` run by the installed virtualenv's Python, isolated (-I: not from the
        current directory either)."""
        return run(self.venv / "bin" / "python", "-I", "-c", code)


@pytest.fixture(scope="module")
def installed(dists: Dists) -> Iterator[Installed]:
    """README "Installing for real", steps 1 and 2, into a scratch root: the wheel built
    from the sdist into the documented virtualenv, then the unpacked sdist's
    deploy/install-files.sh with numeric users for the daemons and prometheus."""
    if os.geteuid() != 0:
        pytest.skip("installing with owners needs root (chown, setpriv)")
    root = open_dir("brainycp-deploy-")
    try:
        venv = install_venv(root, dists.wheel)
        result = install_files(dists.source, root)
        assert result.returncode == 0, result.stderr
        # The package is where the units look: no warning about missing daemons.
        assert "warning" not in result.stderr, result.stderr
        yield Installed(root, venv, dists.source, result.stdout)
    finally:
        shutil.rmtree(root)


@pytest.mark.e2e
def test_the_readme_installs_into_the_virtualenv_the_units_run(installed: Installed) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Installing for real") : readme.index("## Configuration")]
    commands = [
        line.strip()
        for block in re.findall(r"```sh\n(.*?)```", section, re.S)
        for line in block.splitlines()
        if line.strip()
    ]
    # The steps the fixture took, in the README's words.
    assert commands[:4] == [
        f"python3 -m venv {VENV}",
        f"{VENV}/bin/pip install .",
        "sh deploy/install-files.sh",
        "printf '%s' 'THE-PANEL-PASSWORD' > /etc/brainycp-mail/panel.pass   # keeps owner and mode",
    ]
    for command in commands[4:] + re.findall(rf"{VENV}/bin/brainycp-[a-z-]+(?=[\s`])", section):
        program = command.split()[0]
        if program.startswith(VENV):
            assert (installed.root / program.lstrip("/")).is_file(), program
    for daemon in ("exporter", "remediator"):
        service = unit(f"brainycp-mail-{daemon}.service", installed.root)["Service"]
        for key in ("ExecStartPre", "ExecStart"):
            program = service[key].split()[0]
            assert program == f"{VENV}/bin/brainycp-mail-{daemon}"
            assert os.access(installed.root / program.lstrip("/"), os.X_OK), program
        # The installed daemon runs from the virtualenv, not from this checkout
        # (-I: not from the current directory either).
        where = installed.python(
            "import exporter, brainycp; print(exporter.__file__); print(brainycp.__file__)"
        )
        assert where.returncode == 0, where.stderr
        assert all(line.startswith(str(installed.venv)) for line in where.stdout.split()), where


@pytest.mark.e2e
def test_the_installed_daemons_accept_the_installed_config(installed: Installed) -> None:
    etc = installed.root / "etc" / "brainycp-mail"
    # As the README says: only the content of the password file is written.
    (etc / "panel.pass").write_text("panel-password")
    (etc / "mx01.pass").write_text("other-password")  # the example's second login
    (etc / "mx01.pass").chmod(0o400)
    text = (etc / "config.yml").read_text().replace("/etc/brainycp-mail/", f"{etc}/")
    config_path = installed.root / "config.yml"
    config_path.write_text(text)
    for daemon in ("exporter", "remediator"):
        program = installed.venv / "bin" / f"brainycp-mail-{daemon}"
        result = run(program, "--config", config_path, "--check-config")
        assert result.returncode == 0, result.stderr
        assert "warning:" not in result.stdout + result.stderr
    assert (etc / "panel.pass").stat().st_mode & 0o777 == 0o400
    doctor = run(installed.venv / "bin" / "brainycp-mail-doctor", "--help")
    assert doctor.returncode == 0 and "--config" in doctor.stdout


@pytest.mark.e2e
def test_the_installed_exporter_says_which_c_readers_the_install_built(
    installed: Installed, tmp_path: Path
) -> None:
    """The README sends operators to this start line instead of promising speeds."""
    readme = (REPO / "README.md").read_text()
    assert "queue_readers=" in readme
    assert not re.search(r"\d+ to \d+ times faster|\d+-\d+x faster", readme)
    built = installed.python(
        "from brainycp.queue import c_readers; print(','.join(c_readers()) or 'python')"
    )
    assert built.returncode == 0, built.stderr
    config = tmp_path / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {"panels": {"web01": {"url": "http://127.0.0.1:9", "username": "u",
                                  "password_env": "HOME"}}}
        )
    )  # fmt: skip
    program = str(installed.venv / "bin" / "brainycp-mail-exporter")
    for pure, expected in (("", built.stdout.strip()), ("1", "python")):
        log = tmp_path / f"exporter{pure}.log"
        args = [program, "--config", str(config), *ANY_PORT]
        env = {"BRAINYCP_PURE_PYTHON": pure}
        with serving(args, log=log, env=env):
            started = next(line for line in log.read_text().splitlines() if "started" in line)
        assert f"queue_readers={expected}" in started, started


def can_read(uid: int, path: Path) -> bool:
    """Whether a process of ``uid`` (primary group ``uid``, no others) can read ``path``."""
    result = subprocess.run(as_user(uid, "cat", path), capture_output=True, timeout=30)
    return result.returncode == 0


@pytest.mark.e2e
def test_each_reader_can_read_what_it_needs_and_no_one_else_a_secret(
    installed: Installed,
) -> None:
    etc, prom = installed.root / "etc" / "brainycp-mail", installed.root / "etc" / "prometheus"
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


@pytest.mark.e2e
def test_running_install_files_again_keeps_secrets_and_renders_local_thresholds(
    installed: Installed,
) -> None:
    etc = installed.root / "etc" / "brainycp-mail"
    rules = installed.root / "etc/prometheus/rules/brainycp-mail.rules.yml"
    token, config = (etc / "webhook.token").read_text(), (etc / "config.yml").read_text()
    local = etc / "thresholds.local.yml"
    local.write_text("alerts:\n  BrainyCPMailQueueHigh: {above: 23456, for: 45m}\n")
    try:
        # PYTHON defaults to the installed virtualenv's, which has PyYAML.
        result = install_files(installed.source, installed.root)
        assert result.returncode == 0, result.stderr
        assert "rendered with" in result.stdout
        rendered = yaml.safe_load(rules.read_text())
        (high,) = [
            r
            for g in rendered["groups"]
            for r in g["rules"]
            if r.get("alert") == "BrainyCPMailQueueHigh"
        ]
        assert "> 23456" in high["expr"] and high["for"] == "45m"
        assert rules.stat().st_mode & 0o777 == 0o644
        assert can_read(PROMETHEUS_ID, rules)
        promtool = require_binary("promtool", "apt-get install prometheus")
        checked = run(promtool, "check", "rules", rules)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert (etc / "webhook.token").read_text() == token
        assert (etc / "config.yml").read_text() == config
    finally:
        local.unlink()
        assert install_files(installed.source, installed.root).returncode == 0
    assert rules.read_text() == RULES.read_text()


@pytest.mark.e2e
def test_install_files_without_root_needs_set_owners_no_and_warns_of_a_missing_venv(
    dists: Dists,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("running the script as another user needs root (setpriv)")
    destdir = writable_by(OTHER_ID, "brainycp-deploy-user-")
    try:
        refused = install_files(dists.source, destdir, user=OTHER_ID)
        assert refused.returncode == 1
        assert "run as root" in refused.stderr and "SET_OWNERS=no" in refused.stderr
        assert not (destdir / "etc").exists(), "nothing is written before the refusal"
        result = install_files(
            dists.source, destdir, user=OTHER_ID, SET_OWNERS="no", VENV="/srv/mail-venv"
        )
        assert result.returncode == 0, result.stderr
        etc = destdir / "etc" / "brainycp-mail"
        modes = {
            etc: 0o750,
            etc / "config.yml": 0o640,
            etc / "panel.pass": 0o400,
            etc / "webhook.token": 0o400,
            destdir / "etc/prometheus/brainycp-mail-webhook.token": 0o400,
            destdir / "etc/prometheus/rules/brainycp-mail.rules.yml": 0o644,
            destdir / "etc/systemd/system/brainycp-mail-exporter.service": 0o644,
        }
        for path, mode in modes.items():
            assert path.stat().st_mode & 0o777 == mode, path
            assert path.stat().st_uid == OTHER_ID, path
        # Another virtualenv is written into the installed units, and its absence said.
        exporter_unit = unit("brainycp-mail-exporter.service", destdir)["Service"]
        assert exporter_unit["ExecStart"].startswith("/srv/mail-venv/bin/brainycp-mail-exporter ")
        assert f"{destdir}/srv/mail-venv/bin/brainycp-mail-exporter is missing" in result.stderr
        again = install_files(dists.source, destdir, user=OTHER_ID, SET_OWNERS="no")
        assert again.returncode == 0, again.stderr
    finally:
        shutil.rmtree(destdir)


# --------------------------------------------------------------------------- systemd


def unit(name: str, root: Path | None = None) -> configparser.RawConfigParser:
    """A unit as shipped, or as installed under ``root``."""
    path = DEPLOY / "systemd" / name if root is None else root / "etc/systemd/system" / name
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


@pytest.mark.parametrize("daemon", ["exporter", "remediator"])
def test_systemd_unit_is_hardened(daemon: str) -> None:
    service = unit(f"brainycp-mail-{daemon}.service")["Service"]
    assert service["ExecStart"] == (
        f"{VENV}/bin/brainycp-mail-{daemon} --config /etc/brainycp-mail/config.yml"
    )
    assert service["ExecStartPre"] == service["ExecStart"] + " --check-config"
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


@pytest.mark.e2e
def test_systemd_analyze_verifies_the_installed_units(installed: Installed) -> None:
    """In the scratch root: verify resolves ExecStart= there, so it fails when the units
    name a path where the README's install puts no daemon."""
    analyze = require_binary("systemd-analyze", "apt-get install systemd")
    setup_verify_root(installed.root)
    names = [f"/etc/systemd/system/brainycp-mail-{d}.service" for d in ("exporter", "remediator")]
    result = run(analyze, "verify", f"--root={installed.root}", *names)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is not executable" not in result.stderr


# --------------------------------------------------------------------------- Prometheus


def rooted(text: str, root: Path, addresses: dict[str, str]) -> str:
    """A shipped config whose absolute /etc paths point into ``root`` and whose loopback
    addresses are replaced (the real daemons of a test listen on ports of its own)."""
    text = re.sub(r"(?<=[\s\"'])/etc/", f"{root}/etc/", text)
    for shipped, used in addresses.items():
        text = text.replace(shipped, used)
    return text


def prometheus_api(base: str, path: str, **params: str) -> Any:
    answer = httpx.get(f"{base}/api/v1/{path}", params=params, timeout=5)
    answer.raise_for_status()
    return answer.json()["data"]


@pytest.mark.e2e
@pytest.mark.parametrize("shipped", ["prometheus.yml", "prometheus-multi-target.yml"])
def test_prometheus_with_the_shipped_config_loads_every_rule_group_and_scrapes_every_job(
    installed: Installed, tmp_path: Path, shipped: str
) -> None:
    prometheus = require_binary("prometheus", "apt-get install prometheus")
    promtool = require_binary("promtool", "apt-get install prometheus")
    # The panel and the multi-target file's second replica: port 9, where nothing listens.
    absent_port = 9
    secret = secret_file(tmp_path / "panel.pass", "pw\n")
    config = tmp_path / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "defaults": {"username": "u", "password_file": str(secret)},
                "panels": {
                    "web01": {"url": f"http://127.0.0.1:{absent_port}", "labels": {"dc": "a"}}
                },
            }
        )
    )
    # The scratch root is walkable by prometheus; its config and data must be too.
    workdir = writable_by(PROMETHEUS_ID, "brainycp-prometheus-")
    exporter_args = [PYTHON, "-m", "exporter.cli", "--config", str(config), *ANY_PORT]
    try:
        with ExitStack() as stack:
            exporter_daemon = stack.enter_context(
                serving(exporter_args, log=tmp_path / "exporter.log")
            )
            exporter = f"127.0.0.1:{exporter_daemon.port}"
            # The shipped file, paths into the root, faster intervals so the test is quick;
            # the second replica of the multi-target file is a port where nothing listens.
            text = (
                rooted(
                    (DEPLOY / shipped).read_text(),
                    installed.root,
                    {
                        "127.0.0.1:9863": exporter,
                        "127.0.0.1:9873": f"127.0.0.1:{absent_port}",
                    },
                )
                .replace("interval: 30s", "interval: 1s")
                .replace("scrape_timeout: 10s", "scrape_timeout: 1s")
            )
            prometheus_config = workdir / "prometheus.yml"
            prometheus_config.write_text(text)
            prometheus_config.chmod(0o644)
            checked = run(promtool, "check", "config", prometheus_config)
            assert checked.returncode == 0, checked.stdout + checked.stderr
            groups = yaml.safe_load(RULES.read_text())["groups"]
            assert f"SUCCESS: {sum(len(g['rules']) for g in groups)} rules found" in checked.stdout

            command = prometheus_args(prometheus, prometheus_config, workdir / "tsdb")
            base = stack.enter_context(
                serving_on_free_port(
                    lambda port: as_user(PROMETHEUS_ID, *command(port)),
                    log=tmp_path / "prometheus.log",
                    ready_path="/-/ready",
                    timeout=30,
                )
            ).url
            loaded = prometheus_api(base, "rules")["groups"]
            assert {g["name"]: len(g["rules"]) for g in loaded} == {
                g["name"]: len(g["rules"]) for g in groups
            }, "Prometheus did not load every rule group of the installed file"
            jobs = {j["job_name"] for j in yaml.safe_load(text)["scrape_configs"]}

            def pools() -> set[str]:
                targets = prometheus_api(base, "targets")["activeTargets"]
                return {t["scrapePool"] for t in targets}

            wait_until(lambda: pools() == jobs, timeout=30, what=f"targets of every job {jobs}")

            def value(expr: str) -> list[Any]:
                return list(prometheus_api(base, "query", query=expr)["result"])

            # The panel's series come once, from the job the alerts read.
            panel = wait_until(
                lambda: value('brainycp_up{panel="web01"}'), timeout=30, what="brainycp_up"
            )
            assert [s["metric"]["job"] for s in panel] == ["brainycp-mail-exporter"]
            # The exporter's own series too: BrainyCPConfigReloadFailed reads this one.
            reload_ok = wait_until(
                lambda: value("brainycp_config_last_reload_successful"),
                timeout=30,
                what="the exporter's brainycp_config_last_reload_successful",
            )
            assert [s["value"][1] for s in reload_ok] == ["1"]
    finally:
        shutil.rmtree(workdir)


# --------------------------------------------------------------------------- Alertmanager


@pytest.mark.e2e
def test_alertmanager_with_the_shipped_config_sends_the_installed_token(
    installed: Installed, tmp_path: Path
) -> None:
    alertmanager = require_binary(
        "prometheus-alertmanager", "apt-get install prometheus-alertmanager"
    )
    amtool = require_binary("amtool", "apt-get install prometheus-alertmanager")
    workdir = writable_by(PROMETHEUS_ID, "brainycp-alertmanager-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        with webhook_receiver() as receiver:
            # The shipped file with the token path in the root and both receivers here;
            # group_wait shortened so the first notification goes out at once.
            text = rooted(
                (DEPLOY / "alertmanager.yml").read_text(),
                installed.root,
                {
                    "http://127.0.0.1:9864": receiver.url,
                    "http://127.0.0.1:5001": receiver.url,
                },
            )
            text = re.sub(r"group_wait: \d+s", "group_wait: 0s", text)
            config = workdir / "alertmanager.yml"
            config.write_text(text)
            config.chmod(0o644)
            checked = run(amtool, "check-config", config)
            assert checked.returncode == 0, checked.stdout + checked.stderr
            args = as_user(
                PROMETHEUS_ID, *alertmanager_args(alertmanager, config, workdir / "data")(port)
            )
            with running(args, log=tmp_path / "am.log", ready_url=f"{base}/-/ready", timeout=30):
                now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
                alert = {
                    "labels": {
                        "alertname": "BrainyCPMailFrozenMessages",
                        "panel": "web01",
                        "severity": "warning",
                    },
                    "startsAt": now,
                }
                httpx.post(f"{base}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()
                wait_until(
                    lambda: {r.path for r in receiver.requests} >= {"/webhook", "/alerts"},
                    timeout=30,
                    what="the notification at the remediator's webhook and the people's",
                )
        token = (installed.root / "etc/brainycp-mail/webhook.token").read_text().strip()
        (hook,) = {r.path: r for r in receiver.requests if r.path == "/webhook"}.values()
        assert hook.authorization == f"Bearer {token}"
        assert hook.body["status"] == "firing"
    finally:
        shutil.rmtree(workdir)


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
