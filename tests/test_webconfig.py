"""``--web.config.file`` (exporter-toolkit format) with real clients: TLS, minimum version,
client certificates, basic auth with bcrypt, what each daemon leaves open, and gzip."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from brainycp.config.errors import ConfigError
from brainycp.daemon.basicauth import BasicAuth, Checked, bcrypt_cost
from brainycp.daemon.listener import subject_name
from brainycp.daemon.webconfig import WebConfigHolder, apply_tls, parse_web_config
from tests.harness import prometheus_args, serving, serving_on_free_port
from tests.remediator_support import TOKEN, remediator_cmd, write_config
from tests.support import PYTHON, exporter_cmd, require_binary, sim_args, wait_until
from tests.tls_support import TLS, client_context, make_ca, make_client_ca

USER, PASSWORD = "prometheus", "scrape-secret"
CERT = {"cert_file": str(TLS / "cert.pem"), "key_file": str(TLS / "key.pem")}
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


def errors_of(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_web_config(data, "web.yml")
    return info.value.errors


# --------------------------------------------------------------------------- the file


def test_a_valid_file_gives_tls_and_users() -> None:
    web = parse_web_config(
        {
            "tls_server_config": {
                "cert_file": str(TLS / "cert.pem"),
                "key_file": str(TLS / "key.pem"),
                "min_version": "TLS13",
            },
            "basic_auth_users": {USER: HASH},
        }
    )
    assert web.tls is not None and web.tls.min_version == ssl.TLSVersion.TLSv1_3
    assert web.tls.client_auth == ssl.CERT_NONE
    assert web.users == {USER: HASH.encode()}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"tls_config": {}}, "web.yml: tls_config: unknown or unsupported key"),
        ({"tls_server_config": {"cert_file": str(TLS / "cert.pem")}},
         "web.yml: tls_server_config.key_file: is required"),
        ({"tls_server_config": {"cert_file": "/nonexistent.pem", "key_file": str(TLS / "key.pem")}},
         "web.yml: tls_server_config.cert_file: /nonexistent.pem is not a readable file"),
        ({"tls_server_config": {**CERT, "client_auth_type": "RequireAnyClientCert"}},
         "web.yml: tls_server_config.client_auth_type: RequireAnyClientCert (a certificate"),
        ({"tls_server_config": {**CERT, "client_auth_type": "VerifyClientCertIfGiven"}},
         "web.yml: tls_server_config.client_ca_file: client_auth_type VerifyClientCertIfGiven"),
        ({"tls_server_config": {**CERT, "client_auth_type": "Sometimes"}},
         "web.yml: tls_server_config.client_auth_type: 'Sometimes' is not one of"),
        ({"tls_server_config": {**CERT, "min_version": "TLS11"}},
         "web.yml: tls_server_config.min_version: 'TLS11' must be TLS12 or TLS13"),
        ({"tls_server_config": {**CERT, "cert_file": str(TLS / "key.pem")}},
         "web.yml: tls_server_config: cannot load the certificate"),
        ({"basic_auth_users": {USER: "plain-password"}},
         f"web.yml: basic_auth_users.{USER}: must be a bcrypt hash"),
        ({"basic_auth_users": {USER: "$2b$10$tooshort"}},
         f"web.yml: basic_auth_users.{USER}: is not a valid bcrypt hash"),
        ({"basic_auth_users": ["a"]}, "web.yml: basic_auth_users: must be a mapping"),
        ([1], "web.yml: must be a mapping"),
    ],
)  # fmt: skip
def test_a_bad_web_config_names_the_key(data: Any, expected: str) -> None:
    errors = errors_of(data)
    assert any(e.startswith(expected) for e in errors), errors


@pytest.mark.e2e
@pytest.mark.parametrize("daemon", ["exporter", "remediator"])
def test_a_bad_web_config_exits_2_naming_the_key(tmp_path: Path, daemon: str) -> None:
    config = write_config(tmp_path / "config.yml", 1, 9, tmp_path / "s.db", [])  # never bound
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: hunter2\n")
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            f"{daemon}.cli",
            "--config",
            str(config),
            "--web.config.file",
            str(web),
            "--check-config",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"{web}: basic_auth_users.prometheus: must be a bcrypt hash")


@pytest.fixture
def bcrypt_checks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """The (password, hash) of every ``bcrypt.checkpw`` call from now on."""
    checks: list[tuple[bytes, bytes]] = []
    real = bcrypt.checkpw

    def recording(password: bytes, hashed: bytes) -> bool:
        checks.append((password, hashed))
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", recording)
    return checks


def test_a_good_password_is_checked_by_bcrypt_once(
    bcrypt_checks: list[tuple[bytes, bytes]],
) -> None:
    auth = BasicAuth({USER: HASH.encode()})
    good = httpx.BasicAuth(USER, PASSWORD)._auth_header
    bad = httpx.BasicAuth(USER, "wrong")._auth_header
    stranger = httpx.BasicAuth("mallory", PASSWORD)._auth_header

    async def scenario() -> list[bool]:
        return [
            await auth.check(good),
            await auth.check(good),
            await auth.check(bad),
            await auth.check(bad),
            await auth.check(stranger),
            await auth.check(None),
            await auth.check("Bearer x"),
        ]

    assert asyncio.run(scenario()) == [True, True, False, False, False, False, False]
    # One check for the good pair (then remembered); every failure is checked again,
    # and an unknown user costs a check too, so timing does not tell users apart.
    calls = [password for password, _ in bcrypt_checks]
    assert calls == [PASSWORD.encode(), b"wrong", b"wrong", PASSWORD.encode()]
    auth.replace({USER: bcrypt.hashpw(b"new", bcrypt.gensalt(4))})
    assert asyncio.run(auth.check(good)) is False


def test_an_unknown_user_costs_a_check_at_the_users_cost(
    bcrypt_checks: list[tuple[bytes, bytes]],
) -> None:
    """Timing must not tell users apart: an unknown user's password is checked against a
    stand-in hash with the configured users' cost (rebuilt at reload), not a cheaper one."""
    auth = BasicAuth({USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(6))})
    stranger = httpx.BasicAuth("mallory", PASSWORD)._auth_header
    wrong = httpx.BasicAuth(USER, "wrong")._auth_header
    assert asyncio.run(auth.check(stranger)) is False
    assert asyncio.run(auth.check(wrong)) is False
    assert [bcrypt_cost(h) for _, h in bcrypt_checks] == [6, 6]
    assert bcrypt_checks[0][1] != auth.users[USER]
    # A reload to users of another cost brings a stand-in of that cost.
    auth.replace({"bob": bcrypt.hashpw(b"pw", bcrypt.gensalt(5))})
    bcrypt_checks.clear()
    assert asyncio.run(auth.check(stranger)) is False
    assert [bcrypt_cost(h) for _, h in bcrypt_checks] == [5]


def test_a_check_says_who_and_why_without_the_password() -> None:
    auth = BasicAuth({USER: HASH.encode()})

    def verify(header: str | None) -> Checked:
        return asyncio.run(auth.verify(header))

    assert verify(httpx.BasicAuth(USER, PASSWORD)._auth_header) == Checked(USER, True)
    assert verify(httpx.BasicAuth(USER, "nope")._auth_header) == Checked(
        USER, False, "wrong password"
    )
    assert verify(httpx.BasicAuth("eve", "x")._auth_header) == Checked("eve", False, "unknown user")
    assert verify("Bearer abc") == Checked(None, False, "no basic credentials")
    long = httpx.BasicAuth(USER, "x" * 73)._auth_header
    assert verify(long) == Checked(USER, False, "password over 72 bytes")


def test_a_reload_the_listener_cannot_take_changes_nothing(tmp_path: Path) -> None:
    """TLS on or off, or a client CA the listener would have to forget: the holder keeps
    its web config, users and certificates, and says why."""
    (ca1, _), (ca2, _) = make_ca(tmp_path, "ca1"), make_ca(tmp_path, "ca2")
    tls = {**CERT, "client_ca_file": str(ca1), "client_auth_type": "RequireAndVerifyClientCert"}
    running = parse_web_config({"tls_server_config": tls, "basic_auth_users": {USER: HASH}})
    holder = WebConfigHolder(running, logging.getLogger("test"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    apply_tls(context, running)
    holder.ssl_context = context
    other_ca = parse_web_config({"tls_server_config": {**tls, "client_ca_file": str(ca2)}})
    plain = parse_web_config({"basic_auth_users": {"bob": HASH}})
    for web, problem in [
        (other_ca, "tls_server_config.client_ca_file: the listener trusts 1 client CA"),
        (plain, "tls_server_config: the listener serves TLS; turning it off needs a restart"),
        (None, "tls_server_config: the listener serves TLS; turning it off needs a restart"),
    ]:
        (said,) = holder.use_web(web)
        assert said.startswith(problem), said
        assert holder.web is running and set(holder.auth.users) == {USER}
        assert len(context.get_ca_certs()) == 1
    # Both CAs, or no client certificates at all, the listener can take.
    both = tmp_path / "both.pem"
    both.write_text(ca1.read_text() + ca2.read_text())
    widened = parse_web_config({"tls_server_config": {**tls, "client_ca_file": str(both)}})
    assert holder.use_web(widened) == [] and holder.web is widened and not holder.auth.users
    assert len(context.get_ca_certs()) == 2 and context.verify_mode == ssl.CERT_REQUIRED
    assert holder.use_web(parse_web_config({"tls_server_config": CERT})) == []
    assert context.verify_mode == ssl.CERT_NONE
    # On a plain listener, TLS cannot be turned on.
    plain_holder = WebConfigHolder(plain, logging.getLogger("test"))
    (said,) = plain_holder.use_web(running)
    assert said.startswith("tls_server_config: the listener serves plain HTTP; turning TLS on")
    assert plain_holder.web is plain and set(plain_holder.auth.users) == {"bob"}


def test_a_certificate_subject_is_one_escaped_rfc4514_name() -> None:
    subject = ((("countryName", "DE"),), (("organizationName", "Ex, \"Am\"+ple"),),
               (("commonName", " prometheus "),))  # fmt: skip
    assert subject_name(subject) == 'CN=\\ prometheus\\ ,O=Ex\\, \\"Am\\"\\+ple,C=DE'


# --------------------------------------------------------------------------- real daemons


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("webconfig-sim") / "sim.log"
    with serving(sim_args(0, "--users", "admin:pw:root", "--panels", "1"), log=log) as simulator:
        yield simulator.url


def exporter(tmp: Path, sim: str, web: dict[str, Any] | None) -> list[str]:
    """The command line of an exporter of the simulator's panel, on a port the kernel picks
    (:func:`tests.harness.serving` reads it back), with ``web`` as its web config."""
    secret = tmp / "pw"
    secret.write_text("pw\n")
    secret.chmod(0o600)
    panel = {"url": f"{sim}/panel/panel0001/api/api.php", "username": "admin"}
    config = {"panels": {"web01": {**panel, "password_file": str(secret)}}}
    (tmp / "config.yml").write_text(yaml.safe_dump(config))
    args = exporter_cmd(tmp / "config.yml")
    if web is not None:
        (tmp / "web.yml").write_text(yaml.safe_dump(web))
        args += ["--web.config.file", str(tmp / "web.yml")]
    return args


@pytest.mark.e2e
def test_exporter_serves_tls_with_basic_auth_on_every_endpoint(sim: str, tmp_path: Path) -> None:
    web = {
        "tls_server_config": {"cert_file": str(TLS / "cert.pem"), "key_file": str(TLS / "key.pem")},
        "basic_auth_users": {USER: HASH},
    }
    args = exporter(tmp_path, sim, web)
    with (
        serving(args, log=tmp_path / "exporter.log", ready_path=None, scheme="https") as served,
        httpx.Client(verify=client_context(), timeout=10) as client,
    ):
        base = served.url
        wait_until(lambda: client.get(f"{base}/healthz").status_code == 401, what="TLS up")
        for path in ("/metrics", "/", "/healthz"):
            refused = client.get(f"{base}{path}")
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith('Basic realm="brainycp-mail')
            assert client.get(f"{base}{path}", auth=(USER, "nope")).status_code == 401
            assert client.get(f"{base}{path}", auth=(USER, PASSWORD)).status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{served.port}/healthz", timeout=5)  # plain HTTP: no answer
        # An authenticated client may reload over HTTP.
        reloaded = client.post(f"{base}/-/reload", auth=(USER, PASSWORD))
        assert reloaded.status_code == 200 and reloaded.json() == {"status": "success"}


@pytest.mark.e2e
def test_exporter_min_version_tls13_refuses_a_tls12_client(sim: str, tmp_path: Path) -> None:
    web = {
        "tls_server_config": {
            "cert_file": str(TLS / "cert.pem"),
            "key_file": str(TLS / "key.pem"),
            "min_version": "TLS13",
        }
    }
    args = exporter(tmp_path, sim, web)
    with serving(args, log=tmp_path / "exporter.log", ready_path=None, scheme="https") as served:
        url = f"{served.url}/healthz"
        wait_until(
            lambda: httpx.get(url, verify=client_context(), timeout=5).status_code == 200,
            what="TLS 1.3 up",
        )
        old = client_context(max_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, verify=old, timeout=5)


@pytest.mark.e2e
def test_exporter_requires_and_verifies_client_certificates(sim: str, tmp_path: Path) -> None:
    ca, cert, key = make_client_ca(tmp_path)
    web = {
        "tls_server_config": {
            "cert_file": str(TLS / "cert.pem"),
            "key_file": str(TLS / "key.pem"),
            "client_ca_file": str(ca),
            "client_auth_type": "RequireAndVerifyClientCert",
        }
    }
    args = exporter(tmp_path, sim, web)
    with_cert = client_context(cert, key)
    with serving(args, log=tmp_path / "exporter.log", ready_path=None, scheme="https") as served:
        base = served.url
        wait_until(
            lambda: httpx.get(f"{base}/healthz", verify=with_cert, timeout=5).status_code == 200,
            what="mTLS up",
        )
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{base}/metrics", verify=client_context(), timeout=5).raise_for_status()
        # A self-signed client certificate that the CA did not sign is refused too.
        with pytest.raises(httpx.HTTPError):
            own = client_context(TLS / "cert.pem", TLS / "key.pem")
            httpx.get(f"{base}/metrics", verify=own, timeout=5).raise_for_status()
        assert httpx.get(f"{base}/metrics", verify=with_cert, timeout=5).status_code == 200
        # A verified client certificate is authentication enough to reload.
        assert httpx.post(f"{base}/-/reload", verify=with_cert, timeout=10).status_code == 200


@pytest.mark.e2e
def test_remediator_web_config_guards_all_but_the_webhook(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yml", 9, None, tmp_path / "s.db", [])
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {USER: HASH}}))
    args = remediator_cmd(config, "--web.config.file", str(web))
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with serving(args, log=tmp_path / "remediator.log", ready_path=None) as served:
        url = served.url
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=5).status_code == 401, what="up")
        for path in ("/actions", "/", "/metrics", "/healthz", "/control"):
            assert httpx.get(f"{url}{path}", timeout=5).status_code == 401, path
            # The webhook's token is not a web-config user.
            assert httpx.get(f"{url}{path}", headers=bearer, timeout=5).status_code == 401
            ok = httpx.get(f"{url}{path}", auth=(USER, PASSWORD), timeout=5)
            assert ok.status_code == 200, path
        # /webhook keeps its own auth: the bearer token, not the web users.
        body = {"version": "4", "status": "firing", "receiver": "r", "alerts": []}
        hook = f"{url}/webhook"
        assert httpx.post(hook, json=body, auth=(USER, PASSWORD), timeout=5).status_code == 401
        assert httpx.post(hook, json=body, headers=bearer, timeout=5).status_code != 401
        assert httpx.post(f"{url}/-/reload", headers=bearer, timeout=10).status_code == 401
        # The people endpoints take the web users too (the gate marks the request).
        paused = httpx.post(f"{url}/pause", auth=(USER, PASSWORD), json={}, timeout=10)
        assert paused.status_code == 200, paused.text
        assert httpx.post(f"{url}/resume", headers=bearer, timeout=10).status_code == 401
        ok = httpx.post(f"{url}/-/reload", auth=(USER, PASSWORD), timeout=10)
        assert ok.status_code == 200, ok.text


# --------------------------------------------------------------------------- gzip


class RecordingProxy:
    """A TCP relay on loopback that keeps the response heads passing through it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0  # the kernel's choice, read back once the server is bound
        self.heads: list[bytes] = []
        self.requests: list[bytes] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: list[bytes]
    ) -> None:
        first = True
        try:
            while data := await reader.read(65536):
                if first:
                    record.append(data.split(b"\r\n\r\n", 1)[0])
                    first = False
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(
            self._pipe(reader, up_writer, self.requests),
            self._pipe(up_reader, writer, self.heads),
        )

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.mark.e2e
def test_metrics_are_gzipped_for_a_real_prometheus_scrape(sim: str, tmp_path: Path) -> None:
    prometheus = require_binary("prometheus", "apt-get install prometheus")
    args = exporter(tmp_path, sim, {"basic_auth_users": {USER: HASH}})
    with (
        serving(args, log=tmp_path / "exporter.log", ready_path=None) as served,
        RecordingProxy(served.port) as proxy,
    ):
        port = served.port
        health = f"http://127.0.0.1:{port}/healthz"
        wait_until(lambda: httpx.get(health, auth=(USER, PASSWORD)).status_code == 200, what="up")
        metrics = f"http://127.0.0.1:{port}/metrics"
        identity = {"Accept-Encoding": "identity"}
        plain = httpx.get(metrics, auth=(USER, PASSWORD), headers=identity, timeout=10)
        assert "content-encoding" not in plain.headers
        raw = httpx.get(
            f"http://127.0.0.1:{port}/metrics",
            auth=(USER, PASSWORD),
            headers={"Accept-Encoding": "gzip"},
            timeout=10,
        )
        assert raw.headers["content-encoding"] == "gzip"
        assert "brainycp_exporter_build_info" in raw.text  # decoded by httpx
        scrape = {
            "job_name": "brainycp-mail-exporter",
            "scrape_interval": "1s",
            "static_configs": [{"targets": [f"127.0.0.1:{proxy.port}"]}],
            "basic_auth": {"username": USER, "password": PASSWORD},
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({"scrape_configs": [scrape]}))

        prom_args = prometheus_args(prometheus, tmp_path / "prometheus.yml", tmp_path / "data")
        with serving_on_free_port(
            prom_args, log=tmp_path / "prometheus.log", ready_path="/-/ready", timeout=60
        ) as prom:

            def scraped() -> bool:
                answer = httpx.get(
                    f"{prom.url}/api/v1/query",
                    params={"query": 'brainycp_up{panel="web01"}'},
                    timeout=5,
                )
                return bool(answer.json()["data"]["result"])

            wait_until(scraped, timeout=60, what="Prometheus to store a scraped series")
        prom_requests = [r for r in proxy.requests if b"Prometheus/" in r]
        assert prom_requests and all(b"gzip" in r.lower() for r in prom_requests)
        metrics_heads = [h for h in proxy.heads if h.startswith(b"HTTP/1.1 200")]
        assert metrics_heads
        assert all(b"content-encoding: gzip" in h.lower() for h in metrics_heads)


@pytest.mark.e2e
def test_remediator_serves_tls_and_starts_without_a_restart_warning(tmp_path: Path) -> None:
    """TLS from the start is the config in force, not a reload that turned TLS on."""
    config = write_config(tmp_path / "config.yml", 9, None, tmp_path / "s.db", [])
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"tls_server_config": CERT, "basic_auth_users": {USER: HASH}}))
    args = remediator_cmd(config, "--web.config.file", str(web))
    log = tmp_path / "remediator.log"
    with (
        serving(args, log=log, ready_path=None, scheme="https") as served,
        httpx.Client(verify=client_context(), timeout=10) as client,
    ):
        base = served.url
        wait_until(lambda: client.get(f"{base}/healthz").status_code == 401, what="TLS up")
        assert client.get(f"{base}/actions", auth=(USER, PASSWORD)).status_code == 200
        reloaded = client.post(f"{base}/-/reload", auth=(USER, PASSWORD))
        assert reloaded.status_code == 200, reloaded.text
    assert "takes effect at the next restart" not in log.read_text()


# --------------------------------------------------------------------------- refused credentials


def auth_failures(text: str, daemon: str) -> float:
    name = f"brainycp_{daemon}_http_auth_failures_total"
    (value,) = [float(line.split()[1]) for line in text.splitlines() if line.startswith(name)]
    return value


@pytest.mark.e2e
@pytest.mark.parametrize("daemon", ["exporter", "remediator"])
def test_refused_credentials_are_counted_and_logged_once_per_interval(
    daemon: str, sim: str, tmp_path: Path
) -> None:
    """Wrong passwords and unknown users count from 0; a burst is one log line per 10 s
    naming the user and the client address, never the password. A request without
    credentials (a challenge) is not a failed attempt."""
    web = {"basic_auth_users": {USER: HASH}}
    if daemon == "exporter":
        args = exporter(tmp_path, sim, web)
        guarded = "/metrics"
    else:
        # No panel is called: port 9 (nothing listens) stands for the simulator.
        config = write_config(tmp_path / "config.yml", 9, None, tmp_path / "s.db", [])
        (tmp_path / "web.yml").write_text(yaml.safe_dump(web))
        args = remediator_cmd(config, "--web.config.file", str(tmp_path / "web.yml"))
        guarded = "/actions"
    log = tmp_path / "daemon.log"
    with serving(args, log=log, ready_path=None) as served, httpx.Client(timeout=10) as client:
        base = served.url
        wait_until(lambda: client.get(f"{base}/healthz").status_code == 401, what="up")
        assert auth_failures(client.get(f"{base}/metrics", auth=(USER, PASSWORD)).text, daemon) == 0
        began = time.monotonic()
        for attempt in range(12):
            who = (USER, f"guess-{attempt}") if attempt % 3 else ("mallory", f"guess-{attempt}")
            assert client.get(f"{base}{guarded}", auth=who).status_code == 401
        assert (
            client.get(f"{base}{guarded}", headers={"Authorization": "Bearer x"}).status_code == 401
        )
        assert client.get(f"{base}{guarded}").status_code == 401  # no credentials: not counted
        elapsed = time.monotonic() - began
        text = client.get(f"{base}/metrics", auth=(USER, PASSWORD)).text
        assert auth_failures(text, daemon) == 13
    lines = [line for line in log.read_text().splitlines() if "refused credentials" in line]
    assert 1 <= len(lines) <= 1 + elapsed / 10, lines
    assert f"{daemon}.auth: refused credentials from 127.0.0.1:" in lines[0]
    assert f"for GET {guarded} (user 'mallory': unknown user)" in lines[0]
    assert "guess-" not in log.read_text()


@pytest.mark.e2e
def test_the_remediator_gate_counts_wrong_webhook_credentials_but_not_the_webhook(
    tmp_path: Path,
) -> None:
    """Without a web config the operator endpoints take the webhook's credentials: a wrong
    token there is a refused credential; on /webhook it is a refused notification."""
    config = write_config(tmp_path / "config.yml", 9, None, tmp_path / "s.db", [])
    wrong = {"Authorization": "Bearer not-the-token"}
    with (
        serving(remediator_cmd(config), log=tmp_path / "r.log") as served,
        httpx.Client(timeout=10) as client,
    ):
        base = served.url
        assert client.get(f"{base}/actions", headers=wrong).status_code == 401
        assert client.post(f"{base}/-/reload", headers=wrong).status_code == 401
        assert client.post(f"{base}/webhook", headers=wrong, json={}).status_code == 401
        text = client.get(f"{base}/metrics").text
    assert auth_failures(text, "remediator") == 2
    assert 'brainycp_remediator_notifications_total{result="unauthorized"} 1.0' in text
