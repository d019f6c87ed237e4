"""Every reloadable web-config setting changed while requests run, on both real daemons.

Each daemon runs once on plain HTTP and once on TLS. Between reloads (SIGHUP and
``POST /-/reload``) every route is asked with every kind of credential (none, the webhook's
bearer token, the webhook's basic pair, web-config users, client certificates from two CAs,
a TLS 1.2-only client), and each answer must be what the config in force allows. A model
(:class:`Model`) says what that is. Meanwhile a thread keeps asking, and each of its answers
must fit a config that was in force while it was asked. The reloads the running listener
cannot take (TLS on, TLS off, a dropped client CA) must fail whole: the answers, the app
config (the webhook token changed in the same edit) and the web config stay as they were.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from tests.remediator_support import notification, write_config
from tests.support import ANY_PORT, PYTHON, serving, sim_args, wait_until
from tests.tls_support import (
    SERVER_CERT,
    SERVER_KEY,
    client_context,
    make_ca,
    make_server_cert,
    make_signed,
)

pytestmark = pytest.mark.e2e

TOKENS = {"bearer1": "token-one-5d1f", "bearer2": "token-two-93ab"}
HOOK_USER, HOOK_PASSWORD = "alertmanager", "hook-pw-77"
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}
HASHES = {u: bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode() for u, p in PASSWORDS.items()}
CA_OF = {"client1": "ca1", "client2": "ca2"}


@dataclass(frozen=True)
class Cred:
    """What a client sends: an Authorization header (by name) and/or a client certificate."""

    name: str
    header: str | None = None
    cert: str | None = None
    tls12: bool = False


@dataclass(frozen=True)
class Model:
    """The config in force, as far as access goes."""

    tls: bool = False
    users: frozenset[str] = frozenset()
    webhook: str = "bearer1"
    verify: str = "none"  # none, optional, required
    cas: frozenset[str] = frozenset()
    tls13_only: bool = False
    server_cert: str = "server1"


def connects(m: Model, cred: Cred) -> bool:
    if not m.tls:
        return True
    if m.tls13_only and cred.tls12:
        return False
    if cred.cert is None:
        return m.verify != "required"
    return m.verify == "none" or CA_OF[cred.cert] in m.cas


def verified_cert(m: Model, cred: Cred) -> bool:
    return m.tls and cred.cert is not None and m.verify != "none" and CA_OF[cred.cert] in m.cas


Route = tuple[str, str, Any]
REMEDIATOR_OPEN = {"/metrics", "/healthz"}
REMEDIATOR_ROUTES: list[Route] = [
    ("GET", "/", None), ("GET", "/actions", None), ("GET", "/actions/1", None),
    ("GET", "/control", None), ("POST", "/actions", {}), ("POST", "/actions/1/approve", {}),
    ("POST", "/actions/1/deny", {}), ("POST", "/pause", {}), ("POST", "/resume", {}),
    ("POST", "/-/reload", None), ("GET", "/metrics", None), ("GET", "/healthz", None),
    ("POST", "/webhook", notification()),
]  # fmt: skip
EXPORTER_ROUTES: list[Route] = [
    ("GET", "/metrics", None), ("GET", "/", None), ("GET", "/healthz", None),
    ("GET", "/probe?target=web01", None), ("GET", "/sd", None), ("POST", "/-/reload", None),
]  # fmt: skip


def remediator_answer(m: Model, route: Route, cred: Cred) -> str:
    """What the remediator must answer: ok, denied (401/403) or closed (no TLS session)."""
    if not connects(m, cred):
        return "closed"
    path = route[1]
    if path == "/webhook":
        return "ok" if cred.header == m.webhook else "denied"
    if m.users:
        return "ok" if cred.header in m.users else "denied"
    if path in REMEDIATOR_OPEN or verified_cert(m, cred) or cred.header == m.webhook:
        return "ok"
    return "denied"


def exporter_answer(m: Model, route: Route, cred: Cred) -> str:
    """What the exporter must answer."""
    if not connects(m, cred):
        return "closed"
    if m.users:
        return "ok" if cred.header in m.users else "denied"
    if route[1] == "/-/reload":
        return "ok" if verified_cert(m, cred) else "denied"
    return "ok"


@dataclass
class Pki:
    dir: Path
    files: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.files[name][0]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    tmp = tmp_path_factory.mktemp("pki")
    pki = Pki(tmp)
    pki.files["server1"] = (SERVER_CERT, SERVER_KEY)
    pki.files["server2"] = make_server_cert(tmp, "server2")
    for ca in ("ca1", "ca2"):
        pki.files[ca] = make_ca(tmp, ca)
    for client, ca in CA_OF.items():
        pki.files[client] = make_signed(tmp, pki.files[ca], client, client)
    bundle = tmp / "ca1+ca2.pem"
    bundle.write_text(pki.path("ca1").read_text() + pki.path("ca2").read_text())
    pki.files["ca1+ca2"] = (bundle, bundle)
    return pki


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("sim") / "sim.log"
    args = sim_args(0, "--users", "admin:admin:root", "--panels", "1")
    with serving(args, log=log) as simulator:
        yield simulator.port


def web_yaml(m: Model, pki: Pki) -> str:
    """The web config file for model ``m``."""
    data: dict[str, Any] = {}
    if m.tls:
        tls: dict[str, Any] = {
            "cert_file": str(pki.path(m.server_cert)),
            "key_file": str(pki.files[m.server_cert][1]),
            "min_version": "TLS13" if m.tls13_only else "TLS12",
        }
        if m.verify != "none":
            tls["client_auth_type"] = {
                "optional": "VerifyClientCertIfGiven",
                "required": "RequireAndVerifyClientCert",
            }[m.verify]
            tls["client_ca_file"] = str(pki.path("+".join(sorted(m.cas))))
        data["tls_server_config"] = tls
    if m.users:
        data["basic_auth_users"] = {user: HASHES[user] for user in sorted(m.users)}
    return yaml.safe_dump(data)


def auth_header(name: str | None) -> dict[str, str]:
    if name is None:
        return {}
    if name in TOKENS:
        return {"Authorization": f"Bearer {TOKENS[name]}"}
    user, password = (HOOK_USER, HOOK_PASSWORD) if name == "whook" else (name, PASSWORDS[name])
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


Record = tuple[float, float, Route, Cred, str]
"""(round began, answer came, route, credential, answer) of a request the hammer made."""
HAMMER_PATHS = {"/actions", "/actions/1/approve", "/metrics", "/webhook", "/", "/healthz"}
"""Routes the hammer asks: no reload, no pause (the main thread owns those)."""


class Daemon:
    """One running daemon, the files it reads, and a client for every credential."""

    def __init__(
        self, kind: str, tmp: Path, pki: Pki, sim_port: int, model: Model, creds: list[Cred]
    ) -> None:
        self.kind, self.tmp, self.pki, self.sim_port = kind, tmp, pki, sim_port
        self.model, self.creds = model, creds
        self.routes = REMEDIATOR_ROUTES if kind == "remediator" else EXPORTER_ROUTES
        self.answer = remediator_answer if kind == "remediator" else exporter_answer
        self.port = 0  # the kernel's choice, read back when the daemon starts
        self.scheme = "https" if model.tls else "http"
        self.web, self.config, self.log = tmp / "web.yml", tmp / "config.yml", tmp / "daemon.log"
        self.transitions: list[tuple[float, float, Model]] = [(0.0, 0.0, model)]
        """(change began, change settled, model) of every reload that applied."""
        self.records: list[Record] = []
        self._stop = threading.Event()
        self.write(model)

    # ------------------------------------------------------------------ files

    def write(self, m: Model) -> None:
        """Write the web config and the app config (the webhook credentials) for ``m``."""
        self.web.write_text(web_yaml(m, self.pki))
        secret = self.tmp / "panel.pw"
        if self.kind == "exporter":
            secret.write_text("admin\n")
            secret.chmod(0o600)
            url = f"http://127.0.0.1:{self.sim_port}/panel/panel0001/api/api.php"
            panel = {"url": url, "username": "admin", "password_file": str(secret)}
            exporter = {"list_interval": "0"}
            self.config.write_text(yaml.safe_dump({"panels": {"web01": panel},
                                                   "exporter": exporter}))  # fmt: skip
            return
        hook_pw, token = self.tmp / "hook.pw", self.tmp / "token"
        hook_pw.write_text(HOOK_PASSWORD + "\n")
        token.write_text(TOKENS.get(m.webhook, "unused-token") + "\n")
        auth: dict[str, Any] = {"bearer_token_file": str(token)}
        if m.webhook == "whook":
            auth = {"basic": {"username": HOOK_USER, "password_file": str(hook_pw)}}
        manual = {"actions": ["delete_messages"], "allow_destructive": True}
        write_config(self.config, self.sim_port, None, self.tmp / "s.db", [],
                     panels=("panel0001",), auth=auth, manual=manual)  # fmt: skip
        for path in (hook_pw, token, secret, self.tmp / "webhook.token"):
            path.chmod(0o600)

    def args(self) -> list[str]:
        return [PYTHON, "-m", f"{self.kind}.cli", "--config", str(self.config),
                "--web.config.file", str(self.web), *ANY_PORT]  # fmt: skip

    @property
    def base(self) -> str:
        """The daemon's URL, once :meth:`running` has read its port."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ asking

    def context(self, cred: Cred) -> ssl.SSLContext:
        cert, key = self.pki.files[cred.cert] if cred.cert else (None, None)
        version = ssl.TLSVersion.TLSv1_2 if cred.tls12 else None
        return client_context(cert, key, version, trust=(SERVER_CERT, self.pki.path("server2")))

    def client(self, cred: Cred) -> httpx.Client:
        headers = auth_header(cred.header)
        if self.base.startswith("http:"):
            return httpx.Client(timeout=10, headers=headers)
        return httpx.Client(timeout=10, headers=headers, verify=self.context(cred))

    def ask(self, client: httpx.Client, route: Route) -> str:
        method, path, body = route
        try:
            answer = client.request(method, f"{self.base}{path}", json=body)
        except httpx.TransportError:
            return "closed"
        if answer.status_code >= 500:
            return f"error {answer.status_code}: {answer.text[:200]}"
        return "denied" if answer.status_code in (401, 403) else "ok"

    def check_every_route(self) -> None:
        """Every route with every credential on new connections: what the model says."""
        wrong = []
        for cred in self.creds:
            with self.client(cred) as client:
                for route in self.routes:
                    expected = self.answer(self.model, route, cred)
                    got = self.ask(client, route)
                    if got != expected:
                        wrong.append(f"{route[0]} {route[1]} as {cred.name}: {got}, not {expected}")
        assert not wrong, f"{self.kind} under {self.model}:\n" + "\n".join(wrong)

    def allowed(self, path: str, model: Model | None = None) -> Cred:
        """A credential that ``model`` (default: the one in force) lets through ``path``."""
        route = next(r for r in self.routes if r[1] == path)
        return next(c for c in self.creds if self.answer(model or self.model, route, c) == "ok")

    def reload_metrics(self, model: Model | None = None) -> tuple[float, float]:
        with self.client(self.allowed("/metrics", model)) as client:
            text = client.get(f"{self.base}/metrics").text
        values = dict(
            line.split() for line in text.splitlines() if line.startswith("brainycp_config_last")
        )
        return (
            float(values["brainycp_config_last_reload_successful"]),
            float(values["brainycp_config_last_reload_success_timestamp_seconds"]),
        )

    def served_certificate(self) -> bytes:
        """The certificate a new connection gets (showing client1's, should it be asked)."""
        context = self.context(Cred("probe", cert="client1"))
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    # ------------------------------------------------------------------ reloads

    def reload(self, new: Model, *, how: str = "POST", refused: str | None = None) -> None:
        """Write the files for ``new``, reload (SIGHUP, or POST /-/reload as a credential
        the model in force allows), then ask every route. ``refused``: the reload must
        fail with this error and change nothing; else ``new`` is in force afterwards."""
        began = time.time()
        self.write(new)
        if how == "SIGHUP":
            _, before = self.reload_metrics()
            os.kill(self.proc.pid, signal.SIGHUP)
            wait_until(lambda: self.reload_metrics(new)[1] > before, what=f"{self.kind} SIGHUP")
        else:
            with self.client(self.allowed("/-/reload")) as client:
                answer = client.post(f"{self.base}/-/reload")
            if refused is None:
                assert answer.json() == {"status": "success"}, answer.text
            else:
                assert answer.status_code == 400, answer.text
                (error,) = answer.json()["errors"]
                assert error.startswith(refused), error
        if refused is None:
            self.model = new
            self.transitions.append((began, time.time(), new))
            assert self.reload_metrics()[0] == 1
        else:
            assert self.reload_metrics()[0] == 0
        self.check_every_route()
        if refused is not None:
            self.write(self.model)  # the files say again what runs

    # ------------------------------------------------------------------ running

    def hammer(self) -> None:
        """Ask the side-effect-free routes with every credential until stopped."""
        routes = [r for r in self.routes if r[1].split("?")[0] in HAMMER_PATHS]
        while not self._stop.is_set():
            began = time.time()
            for cred in self.creds:
                with self.client(cred) as client:
                    for route in routes:
                        got = self.ask(client, route)
                        self.records.append((began, time.time(), route, cred, got))

    def in_force(self, start: float, end: float) -> list[Model]:
        """Every model that may have been in force at some time in [start, end]."""
        models = []
        for i, (began, _, model) in enumerate(self.transitions):
            replaced = self.transitions[i + 1][1] if i + 1 < len(self.transitions) else end
            if began <= end and replaced >= start:
                models.append(model)
        return models

    def check_hammer(self) -> None:
        assert len(self.records) >= len(self.creds), f"{len(self.records)} requests meanwhile"
        wrong = []
        for start, end, route, cred, got in self.records:
            allowed = {self.answer(m, route, cred) for m in self.in_force(start, end)}
            if got not in allowed:
                wrong.append(f"{route[0]} {route[1]} as {cred.name}: {got}, not {allowed}")
        assert not wrong, f"{self.kind} while reloading:\n" + "\n".join(wrong[:20])

    @contextmanager
    def running(self) -> Iterator[Daemon]:
        ready = self.allowed("/healthz")
        with (
            serving(self.args(), log=self.log, ready_path=None) as served,
            self.client(ready) as client,
        ):
            self.proc, self.port = served.proc, served.port
            wait_until(lambda: client.get(f"{self.base}/healthz").status_code == 200,
                       timeout=20, what=f"the {self.kind} up")  # fmt: skip
            self.check_every_route()
            thread = threading.Thread(target=self.hammer, daemon=True)
            thread.start()
            try:
                yield self
            finally:
                self._stop.set()
                thread.join(30)
        self.check_hammer()
        text = self.log.read_text()
        assert "Traceback" not in text, text[-3000:]
        for secret in [*TOKENS.values(), HOOK_PASSWORD, *PASSWORDS.values()]:
            assert secret not in text


PLAIN_CREDS = [
    Cred("anonymous"), Cred("bearer1", "bearer1"), Cred("bearer2", "bearer2"),
    Cred("webhook basic", "whook"), Cred("alice", "alice"), Cred("bob", "bob"),
]  # fmt: skip
TLS_CREDS = [
    Cred("anonymous"), Cred("bearer1", "bearer1"), Cred("alice", "alice"),
    Cred("client1", cert="client1"), Cred("client2", cert="client2"),
    Cred("client1+alice", "alice", cert="client1"), Cred("client1+bearer1", "bearer1", "client1"),
    Cred("client1 on TLS 1.2", cert="client1", tls12=True),
]  # fmt: skip
TLS_ON = "tls_server_config: the listener serves plain HTTP; turning TLS on needs a restart"
TLS_OFF = "tls_server_config: the listener serves TLS; turning it off needs a restart"
CA_DROPPED = "tls_server_config.client_ca_file: the listener trusts 1 client CA"


@pytest.mark.parametrize("kind", ["remediator", "exporter"])
def test_plain_http_web_config_reloads_while_requests_run(
    kind: str, pki: Pki, sim: int, tmp_path: Path
) -> None:
    """Users come and go, the webhook credentials change kind, and a reload that turns
    TLS on (with client certificates required, and no users) fails whole: nothing opens."""
    start = Model()
    daemon = Daemon(kind, tmp_path, pki, sim, start, PLAIN_CREDS)
    with daemon.running():
        alice = replace(start, users=frozenset({"alice"}), webhook="whook")
        daemon.reload(alice, how="SIGHUP")
        bob = replace(alice, users=frozenset({"bob"}), webhook="bearer2")
        daemon.reload(bob)
        # The same edit rotates the token: refused with the TLS change, so bearer2 stays.
        mtls = Model(tls=True, verify="required", cas=frozenset({"ca1"}), webhook="bearer1")
        daemon.reload(mtls, refused=TLS_ON)
        assert daemon.model == bob
        daemon.reload(replace(start, webhook="bearer2"), how="SIGHUP")
    log = daemon.log.read_text()
    assert f"reload (/-/reload): {TLS_ON}" in log


@pytest.mark.parametrize("kind", ["remediator", "exporter"])
def test_tls_web_config_reloads_while_requests_run(
    kind: str, pki: Pki, sim: int, tmp_path: Path
) -> None:
    """A new server certificate, client CA, client_auth_type, min_version and users apply
    at reload, on new connections; dropping a CA or TLS needs a restart: refused whole."""
    start = Model(tls=True, verify="optional", cas=frozenset({"ca1"}))
    daemon = Daemon(kind, tmp_path, pki, sim, start, TLS_CREDS)
    server1 = ssl.PEM_cert_to_DER_cert(SERVER_CERT.read_text())
    server2 = ssl.PEM_cert_to_DER_cert(pki.path("server2").read_text())
    with daemon.running():
        assert daemon.served_certificate() == server1
        strict = replace(start, server_cert="server2", verify="required",
                         cas=frozenset({"ca1", "ca2"}), tls13_only=True)  # fmt: skip
        daemon.reload(strict, how="SIGHUP")
        assert daemon.served_certificate() == server2
        with_users = replace(strict, users=frozenset({"alice"}))
        daemon.reload(with_users)
        daemon.reload(replace(with_users, cas=frozenset({"ca2"})), refused=CA_DROPPED)
        daemon.reload(replace(with_users, tls=False), refused=TLS_OFF)
        assert daemon.served_certificate() == server2
        # Back to optional certificates, TLS 1.2, the first certificate and no users (the
        # listener keeps trusting ca2, so the file must list it).
        daemon.reload(replace(start, cas=frozenset({"ca1", "ca2"})))
        assert daemon.served_certificate() == server1


def test_a_refused_tls_reload_lets_no_one_delete_mail(pki: Pki, sim: int, tmp_path: Path) -> None:
    """The attack of the review: a plain-HTTP remediator reloaded to a web config that
    requires client certificates treated every request as authenticated, and an anonymous
    POST /actions deleted mail. Now the reload fails and the request gets a 401."""
    sim_url = f"http://127.0.0.1:{sim}/panel/panel0001/_sim"
    httpx.post(f"{sim_url}/pause", json={"paused": True}, timeout=5).raise_for_status()
    add = {"add": 5, "sender": "victim@example.org"}
    httpx.post(f"{sim_url}/queue", json=add, timeout=5).raise_for_status()

    def queued() -> int:
        return int(httpx.get(f"{sim_url}/state", timeout=5).json()["queue"]["messages"])

    before = queued()
    daemon = Daemon("remediator", tmp_path, pki, sim, Model(), PLAIN_CREDS)
    with daemon.running():
        daemon.write(Model(tls=True, verify="required", cas=frozenset({"ca1"})))
        bearer = auth_header("bearer1")
        reloaded = httpx.post(f"{daemon.base}/-/reload", headers=bearer, timeout=10)
        attack = {"panel": "panel0001", "action": "delete_messages", "by": "mallory",
                  "select": {"sender": "victim@example.org"},
                  "allow_destructive": True}  # fmt: skip
        answers = [
            httpx.post(f"{daemon.base}/actions", json=attack, timeout=10).status_code,
            httpx.get(f"{daemon.base}/actions", timeout=10).status_code,
            httpx.post(f"{daemon.base}/-/reload", timeout=10).status_code,
        ]
        daemon.write(daemon.model)
        assert answers == [401, 401, 401]
        assert reloaded.status_code == 400, reloaded.text
        assert reloaded.json()["errors"] == [TLS_ON]
    assert queued() == before
