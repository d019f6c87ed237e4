"""The config loader: defaults, secrets, and errors that name the key and the problem."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from brainycp.config import values
from brainycp.config.errors import ConfigError
from brainycp.config.panels import api_url
from brainycp.config.values import parse_duration, parse_size
from exporter import settings as exporter_settings
from remediator.settings.config import load_config, parse_config
from remediator.settings.matchers import Matcher
from tests.support import PYTHON


@pytest.fixture()
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "panel.pass"
    path.write_text("s3cret-Value\n")
    return path


def errors_of(data: object, **kwargs: bool) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kwargs)
    return info.value.errors


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1d", 86400),
        ("1h30m", 5400),
        (45, 45),
        ("2.5", 2.5),
    ],
)
def test_durations_accept_units_and_plain_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "", "m5", "-1s", True, None, "1h 30m"])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_sizes_accept_binary_and_decimal_units() -> None:
    assert parse_size("64MiB") == 64 * 1024 * 1024
    assert parse_size("10MB") == 10_000_000
    assert parse_size(512) == 512
    with pytest.raises(ValueError):
        parse_size("lots")


def test_panel_inherits_defaults_and_overrides_them(secret_file: Path) -> None:
    config = parse_config(
        {
            "defaults": {"username": "monitor", "password_file": str(secret_file), "timeout": "7s"},
            "panels": {
                "web01": {"url": "https://203.0.113.10:8002"},
                "web02": {"url": "http://198.51.100.2:8002/custom/api.php", "timeout": 3},
            },
        }
    )
    web01, web02 = config.panels["web01"], config.panels["web02"]
    assert web01.url == "https://203.0.113.10:8002/api/api.php"
    assert web02.url == "http://198.51.100.2:8002/custom/api.php"
    assert (web01.timeout, web02.timeout) == (7.0, 3.0)
    assert web01.username == "monitor"
    assert web01.password.get_secret_value() == "s3cret-Value"
    assert web01.daemons == ("clamav", "spamassassin")


def test_timezone_defaults_to_utc_and_is_checked(secret_file: Path) -> None:
    base = {"username": "monitor", "password_file": str(secret_file)}
    config = parse_config(
        {
            "defaults": {**base, "timezone": "Europe/Moscow"},
            "panels": {
                "web01": {"url": "https://203.0.113.10:8002"},
                "web02": {"url": "https://203.0.113.11:8002", "timezone": "UTC"},
            },
        }
    )
    assert config.panels["web01"].timezone == "Europe/Moscow"
    assert str(config.panels["web01"].zone) == "Europe/Moscow"
    assert config.panels["web02"].timezone == "UTC" and config.panels["web02"].zone is None
    plain = parse_config({"defaults": base, "panels": {"web01": {"url": "https://h:8002"}}})
    assert plain.panels["web01"].timezone == "UTC"
    errors = errors_of(
        {
            "defaults": base,
            "panels": {"web01": {"url": "https://h:8002", "timezone": "Europe/Moskow"}},
        }
    )
    assert any(
        e.startswith("panels.web01.timezone: unknown time zone 'Europe/Moskow'") for e in errors
    ), errors


def test_a_panels_zone_is_resolved_with_the_config_not_at_each_poll(
    secret_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the file-descriptor limit a tz file cannot be opened: a poll must not need one."""
    base = {"username": "monitor", "password_file": str(secret_file), "timezone": "Asia/Tokyo"}
    config = parse_config({"defaults": base, "panels": {"web01": {"url": "https://h:8002"}}})

    def no_files(name: str) -> None:
        raise OSError(24, "Too many open files", f"/usr/share/zoneinfo/{name}")

    monkeypatch.setattr(values, "ZoneInfo", no_files)
    assert str(config.panels["web01"].zone) == "Asia/Tokyo"


def test_api_path_is_appended_only_when_the_url_has_none() -> None:
    assert api_url("https://h:8002/") == "https://h:8002/api/api.php"
    assert api_url("https://h:8002/panel/x/api/api.php") == "https://h:8002/panel/x/api/api.php"


def test_errors_name_the_key_path_and_the_problem(secret_file: Path) -> None:
    with pytest.raises(ConfigError) as info:
        exporter_settings.parse_config(
            {
                "defaults": {"username": "m", "password_file": str(secret_file)},
                "panels": {"web01": {"url": "ftp://x", "colour": "blue", "timeout": "5x"}},
                "exporter": {"max_concurrency": 0},
                "bogus": 1,
            }
        )
    errors = info.value.errors
    text = "\n".join(errors)
    assert "panels.web01.url: must start with http:// or https://" in errors
    assert "panels.web01.colour: unknown key" in errors
    assert "panels.web01.timeout: '5x' is not a duration" in text
    assert any(e.startswith("exporter.max_concurrency:") for e in errors)
    assert any(e.startswith("bogus: unknown key") for e in errors)


def test_password_never_appears_in_repr_or_errors(secret_file: Path) -> None:
    config = parse_config(
        {"panels": {"w": {"url": "http://h", "username": "u", "password_file": str(secret_file)}}}
    )
    assert "s3cret" not in repr(config)
    assert "s3cret" not in repr(config.panels["w"])
    errors = errors_of(
        {"panels": {"w": {"url": "nope", "username": "u", "password": "s3cret-inline"}}}
    )
    assert "s3cret" not in "\n".join(errors)


def test_missing_password_file_names_the_key(tmp_path: Path) -> None:
    errors = errors_of(
        {
            "panels": {
                "w": {"url": "http://h", "username": "u", "password_file": str(tmp_path / "x")}
            }
        }
    )
    assert errors == ["panels.w.password_file: cannot read the password: No such file or directory"]


def test_panel_without_any_password_is_an_error() -> None:
    errors = errors_of({"panels": {"w": {"url": "http://h", "username": "u"}}})
    assert errors == ["panels.w: no password; set password_file, password_env or password"]


def test_inline_password_works_but_warns() -> None:
    config = parse_config({"panels": {"w": {"url": "http://h", "username": "u", "password": "p"}}})
    assert config.panels["w"].password.get_secret_value() == "p"
    assert any("inline" in w for w in config.warnings)


def test_password_env_is_read_once_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANEL_PW", "from-env")
    config = parse_config(
        {"panels": {"w": {"url": "http://h", "username": "u", "password_env": "PANEL_PW"}}}
    )
    monkeypatch.setenv("PANEL_PW", "changed")
    assert config.panels["w"].password.get_secret_value() == "from-env"


def test_status_patterns_classify_systemd_words_and_russian() -> None:
    config = parse_config({"panels": {"w": {"url": "http://h", "username": "u", "password": "p"}}})
    patterns = config.panels["w"].status_patterns
    assert patterns.classify("Active: active (running) since Tue") == "running"
    assert patterns.classify("Active: inactive (dead)") == "stopped"
    assert patterns.classify("clamd работает") == "running"
    assert patterns.classify("служба остановлена") == "stopped"
    assert patterns.classify("¯\\_(ツ)_/¯") == "unknown"


def test_bad_status_regex_names_the_key() -> None:
    errors = errors_of({"defaults": {"status_patterns": {"running": ["(unclosed"]}}})
    assert len(errors) == 1 and errors[0].startswith("defaults.status_patterns.running:")


def test_remediator_rules_are_validated_with_their_index(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    base = {"auth": {"bearer_token_file": str(token)}}
    errors = errors_of(
        {
            "remediator": {
                **base,
                "rules": [
                    {"name": "ok", "matchers": ['alertname="A"'], "action": "delete_frozen"},
                    {"name": "wipe", "matchers": ['alertname="B"'], "action": "delete_all"},
                    {"name": "svc", "matchers": ['alertname="C"'], "action": "restart_service"},
                    {"name": "bad", "matchers": ['alertname=~"("'], "action": "delete_frozen"},
                    {"name": "all", "matchers": ["x=y"], "action": "delete_messages", "select": {}},
                ],
            }
        },
        require_auth=True,
    )
    assert any(e.startswith("remediator.rules[1].allow_destructive:") for e in errors)
    assert any(e.startswith("remediator.rules[2].daemon:") for e in errors)
    assert any(e.startswith("remediator.rules[3].matchers") for e in errors)
    assert any(e.startswith("remediator.rules[4].select:") for e in errors)


def test_remediator_needs_auth_unless_explicitly_insecure(tmp_path: Path) -> None:
    errors = errors_of({"remediator": {}}, require_auth=True)
    assert errors[0].startswith("remediator.auth: the webhook needs auth")
    config = parse_config({"remediator": {"insecure_no_auth": True}}, require_auth=True)
    assert config.remediator.auth is None
    # A check of the rules alone (require_auth=False) does not ask for the webhook's auth,
    # and the exporter, which reads the same file, does not read the section at all.
    assert parse_config({"remediator": {}}).remediator.auth is None
    assert exporter_settings.parse_config({"remediator": {"rules": "nope"}}).exporter.listen


def test_bearer_token_is_read_and_hidden(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken-value\n")
    config = parse_config(
        {"remediator": {"auth": {"bearer_token_file": str(token)}}}, require_auth=True
    )
    assert config.remediator.auth is not None and config.remediator.auth.bearer_token is not None
    assert config.remediator.auth.bearer_token.get_secret_value() == "t0ken-value"
    assert "t0ken" not in repr(config.remediator)


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('alertname="A"', {"alertname": "A"}, True),
        ('alertname="A"', {"alertname": "AB"}, False),
        ('severity=~"warning|critical"', {"severity": "critical"}, True),
        ('severity=~"warn"', {"severity": "warning"}, False),  # regexes are anchored
        ('panel!="web01"', {}, True),  # a missing label is the empty string
        ('panel!~"web.*"', {"panel": "web01"}, False),
        ("team=mail", {"team": "mail"}, True),
    ],
)
def test_matchers_follow_alertmanager_semantics(
    text: str, labels: dict[str, str], expected: bool
) -> None:
    assert Matcher.parse(text).matches(labels) is expected


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("panels:\n  web01: {url: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in info.value.errors[0] and "line" in info.value.errors[0]


def test_example_shape_from_the_issue_loads(tmp_path: Path, secret_file: Path) -> None:
    data = yaml.safe_load(
        f"""
defaults:
  username: monitor
  password_file: {secret_file}
  tls_verify: true
  timeout: 10s
  max_response_bytes: 64MiB
  daemons: [clamav, spamassassin]
  status_patterns:
    running: ['active \\(running\\)', '\\brunning\\b', 'работает']
    stopped: ['inactive', '\\bstopped\\b', 'dead', 'failed', 'остановлен']
panels:
  web01:
    url: https://203.0.113.10:8002
    username: admin
exporter: {{}}
remediator: {{}}
"""
    )
    config = parse_config(data)
    assert list(config.panels) == ["web01"]
    assert config.panels["web01"].max_response_bytes == 64 * 1024 * 1024


@pytest.mark.e2e
@pytest.mark.parametrize("script", ["exporter.cli", "remediator.cli"])
def test_check_config_exits_2_and_names_the_key(tmp_path: Path, script: str) -> None:
    pytest.importorskip(script)
    path = tmp_path / "bad.yml"
    path.write_text("panels:\n  web01:\n    url: ftp://nope\n    username: u\n    password: p\n")
    result = subprocess.run(
        [PYTHON, "-m", script, "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "panels.web01.url: must start with http:// or https://" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_auth_errors_show_even_when_a_rule_is_broken_too() -> None:
    errors = errors_of(
        {"remediator": {"rules": [{"name": "x", "matchers": ["a=b"], "action": "nope"}]}},
        require_auth=True,
    )
    assert any(e.startswith("remediator.rules[0].action:") for e in errors)
    assert any(e.startswith("remediator.auth: the webhook needs auth") for e in errors)


def panel_with_labels(labels: object, where: str = "panel") -> dict[str, object]:
    panel = {"url": "http://127.0.0.1:8002", "username": "u", "password_env": "HOME"}
    if where == "defaults":
        return {"defaults": {"labels": labels}, "panels": {"web01": panel}}
    return {"panels": {"web01": {**panel, "labels": labels}}}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        # Prometheus's target labels: in multi-target mode /sd puts panel labels on every
        # series, and these would replace the ones the alerts match on.
        ("job", "set by Prometheus"),
        ("instance", "set by Prometheus"),
        ("le", "histogram buckets"),
        ("panel", "set by the exporter"),
        ("__address__", "reserved for Prometheus"),
        ("__x", "reserved for Prometheus"),
        ("dc_é", "not a Prometheus label name"),
        ("Dc", None),
        ("_dc", None),
        ("job_owner", None),
    ],
)
def test_panel_label_names_that_prometheus_or_the_exporter_own_are_refused_naming_the_key(
    name: str, reason: str | None
) -> None:
    data = panel_with_labels({name: "x"})
    if reason is None:
        assert parse_config(data).panels["web01"].labels == ((name, "x"),)
        return
    (line,) = errors_of(data)
    assert line.startswith(f"panels.web01.labels.{name}: ") and reason in line, line


def test_every_bad_label_name_is_listed_in_one_line() -> None:
    (line,) = errors_of(panel_with_labels({"ok": "1", "1dc": "x", "d-c": "y", "le": "z"}))
    assert line.startswith("panels.web01.labels: ")
    for name in ("'1dc'", "'d-c'", "'le'"):
        assert f"label name {name}" in line
    assert "'ok'" not in line


def test_a_reserved_label_under_defaults_is_refused_there() -> None:
    assert errors_of(panel_with_labels({"instance": "x"}, where="defaults")) == [
        "defaults.labels.instance: set by Prometheus on every series it scrapes"
    ]


@pytest.mark.e2e
@pytest.mark.parametrize("script", ["exporter.cli", "remediator.cli"])
def test_check_config_refuses_a_job_label_naming_the_key(tmp_path: Path, script: str) -> None:
    path = tmp_path / "labels.yml"
    path.write_text(yaml.safe_dump(panel_with_labels({"job": "mail"})))
    result = subprocess.run(
        [PYTHON, "-m", script, "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "panels.web01.labels.job: set by Prometheus" in result.stdout + result.stderr
