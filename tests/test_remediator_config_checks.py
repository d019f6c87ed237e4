"""Config values that used to slip through: NaN/infinite durations, URLs with CR/LF."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from brainycp.config.errors import ConfigError
from exporter import settings as exporter_settings
from remediator.settings.config import load_config, parse_config
from tests.support import PYTHON

BASE_PANEL = {"url": "http://127.0.0.1:8002", "username": "a", "password": "b"}


def config_with(path: list[str], value: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "panels": {"web01": dict(BASE_PANEL)},
        "exporter": {},
        "remediator": {
            "insecure_no_auth": True,
            "rate_limit": {"max_actions": 5, "per": "1h"},
            "rules": [{"name": "r", "matchers": ['alertname="X"'], "action": "delete_frozen"}],
        },
    }
    node = data
    for key in path[:-1]:
        node = node[key] if not isinstance(node, list) else node[int(key)]
    node[path[-1]] = value
    return data


def refusal(load: Callable[[Any], object], source: Any) -> list[str]:
    """The errors with which ``load`` refuses ``source`` (it must refuse it)."""
    with pytest.raises(ConfigError) as info:
        load(source)
    return info.value.errors


@pytest.mark.parametrize(
    "where",
    [
        ["remediator", "rules", "0", "cooldown"],
        ["remediator", "rate_limit", "per"],
        ["remediator", "shutdown_grace"],
        ["remediator", "action_timeout"],
        ["exporter", "interval"],
        ["panels", "web01", "timeout"],
    ],
)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), "nan", "inf", "-inf"])
def test_durations_must_be_finite(where: list[str], value: object) -> None:
    parse = exporter_settings.parse_config if where[0] == "exporter" else parse_config
    errors = refusal(parse, config_with(where, value))
    key = ".".join(where).replace(".rules.0.", ".rules[0].")
    assert any(e.startswith(f"{key}: ") for e in errors), errors


def test_yaml_nan_cannot_turn_off_the_cooldown_or_the_rate_limit(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(
        "panels: {web01: {url: 'http://127.0.0.1:8002', username: a, password: b}}\n"
        "remediator:\n"
        "  insecure_no_auth: true\n"
        "  rate_limit: {max_actions: 5, per: .nan}\n"
        "  rules: [{name: r, matchers: ['alertname=\"X\"'], action: delete_frozen,"
        " cooldown: .NaN}]\n"
    )
    errors = refusal(load_config, path)
    assert any("remediator.rate_limit.per: must be a finite duration" in e for e in errors)
    assert any("remediator.rules[0].cooldown: must be a finite" in e for e in errors)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:8002/api/api.php\r\nX-Injected: 1", "control characters"),
        ("http://127.0.0.1\n:8002/", "control characters"),
        ("http://127.0.0.1:8002/a b", "spaces"),
        ("http://127.0.0.1:99999/", "invalid port"),
    ],
)
def test_panel_urls_with_cr_lf_spaces_or_bad_ports_are_refused(url: str, problem: str) -> None:
    (error,) = refusal(parse_config, {"panels": {"web01": {**BASE_PANEL, "url": url}}})
    assert error.startswith("panels.web01.url: ") and problem in error


@pytest.mark.e2e
def test_the_exporter_refuses_such_a_config_with_exit_2_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(
        'panels: {web01: {url: "http://127.0.0.1:8002/\\r\\nX: 1", username: a, password: b}}\n'
        "exporter: {interval: .nan}\n"
    )
    out = subprocess.run(
        [PYTHON, "-m", "exporter.cli", "--config", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "panels.web01.url" in out.stderr and "exporter.interval" in out.stderr
    assert "Traceback" not in out.stderr


def _rule(name: str) -> dict[str, Any]:
    return {"name": name, "matchers": ['alertname="X"'], "action": "delete_frozen"}


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        (["a", "b", "a"], "remediator.rules: rule name 'a' is used twice"),
        (["(a)"], "remediator.rules: rule name '(a)': '(' starts names of manual"),
        # Checked in order: the repeat comes first here, so it is the one reported.
        (["b", "b", "(c"], "remediator.rules: rule name 'b' is used twice"),
    ],
)
def test_rule_names_are_unique_and_not_manual(names: list[str], problem: str) -> None:
    errors = refusal(parse_config, config_with(["remediator", "rules"], [_rule(n) for n in names]))
    assert any(error.startswith(problem) for error in errors), errors


def test_notify_target_names_are_unique() -> None:
    target = {"name": "ops", "type": "webhook", "url": "https://hooks.example/x"}
    errors = refusal(parse_config, config_with(["remediator", "notify"], [target, dict(target)]))
    expected = "remediator.notify: target name 'ops' is used twice"
    assert any(error.startswith(expected) for error in errors), errors
