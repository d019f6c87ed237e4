"""Notify targets that could never deliver are refused when the config is read, naming
the key and never repeating the URL (a Slack webhook URL is a secret)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from brainycp.config.errors import ConfigError
from remediator.settings.config import parse_config
from tests.support import PYTHON

SECRET = "T000/B000/SECRETPART"


def config(target: dict[str, Any]) -> dict[str, Any]:
    return {"remediator": {"insecure_no_auth": True,
                           "notify": [{"name": "ops", "type": "slack", **target}]}}  # fmt: skip


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"https://hooks.example:99999/{SECRET}", "has an invalid port (must be 1 to 65535)"),
        (f"https://hooks.example:0/{SECRET}", "has an invalid port (must be 1 to 65535)"),
        (f"https://hooks.example:https/{SECRET}", "has an invalid port (must be 1 to 65535)"),
        (f"https://hooks.example/{SECRET}\t", "must not contain spaces, tabs, newlines or control"),
        (f"https://hooks.example/ {SECRET}", "must not contain spaces, tabs, newlines or control"),
        (f"ftp://hooks.example/{SECRET}", "must start with http:// or https://"),
        (f"HTTPS://hooks.example/{SECRET}", "must start with http:// or https://"),
        (f"https:///{SECRET}", "has no host"),
        (f"https://user:pw@hooks.example/{SECRET}", "must not carry a user or password"),
        (f"https://user@hooks.example/{SECRET}", "must not carry a user or password"),
    ],
)
def test_a_url_that_cannot_work_is_refused_naming_the_key(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config({"url": url}))
    (error,) = info.value.errors
    assert error.startswith(f"remediator.notify[0].url: {problem}")
    assert SECRET not in error and "pw" not in error


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"https://hooks.example/{SECRET}\tx\n", "must not contain spaces, tabs"),
        (f"https://hooks.example/{SECRET}\nhttps://second.example/\n", "must not contain spaces"),
        (f"https://hooks.example:99999/{SECRET}\n", "has an invalid port"),
        (f"hooks.example/{SECRET}\n", "must start with http:// or https://"),
    ],
)
def test_a_url_file_holding_a_url_that_cannot_work_is_refused(
    tmp_path: Path, text: str, problem: str
) -> None:
    (tmp_path / "slack.url").write_text(text)
    with pytest.raises(ConfigError) as info:
        parse_config(config({"url_file": str(tmp_path / "slack.url")}))
    (error,) = info.value.errors
    assert error.startswith(f"remediator.notify[0].url_file: '{tmp_path}/slack.url': {problem}")
    assert SECRET not in error


def test_telegram_api_url_and_webhook_token_are_checked_too(tmp_path: Path) -> None:
    (tmp_path / "bot").write_text("1:abc\n")
    (tmp_path / "token").write_text("two words\n")
    telegram = {"name": "tg", "type": "telegram", "bot_token_file": str(tmp_path / "bot"),
                "chat_id": 1, "api_url": "http://127.0.0.1:70000"}  # fmt: skip
    webhook = {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:8080/x",
               "bearer_token_file": str(tmp_path / "token")}  # fmt: skip
    for target, error in (
        (telegram, "remediator.notify[0].api_url: has an invalid port (must be 1 to 65535)"),
        (webhook, f"remediator.notify[0].bearer_token_file: '{tmp_path}/token': the token "
                  "holds spaces, newlines or control characters"),
    ):  # fmt: skip
        with pytest.raises(ConfigError) as info:
            parse_config({"remediator": {"insecure_no_auth": True, "notify": [target]}})
        assert info.value.errors == [error]


def test_good_urls_pass() -> None:
    for url in ("https://hooks.slack.com/services/T/B/x", "http://[::1]:8080/hook?a=b",
                "http://127.0.0.1:65535/x"):  # fmt: skip
        assert parse_config(config({"url": url})).remediator.notify[0].url is not None


@pytest.mark.e2e
def test_check_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "slack.url").write_text(f"https://hooks.example/{SECRET}\t\n")
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config({"url_file": str(tmp_path / "slack.url")})))
    done = subprocess.run(
        [PYTHON, "-m", "remediator.cli", "--config", str(path), "--check-config"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "remediator.notify[0].url_file: " in done.stderr
    assert SECRET not in done.stdout + done.stderr
