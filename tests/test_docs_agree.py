"""What the operator docs promise, checked against what the code does: the simulator
serves HTTPS (docs/simulator.md), and a reload re-reads every secret file the config
names except the journal's, which waits for a restart and says so (docs/configuration.md,
docs/operations.md)."""

from __future__ import annotations

import os
import signal
import ssl
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from remediator.serve import Lifecycle
from remediator.settings.config import load_config
from tests.remediator_support import remediator
from tests.support import (
    FIXTURES,
    REPO,
    exporter_cmd,
    secret_file,
    serving,
    sim_args,
    wait_until,
)

DOCS = REPO / "docs"
TLS = FIXTURES / "tls"


def section(markdown: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same level."""
    start = markdown.index(heading)
    level = heading.split(" ")[0]
    end = markdown.find(f"\n{level} ", start + len(heading))
    return markdown[start : end if end > 0 else len(markdown)]


@pytest.mark.e2e
def test_the_simulator_serves_https_as_its_docs_say(tmp_path: Path) -> None:
    docs = (DOCS / "simulator.md").read_text()
    assert "`--tls-cert FILE`, `--tls-key FILE`" in docs
    assert "TLS" not in section(docs, "## What is not simulated")
    args = sim_args(0, "--tls-cert", str(TLS / "cert.pem"), "--tls-key", str(TLS / "key.pem"))
    trusted = ssl.create_default_context(cafile=str(TLS / "cert.pem"))
    with serving(args, log=tmp_path / "sim.log", scheme="https", ready_path=None) as simulator:
        assert simulator.url.startswith("https://")
        answer = wait_until(
            lambda: httpx.get(f"{simulator.url}/healthz", verify=trusted),
            what="the simulator to answer over HTTPS",
        )
        assert answer.status_code == 200


def up(port: int) -> float | None:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "brainycp_up" and sample.labels.get("panel") == "web01":
                return sample.value
    return None


@pytest.mark.e2e
def test_a_rewritten_panel_password_file_is_used_after_a_reload(tmp_path: Path) -> None:
    """The same path with new content: what an operator does when a password rotates."""
    sim = sim_args(0, "--users", "admin:new-password:root")
    with serving(sim, log=tmp_path / "sim.log") as simulator:
        sim_port = simulator.port
        secret = secret_file(tmp_path / "panel.pass", "old-password\n")
        config = tmp_path / "config.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "panels": {
                        "web01": {
                            "url": f"http://127.0.0.1:{sim_port}",
                            "username": "admin",
                            "password_file": str(secret),
                        }
                    },
                    "exporter": {"interval": "1s", "list_interval": "0"},
                }
            )
        )
        with serving(exporter_cmd(config), log=tmp_path / "exporter.log") as exporter:
            port, proc = exporter.port, exporter.proc
            wait_until(lambda: up(port) == 0, what="web01 refused with the old password")
            secret.write_text("new-password\n")
            os.kill(proc.pid, signal.SIGHUP)
            wait_until(lambda: up(port) == 1, what="web01 polled with the rewritten password")
    docs = (DOCS / "configuration.md").read_text()
    assert "re-read at every reload" in docs and "read once at start" not in docs


def test_notify_secret_files_are_read_again_by_each_load(tmp_path: Path) -> None:
    url_file, token_file = tmp_path / "hook.url", tmp_path / "hook.token"
    config = tmp_path / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "panels": {"web01": {"url": "http://127.0.0.1:9", "username": "a",
                                     "password_env": "HOME"}},
                "remediator": {"insecure_no_auth": True, "notify": [
                    {"name": "chat", "type": "webhook", "url_file": str(url_file),
                     "bearer_token_file": str(token_file)},
                ]},
            }
        )
    )  # fmt: skip
    for version in ("one", "two"):
        url_file.write_text(f"http://127.0.0.1:9/{version}\n")
        token_file.write_text(f"token-{version}\n")
        (target,) = load_config(config).remediator.notify
        assert target.url is not None and target.bearer_token is not None
        assert target.url.get_secret_value() == f"http://127.0.0.1:9/{version}"
        assert target.bearer_token.get_secret_value() == f"token-{version}"


def test_a_reload_takes_a_new_webhook_token_and_refuses_a_journal_change_until_a_restart(
    tmp_path: Path,
) -> None:
    rem = remediator(tmp_path)
    token, journal_pass = tmp_path / "webhook.token", tmp_path / "journal.pass"
    for path, text in ((token, "first-token\n"), (journal_pass, "pg-password\n")):
        path.write_text(text)
        path.chmod(0o600)
    data = {
        "panels": {"web01": {"url": "http://127.0.0.1:9", "username": "a", "password_env": "HOME"}},
        "remediator": {
            "auth": {"bearer_token_file": str(token)},
            "state_file": str(tmp_path / "s.sqlite"),
        },
    }
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(data))
    lifecycle = Lifecycle(rem, str(config), None)
    try:
        assert lifecycle.reload() == []
        assert rem.rconfig.auth is not None and rem.rconfig.auth.bearer_token is not None
        assert rem.rconfig.auth.bearer_token.get_secret_value() == "first-token"
        token.write_text("second-token\n")
        assert lifecycle.reload() == []
        assert rem.rconfig.auth.bearer_token.get_secret_value() == "second-token"
        # The journal is opened once: a new one (or a new password for it) cannot be taken
        # at reload, so the reload fails and nothing of that edit applies, not even the
        # token changed with it.
        data["remediator"]["journal"] = {  # type: ignore[index]
            "url": "postgresql://brainycp@127.0.0.1:5432/brainycp",
            "password_file": str(journal_pass),
        }
        config.write_text(yaml.safe_dump(data))
        token.write_text("third-token\n")
        assert load_config(config).remediator.journal is not None
        assert lifecycle.reload() == [
            "remediator.journal: read only at start; the change needs a restart"
        ]
        assert rem.rconfig.journal is None
        assert rem.rconfig.auth.bearer_token.get_secret_value() == "second-token"
    finally:
        rem.journal.close()
