"""brainycp-mail-doctor: the real doctor process against real simulator processes.

Two simulators serve the panels: one over HTTP (an Exim panel and a Postfix panel whose
clock runs on Moscow time; a root login and a login without API rights), one over HTTPS
with the committed certificate in tests/fixtures/tls that reads only ``login``/``pass``.
Each doctor run is a subprocess, as an operator runs it; the panels' password is
distinctive so that any leak into the output is caught.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import FIXTURES, PYTHON, secret_file, serving, sim_args, wait_until

# Every test here starts a process (the in-process tier, make test-fast, skips them).
pytestmark = pytest.mark.e2e

PASSWORD = "pw-Doctor-Secret-7"
TLS = FIXTURES / "tls"


def _pin() -> str:
    der = ssl.PEM_cert_to_DER_cert((TLS / "cert.pem").read_text())
    return "sha256:" + ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


@dataclass
class Sims:
    http: str
    https: str
    password_file: Path
    tmp: Path


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sims]:
    tmp = tmp_path_factory.mktemp("doctor")
    password_file = secret_file(tmp / "panel.pass", PASSWORD + "\n")
    users = f"admin:{PASSWORD}:root,bob:{PASSWORD}:user"
    http_args = sim_args(
        0, "--users", users, "--panel", "web01", "--panel", "pf:quiet:postfix",
        "--timezone", "Europe/Moscow",
    )  # fmt: skip
    https_args = sim_args(
        0, "--users", users, "--login-style", "login",
        "--tls-cert", str(TLS / "cert.pem"), "--tls-key", str(TLS / "key.pem"),
    )  # fmt: skip
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(serving(http_args, log=tmp / "http.log")).url
        # The HTTPS simulator is ready when its port accepts; the doctor itself checks TLS.
        https = stack.enter_context(
            serving(https_args, log=tmp / "https.log", scheme="https", ready_path=None)
        ).url
        sims = Sims(http, https, password_file, tmp)
        _wait_https(sims.https)
        yield sims


def _wait_https(url: str) -> None:
    trusted = ssl.create_default_context(cafile=str(TLS / "cert.pem"))
    wait_until(
        lambda: httpx.get(f"{url}/healthz", verify=trusted).status_code == 200,
        what=f"{url} to serve HTTPS",
    )


def doctor(sims: Sims, panels: dict[str, Any], *args: str, **defaults: Any) -> tuple[int, str]:
    """Run the doctor on a config holding ``panels``; (exit code, stdout + stderr)."""
    config = {
        "defaults": {
            "username": "admin",
            "password_file": str(sims.password_file),
            "timeout": "5s",
            **defaults,
        },
        "panels": panels,
    }
    path = sims.tmp / f"config-{len(list(sims.tmp.iterdir()))}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = subprocess.run(
        [PYTHON, "-m", "brainycp.tools.doctor", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = proc.stdout + proc.stderr
    assert PASSWORD not in output, "the doctor printed the panel password"
    return proc.returncode, proc.stdout


def checks_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def json_doctor(sims: Sims, panels: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    code, out = doctor(sims, panels, "--json", **defaults)
    reports = {r["panel"]: r for r in json.loads(out)}
    assert code == (0 if all(r["ok"] for r in reports.values()) else 1)
    return reports


# ---------------------------------------------------------------- one run, every kind of panel


@pytest.fixture(scope="module")
def fleet(sims: Sims) -> dict[str, Any]:
    panels = {
        "web01": {"url": f"{sims.http}/panel/web01/api/api.php"},
        "pf-moscow": {"url": f"{sims.http}/panel/pf/api/api.php", "timezone": "Europe/Moscow"},
        "pf-utc": {"url": f"{sims.http}/panel/pf/api/api.php"},
        "wrong-password": {"url": sims.http, "password": "not-the-password"},
        "no-rights": {"url": sims.http, "username": "bob"},
        # Nothing listens on port 9 (discard): the connection is refused.
        "refused": {"url": "http://127.0.0.1:9"},
        "no-dns": {"url": "http://panel.invalid:8002"},
        "tls-unpinned": {"url": sims.https},
        "tls-pinned": {"url": sims.https, "tls_fingerprint": _pin().lower()},
        "tls-wrong-pin": {"url": sims.https, "tls_fingerprint": "ab" * 32},
        "tls-pinned-username": {
            "url": sims.https,
            "tls_fingerprint": _pin(),
            "credentials_style": "username",
        },
    }
    return json_doctor(sims, panels)


def test_a_healthy_panel_passes_every_step_with_what_was_found(fleet: dict[str, Any]) -> None:
    report = fleet["web01"]
    assert report["ok"] is True and report["skipped"] == []
    checks = checks_of(report)
    assert list(checks) == [
        "connect", "login", "permission", "count_msg", "list_msg", "clamav", "spamassassin",
        "clock",
    ]  # fmt: skip
    assert all(c["ok"] and c["fix"] == "" for c in checks.values())
    assert "TCP connect to 127.0.0.1 in" in checks["connect"]["detail"]
    assert "accepts username/password and login/pass" in checks["login"]["detail"]
    listing = checks["list_msg"]["detail"]
    assert "MTA exim" in listing and "0 unparsed lines" in listing and "parsed in" in listing
    assert checks["clamav"]["detail"].startswith("running: 'Active: active (running)")
    assert "Exim prints ages" in checks["clock"]["detail"]


def test_the_clock_hint_exposes_a_postfix_panel_read_in_the_wrong_zone(
    fleet: dict[str, Any],
) -> None:
    right = checks_of(fleet["pf-moscow"])
    assert fleet["pf-moscow"]["ok"] and "MTA postfix" in right["list_msg"]["detail"]
    assert right["clock"]["ok"] and "read in timezone Europe/Moscow" in right["clock"]["detail"]
    wrong = checks_of(fleet["pf-utc"])["clock"]
    assert wrong["ok"] is False and "in the future" in wrong["detail"]
    assert "3h ahead of UTC" in wrong["fix"] and "panels.pf-utc.timezone" in wrong["fix"]


def test_a_wrong_password_fails_the_login_step_and_stops(fleet: dict[str, Any]) -> None:
    report = fleet["wrong-password"]
    login = checks_of(report)["login"]
    assert login["ok"] is False and "rejected the login" in login["detail"]
    assert "panels.wrong-password.username" in login["fix"]
    assert report["skipped"] == ["permission", "reads", "clock"]


def test_a_login_without_api_rights_is_told_which_group_right_to_grant(
    fleet: dict[str, Any],
) -> None:
    report = fleet["no-rights"]
    checks = checks_of(report)
    assert checks["login"]["ok"] is True
    assert checks["permission"]["ok"] is False and "400" in checks["permission"]["detail"]
    assert '"Full API access (administrator)"' in checks["permission"]["fix"]
    assert "mailserver_queue" in checks["permission"]["fix"]
    assert report["skipped"] == ["reads", "clock"]


def test_a_refused_port_fails_connect_and_says_so(fleet: dict[str, Any]) -> None:
    report = fleet["refused"]
    connect = checks_of(report)["connect"]
    assert connect["ok"] is False and connect["detail"].endswith("connection refused")
    assert "nothing listens on port" in connect["fix"]
    assert report["skipped"] == ["login", "permission", "reads", "clock"]


def test_a_name_that_does_not_resolve_fails_connect_with_the_resolvers_words(
    fleet: dict[str, Any],
) -> None:
    connect = checks_of(fleet["no-dns"])["connect"]
    assert connect["ok"] is False
    assert connect["detail"].startswith(("name does not resolve", "name resolution failed"))
    assert "panel.invalid" in connect["detail"]


def test_an_unpinned_self_signed_panel_fails_tls_with_the_line_to_paste(
    fleet: dict[str, Any],
) -> None:
    report = fleet["tls-unpinned"]
    tls = checks_of(report)["tls"]
    assert tls["ok"] is False
    assert "verifies: no: certificate verify failed: self-signed certificate" in tls["detail"]
    assert "subject CN=brainycp-mail test panel" in tls["detail"]
    assert "expires 2126-11-01" in tls["detail"] and "TLSv1." in tls["detail"]
    line = f'tls_fingerprint: "{_pin()}"'
    assert f"to pin it: {line}" in tls["detail"] and _pin() in tls["fix"]
    assert report["skipped"] == ["login", "permission", "reads", "clock"]


def test_the_pasted_pin_is_accepted_and_a_login_only_panel_is_recognised(
    fleet: dict[str, Any],
) -> None:
    report = fleet["tls-pinned"]
    assert report["ok"] is True, report
    checks = checks_of(report)
    assert "pinned: matches tls_fingerprint" in checks["tls"]["detail"]
    # That simulator reads only login/pass: both pairs sent work, and the probe says which.
    assert checks["login"]["detail"].endswith("the panel accepts login/pass")


def test_a_wrong_pin_fails_tls_showing_both_fingerprints(fleet: dict[str, Any]) -> None:
    tls = checks_of(fleet["tls-wrong-pin"])["tls"]
    assert tls["ok"] is False
    assert "MISMATCH, tls_fingerprint is sha256:AB:AB:" in tls["detail"]
    assert _pin() in tls["fix"]


def test_a_credential_style_the_panel_does_not_read_is_named_with_the_fix(
    fleet: dict[str, Any],
) -> None:
    login = checks_of(fleet["tls-pinned-username"])["login"]
    assert login["ok"] is False
    assert login["detail"] == "rejected with username/password; accepted with login/pass"
    assert login["fix"].startswith("set panels.tls-pinned-username.credentials_style: login")


# ---------------------------------------------------------------- human output and exit codes


def test_human_output_is_a_table_with_a_fix_under_each_failed_step(sims: Sims) -> None:
    code, out = doctor(
        sims,
        {
            "web01": {"url": f"{sims.http}/panel/web01/api/api.php"},
            "tls": {"url": sims.https},
            "no-rights": {"url": sims.http, "username": "bob"},
        },
    )
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("web01  http://") and lines[0].endswith("OK")
    assert any(line.startswith("tls  https://") and line.endswith("FAILED") for line in lines)
    failed = [i for i, line in enumerate(lines) if line.startswith("  FAIL")]
    assert len(failed) == 2
    for i in failed:
        following = lines[i + 1 :]
        fix = next(line for line in following if not line.startswith("  " + " " * 20))
        assert fix.startswith("        fix: ")
    assert "  skip  login " in out


def test_only_passing_panels_exit_0(sims: Sims) -> None:
    code, out = doctor(sims, {"web01": {"url": f"{sims.http}/panel/web01/api/api.php"}})
    assert code == 0 and "FAIL" not in out


def test_named_panels_only_are_checked(sims: Sims) -> None:
    code, out = doctor(
        sims,
        {"web01": {"url": sims.http}, "broken": {"url": "http://127.0.0.1:1"}},
        "web01",
        "--json",
    )
    assert code == 0 and [r["panel"] for r in json.loads(out)] == ["web01"]


def test_a_broken_panel_fails_with_its_reasons_and_the_others_are_still_checked(
    sims: Sims,
) -> None:
    panels = {
        "web01": {"url": f"{sims.http}/panel/web01/api/api.php"},
        "bad-url": {"url": "ftp://x"},
        "bad-pin": {"url": sims.http, "tls_fingerprint": "abc"},
        "no-file": {"url": sims.http, "password_file": str(sims.tmp / "missing.pass")},
        "pf": {"url": f"{sims.http}/panel/pf/api/api.php", "timezone": "Europe/Moscow"},
    }
    code, out = doctor(sims, panels, "--json")
    assert code == 1
    reports = json.loads(out)
    assert [r["panel"] for r in reports] == list(panels)
    by_name = {r["panel"]: r for r in reports}
    for good in ("web01", "pf"):
        assert by_name[good]["ok"], by_name[good]
        assert checks_of(by_name[good])["login"]["ok"] is True
    reasons = {
        "bad-url": "panels.bad-url.url: must start with http:// or https://",
        "bad-pin": "panels.bad-pin.tls_fingerprint:",
        "no-file": "panels.no-file.password_file: cannot read the password: No such file",
    }
    for name, reason in reasons.items():
        report = by_name[name]
        assert report["ok"] is False and report["url"] == ""
        (check,) = report["checks"]
        assert check["name"] == "config" and check["ok"] is False
        assert check["detail"].startswith(reason), check["detail"]
        assert f"fix panels.{name} in " in check["fix"] and "--check-config" in check["fix"]
    # The table says the same, and a broken panel can be named on the command line.
    code, out = doctor(sims, panels, "bad-url", "web01")
    assert code == 1
    assert out.startswith("bad-url  (no valid url)  FAILED\n  FAIL  config ")
    assert "web01  http://" in out


def test_a_config_broken_as_a_whole_or_an_unknown_panel_exits_2(sims: Sims) -> None:
    code, _ = doctor(sims, {"web01": {"url": sims.http}}, "nope")
    assert code == 2
    code, _ = doctor(sims, {"web01": {"url": sims.http}}, timeout="soon")  # broken defaults
    assert code == 2
    code, _ = doctor(sims, {"web01": {"url": sims.http}, "bad": {"url": "ftp://x"}}, color=1)
    assert code == 2  # an unknown key under defaults breaks every panel
    for text in ("panels: [", "panels:\n  web01: {url: a}\n  web01: {url: b}\n"):
        path = sims.tmp / "broken.yml"
        path.write_text(text)
        proc = subprocess.run(
            [PYTHON, "-m", "brainycp.tools.doctor", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert "broken.yml" in proc.stderr or "appears twice" in proc.stderr
    proc = subprocess.run(
        [PYTHON, "-m", "brainycp.tools.doctor", "--config", str(sims.tmp / "no-such.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "cannot read the config file" in proc.stderr


def test_a_broken_daemon_section_does_not_stop_the_doctor(sims: Sims) -> None:
    """The doctor reads only the shared sections: a daemon's own section is that
    daemon's to check (its --check-config), not a reason to leave the panels unchecked."""
    config = {
        "defaults": {"username": "admin", "password_file": str(sims.password_file)},
        "panels": {"web01": {"url": f"{sims.http}/panel/web01/api/api.php"}},
        "exporter": {"interval": "soon"},
        "remediator": {"rules": [{"name": "r", "action": "nope"}]},
    }
    path = sims.tmp / "daemon-sections.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = subprocess.run(
        [PYTHON, "-m", "brainycp.tools.doctor", "--config", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    (report,) = json.loads(proc.stdout)
    assert report["panel"] == "web01" and report["ok"] is True


def test_the_doctor_sends_only_read_operations(sims: Sims) -> None:
    before = httpx.get(f"{sims.http}/panel/web01/_sim/state").json()
    code, _ = doctor(sims, {"web01": {"url": f"{sims.http}/panel/web01/api/api.php"}})
    assert code == 0
    after = httpx.get(f"{sims.http}/panel/web01/_sim/state").json()
    new_calls = after["calls"][len(before["calls"]) :]
    assert new_calls
    for call in new_calls:
        assert call["operation"] in ("count_msg", "list_msg", "clamav", "spamassassin")
        if call["operation"] in ("clamav", "spamassassin"):
            assert call["params"]["command"] == "status"
