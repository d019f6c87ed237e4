"""The YAML layer of the config and per-daemon checking: what YAML would let slip through
(duplicate keys, ``on:`` read as ``true``, alias bombs, deep nesting, odd bytes) is
refused with a line naming the key, and each daemon only refuses what it uses."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainycp.config import loader
from brainycp.config.errors import ConfigError
from brainycp.config.values import parse_size
from brainycp.config.yamlguard import MAX_CONFIG_BYTES, load_yaml
from exporter import settings as exporter_settings
from remediator.settings import config as remediator_settings
from tests.support import PYTHON, secret_file

PANEL = "panels:\n  web01:\n    url: http://127.0.0.1:8002\n    username: admin\n"


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_yaml(text)
    return info.value.errors


def write(tmp_path: Path, text: str | bytes, name: str = "config.yml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    return secret_file(tmp_path / "panel.pass", "pw\n")


def panel_text(secret: Path, extra: str = "") -> str:
    return PANEL + f"    password_file: {secret}\n" + extra


# --------------------------------------------------------------------------- YAML layer


def test_a_key_given_twice_is_refused_with_its_path_and_both_lines() -> None:
    (error,) = errors_of(
        "panels:\n  web01:\n    url: http://a\n    username: x\n    url: http://b\n"
    )
    assert error.startswith("panels.web01.url: appears twice")
    assert "lines 3 and 5" in error


def test_a_panel_given_twice_is_refused() -> None:
    (error,) = errors_of("panels:\n  web01: {url: http://a}\n  web01: {url: http://b}\n")
    assert error.startswith("panels.web01: appears twice")


def test_a_merge_key_override_is_not_a_duplicate() -> None:
    data = load_yaml("base: &b {timeout: 5s}\nweb: {<<: *b, timeout: 10s}\n")
    assert data["web"] == {"timeout": "10s"}


def test_the_on_key_of_a_rule_stays_on_unquoted() -> None:
    data = load_yaml("rules:\n- name: r\n  on: [firing, resolved]\n  dry_run: yes\n")
    assert data["rules"][0]["on"] == ["firing", "resolved"]
    assert data["rules"][0]["dry_run"] is True  # values keep YAML's booleans


def test_an_unquoted_on_key_configures_the_rule(tmp_path: Path) -> None:
    token = write(tmp_path, "tok\n", "token")
    token.chmod(0o600)
    text = (
        f"{PANEL}    password: pw\nremediator:\n  auth: {{bearer_token_file: {token}}}\n"
        "  rules:\n  - name: r\n    matchers: ['alertname=\"A\"']\n    action: delete_frozen\n"
        "    on: [firing, resolved]\n"
    )
    config = remediator_settings.load_config(write(tmp_path, text))
    assert config.remediator.rules[0].on == ["firing", "resolved"]


def billion_laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    previous = "a"
    for level in range(levels):
        name = f"l{level}"
        text += f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]\n"
        previous = name
    return text


def test_an_alias_bomb_is_refused_before_it_is_built() -> None:
    (error,) = errors_of(billion_laughs())
    assert "alias bomb" in error


@pytest.mark.e2e
def test_an_alias_bomb_under_matchers_is_refused_by_the_remediator(tmp_path: Path) -> None:
    bomb = billion_laughs().replace("\n", "\n  ")
    text = f"{PANEL}    password: pw\nremediator:\n  insecure_no_auth: true\n  x:\n  {bomb}"
    result = subprocess.run(
        [PYTHON, "-m", "remediator.cli", "--config", str(write(tmp_path, text)), "--check-config"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "alias bomb" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_self_referencing_alias_is_refused() -> None:
    (error,) = errors_of("a: &a [*a]\n")
    assert "nested deeper than" in error


@pytest.mark.parametrize("depth", [100, 20_000])
def test_deep_nesting_is_refused_without_a_traceback(depth: int) -> None:
    (error,) = errors_of("x: " + "[" * depth + "]" * depth)
    assert "nested deeper than 64 levels" in error


def test_a_file_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(ConfigError) as info:
        loader.load_shared(path)
    assert info.value.errors == [
        f"{path}: the config file is over {MAX_CONFIG_BYTES} bytes; refused"
    ]


@pytest.mark.e2e
@pytest.mark.parametrize("daemon", ["exporter", "remediator"])
def test_a_non_utf8_file_names_the_file_and_the_byte(tmp_path: Path, daemon: str) -> None:
    path = write(tmp_path, b"panels:\n  web01:\n    url: http://caf\xe9\n")
    result = subprocess.run(
        [PYTHON, "-m", f"{daemon}.cli", "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"{path}: not UTF-8 text (byte 0xe9 on line 3)"


@pytest.mark.parametrize("size", ["1" * 400, "1e400", "99999999999999TiB", 2**70])
def test_absurd_sizes_are_refused_not_crashed(size: object) -> None:
    with pytest.raises(ValueError, match=r"size|at most"):
        parse_size(size)


# --------------------------------------------------------------------------- panels


def test_an_empty_panel_list_is_refused(tmp_path: Path) -> None:
    for text in ("panels: {}\n", "panels:\n", "exporter: {}\n"):
        with pytest.raises(ConfigError) as info:
            exporter_settings.load_config(write(tmp_path, text))
        assert info.value.errors[0].startswith("panels: no panels configured")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:0", "http://127.0.0.1:65536", "http://127.0.0.1:99999", "http://h:"]
)
def test_a_panel_url_port_outside_1_to_65535_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        loader.parse_shared({"panels": {"web01": {"url": url, "username": "a", "password": "b"}}})
    assert info.value.errors == ["panels.web01.url: has an invalid port (must be 1 to 65535)"]


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "0.0.0.0:65536"])
def test_a_listen_port_outside_1_to_65535_is_refused(listen: str) -> None:
    with pytest.raises(ConfigError) as info:
        exporter_settings.parse_config({"exporter": {"listen": listen}})
    assert any(e.startswith("exporter.listen: port") for e in info.value.errors)


def test_a_password_file_readable_by_others_is_a_warning_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "pw\n", "panel.pass")
    path.chmod(0o644)
    config = exporter_settings.load_config(write(tmp_path, panel_text(path)))
    assert config.warnings == (
        f"panels.web01.password_file: {path} is mode 0644, readable by group or others;"
        " make it 0600 or 0400, owned by the user the daemon runs as",
    )
    path.chmod(0o400)
    assert exporter_settings.load_config(write(tmp_path, panel_text(path))).warnings == ()


def test_a_group_readable_webhook_token_is_a_warning_for_the_remediator(
    tmp_path: Path, secret: Path
) -> None:
    token = write(tmp_path, "tok\n", "webhook.token")
    token.chmod(0o640)
    text = panel_text(secret, f"remediator:\n  auth:\n    bearer_token_file: {token}\n")
    config = remediator_settings.load_config(write(tmp_path, text))
    assert config.warnings == (
        f"remediator.auth.bearer_token_file: {token} is mode 0640, readable by group or"
        " others; make it 0600 or 0400, owned by the user the daemon runs as",
    )
    # The exporter does not read the token; its warnings are not its business.
    assert exporter_settings.load_config(write(tmp_path, text)).warnings == ()


# --------------------------------------------------------------------------- per daemon


def cli(daemon: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", f"{daemon}.cli", "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.e2e
def test_each_daemon_checks_only_its_own_section_and_the_shared_ones(
    tmp_path: Path, secret: Path
) -> None:
    token = write(tmp_path, "tok\n", "token")
    token.chmod(0o600)
    good_remediator = f"remediator:\n  auth: {{bearer_token_file: {token}}}\n"
    bad_remediator = "remediator:\n  rules: [{name: x, action: nope}]\n"
    good_exporter = "exporter:\n  interval: 30s\n"
    bad_exporter = "exporter:\n  interval: soon\n"

    both_bad = write(tmp_path, panel_text(secret, bad_exporter + bad_remediator))
    exporter = cli("exporter", both_bad)
    assert exporter.returncode == 2
    assert exporter.stderr.splitlines() == [
        "exporter.interval: 'soon' is not a duration (use 30s, 5m, 1h, 1d or a number of seconds)"
    ]
    remediator = cli("remediator", both_bad)
    assert remediator.returncode == 2
    assert all(line.startswith("remediator.") for line in remediator.stderr.splitlines())

    only_remediator_bad = write(tmp_path, panel_text(secret, good_exporter + bad_remediator))
    assert cli("exporter", only_remediator_bad).returncode == 0
    assert cli("remediator", only_remediator_bad).returncode == 2

    only_exporter_bad = write(tmp_path, panel_text(secret, bad_exporter + good_remediator))
    assert cli("exporter", only_exporter_bad).returncode == 2
    checked = cli("remediator", only_exporter_bad)
    assert checked.returncode == 0, checked.stderr

    shared_bad = write(tmp_path, "defaults: {timeout: -1}\n" + good_remediator)
    for daemon in ("exporter", "remediator"):
        result = cli(daemon, shared_bad)
        assert result.returncode == 2
        assert "defaults.timeout" in result.stderr
        assert "panels: no panels configured" in result.stderr


# --------------------------------------------------------------------------- hypothesis

_FRAGMENTS = st.sampled_from(
    [
        "panels:",
        "  web01:",
        "    url: http://127.0.0.1:8002",
        "    url: http://127.0.0.1:0",
        "    username: admin",
        "    password: pw",
        "    password_file: /nonexistent",
        "    timeout: .nan",
        "    interval: 1e400",
        "    max_response_bytes: 1e400",
        "    max_response_bytes: 99999999999999999999TiB",
        "    tls_verify: [1, 2]",
        "    daemons: [clamav, clamav]",
        "exporter:",
        "  listen: 0.0.0.0:99999",
        "  interval: -5",
        "  top_senders: 1e9",
        "remediator:",
        "  insecure_no_auth: true",
        "  rules:",
        "  - name: r",
        "    matchers: ['alertname=~\"(\"']",
        "    action: delete_frozen",
        "    on: [firing]",
        "    cooldown: .inf",
        "x: &a [1, 2]",
        "y: *a",
        "z: *missing",
        "w: 2024-13-45",
        "v: !!binary '@@'",
        "u: !!python/object:os.system {}",
        "? [a, b]",
        ": c",
        "- item",
        "{",
        "\t",
        "'unterminated",
        "---",
        "...",
        "%YAML 1.1",
    ]
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    lines=st.lists(st.one_of(_FRAGMENTS, st.text(max_size=30)), max_size=25),
    daemon=st.sampled_from([None, "exporter", "remediator"]),
)
def test_any_config_text_is_a_config_or_a_config_error(
    tmp_path: Path, lines: list[str], daemon: str | None
) -> None:
    path = tmp_path / "fuzz.yml"
    try:
        path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    except UnicodeEncodeError:
        return
    try:
        if daemon is None:
            loader.load_shared(path)
        elif daemon == "exporter":
            exporter_settings.load_config(path)
        else:
            remediator_settings.load_config(path)
    except ConfigError as exc:
        assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)


@pytest.mark.e2e
def test_check_config_of_random_bytes_exits_2_with_a_message(tmp_path: Path) -> None:
    for seed, blob in enumerate([os.urandom(64), b"\x00\xff" * 10, b"a: \x85\n"]):
        path = write(tmp_path, blob, f"junk{seed}.yml")
        for daemon in ("exporter", "remediator"):
            result = cli(daemon, path)
            assert result.returncode == 2, result.stderr
            assert result.stderr.strip() and "Traceback" not in result.stderr


def test_yaml_safe_load_would_have_kept_the_last_duplicate() -> None:
    """Why the layer exists: the stock loader takes the second url silently."""
    assert yaml.safe_load("url: a\nurl: b\n") == {"url": "b"}
