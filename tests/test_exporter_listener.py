"""Connection exhaustion, with the real daemons: sockets that never send a request head
are closed at the deadline, idle keep-alive after 5 s, a request beyond the connection
cap gets a clear 503, and a failed accept at the file limit is not a traceback each.

Both daemons build their listener with :mod:`brainycp.daemon.listener`.
"""

from __future__ import annotations

import os
import resource
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from brainycp.daemon.listener import TIMEOUTS_ENV
from tests.harness import listening_port
from tests.support import ANY_PORT, PYTHON, REPO, exporter_cmd, serving, wait_until

# Every test here starts a process (the in-process tier, make test-fast, skips them).
pytestmark = pytest.mark.e2e

TOKEN = "listener-test-token-77"
# The listener's deadlines for these daemons (brainycp.daemon.listener.TIMEOUTS_ENV): the
# same behaviour as the defaults (10 s head, 30 s body, 5 s keep-alive), in seconds, not
# tens of seconds; keep-alive stays shorter than the head deadline, as in the defaults.
HEAD_TIMEOUT, BODY_TIMEOUT, KEEP_ALIVE_TIMEOUT = 3.0, 3.0, 1
DEADLINES = {TIMEOUTS_ENV: f"{HEAD_TIMEOUT} {BODY_TIMEOUT} {KEEP_ALIVE_TIMEOUT}"}


def exporter_config(tmp: Path, **exporter: Any) -> Path:
    secret = tmp / "pw"
    secret.write_text("pw\n")
    path = tmp / "exporter.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "defaults": {"username": "a", "password_file": str(secret), "timeout": "1s"},
                # Nothing listens on port 9: the polls fail fast, which is all we need.
                "panels": {"p": {"url": "http://127.0.0.1:9/api/api.php"}},
                "exporter": {"interval": "60s", **exporter},
            }
        )
    )
    return path


@contextmanager
def exporter(tmp: Path, **exporter_keys: Any) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    config = exporter_config(tmp, **exporter_keys)
    with serving(exporter_cmd(config), log=tmp / "exporter.log", env=DEADLINES, cwd=REPO) as e:
        yield e.port, e.proc


def open_idle(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def status(port: int, path: str = "/metrics", timeout: float = 5) -> int:
    """The status code of ``GET path`` on the local listener at ``port``."""
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=timeout).status_code


def wait_all_closed(socks: list[socket.socket], timeout: float) -> float:
    """Seconds until the server closed every socket (EOF or reset); fails at ``timeout``."""
    started = time.monotonic()
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    open_count = len(socks)
    while open_count:
        left = timeout - (time.monotonic() - started)
        assert left > 0, f"{open_count} of {len(socks)} sockets still open after {timeout:g}s"
        for key, _ in selector.select(left):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                selector.unregister(sock)
                open_count -= 1
    selector.close()
    return time.monotonic() - started


def test_500_idle_sockets_are_closed_at_the_head_deadline_and_metrics_keeps_answering(
    tmp_path: Path,
) -> None:
    with exporter(tmp_path) as (port, _):
        idle = open_idle(port, 500)
        # One more that drips a head, a byte a second: the deadline counts from the connection.
        dripping = socket.create_connection(("127.0.0.1", port), timeout=5)
        dripping.sendall(b"G")
        try:
            with httpx.Client(timeout=5) as client:
                response = client.get(f"http://127.0.0.1:{port}/metrics")
                assert response.status_code == 200
                assert "brainycp_exporter_build_info" in response.text
            for byte in b"ET /metr":
                dripping.sendall(bytes([byte]))
                if wait_closed_now(dripping):
                    break
            took = wait_all_closed([*idle, dripping], timeout=HEAD_TIMEOUT + 8)
            assert took <= HEAD_TIMEOUT + 8
            # And the daemon is fine afterwards.
            assert status(port) == 200
        finally:
            close_all([*idle, dripping])


def wait_closed_now(sock: socket.socket) -> bool:
    """Wait a second for the server to close ``sock``; True when it did."""
    sock.settimeout(1.0)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_an_idle_keep_alive_connection_is_closed_at_the_keep_alive_deadline(tmp_path: Path) -> None:
    with exporter(tmp_path) as (port, _):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"ok"):
                answer += sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")
            sock.setblocking(False)
            took = wait_all_closed([sock], timeout=KEEP_ALIVE_TIMEOUT + 3)
            # Closed by the keep-alive timeout, before the head deadline.
            assert took < HEAD_TIMEOUT
        finally:
            sock.close()


def test_a_request_beyond_the_connection_cap_gets_a_clear_503(tmp_path: Path) -> None:
    with exporter(tmp_path, max_connections=20) as (port, _):
        idle = open_idle(port, 25)
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            assert response.status_code == 503
            assert response.text == "Service Unavailable"
        finally:
            close_all(idle)
        wait_until(
            lambda: status(port) == 200,
            timeout=10,
            what="/metrics answering again once the idle sockets are gone",
        )


def test_a_reload_changes_the_connection_cap_from_the_next_connection(tmp_path: Path) -> None:
    """exporter.max_connections was read once, at start, and a reload ignored it."""
    with exporter(tmp_path, max_connections=1000) as (port, proc):
        config = tmp_path / "exporter.yml"
        data = yaml.safe_load(config.read_text())
        data["exporter"]["max_connections"] = 20
        config.write_text(yaml.safe_dump(data))
        os.kill(proc.pid, signal.SIGHUP)

        def capped() -> bool:
            idle = open_idle(port, 25)
            try:
                return status(port) == 503
            finally:
                close_all(idle)

        wait_until(capped, timeout=15, what="the reloaded cap of 20 connections")


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def test_at_the_file_limit_failed_accepts_are_rate_limited_lines_not_tracebacks(
    tmp_path: Path,
) -> None:
    config = exporter_config(tmp_path)
    log = tmp_path / "exporter.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            exporter_cmd(config),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
            preexec_fn=_low_fd_limit,
        )
    try:
        port = listening_port(log, proc=proc)
        wait_until(
            lambda: status(port, "/healthz", timeout=1) == 200,
            what="exporter up",
        )
        socks = []
        for _ in range(150):
            sock = socket.socket()
            sock.settimeout(2)
            try:
                sock.connect(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            socks.append(sock)
        # The loop keeps retrying accept about once a second while the limit holds.
        wait_until(
            lambda: "out of system resource" in log.read_text(errors="replace"),
            timeout=10,
            what="the failed accept logged",
        )
        text = log.read_text(errors="replace")
        assert "Traceback" not in text
        close_all(socks)
        wait_until(
            lambda: status(port, timeout=2) == 200,
            timeout=20,
            what="/metrics again after the sockets closed",
        )
        text = log.read_text(errors="replace")
        assert "Traceback" not in text
        assert text.count("out of system resource") <= 3, text[-2000:]
    finally:
        from tests.support import stop

        stop(proc)


def remediator_config(tmp_path: Path) -> Path:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    secret = tmp_path / "pw"
    secret.write_text("pw\n")
    config = tmp_path / "remediator.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "defaults": {"username": "a", "password_file": str(secret)},
                "panels": {"p": {"url": "http://127.0.0.1:9/api/api.php"}},
                "remediator": {
                    "auth": {"bearer_token_file": str(token)},
                    "state_file": str(tmp_path / "journal.sqlite"),
                    "rules": [
                        {
                            "name": "frozen",
                            "matchers": ['alertname="X"'],
                            "action": "delete_frozen",
                        }
                    ],
                },
            }
        )
    )
    return config


def test_the_remediator_listener_closes_silent_connections_too(tmp_path: Path) -> None:
    config = remediator_config(tmp_path)
    with serving(
        [PYTHON, "-m", "remediator.cli", "--config", str(config), *ANY_PORT],
        log=tmp_path / "remediator.log",
        env=DEADLINES,
        cwd=REPO,
    ) as served:
        port = served.port
        idle = open_idle(port, 100)
        try:
            assert status(port, "/healthz") == 200
            wait_all_closed(idle, timeout=HEAD_TIMEOUT + 8)
        finally:
            close_all(idle)


def test_a_client_leaving_mid_body_is_a_quiet_line_not_a_traceback(tmp_path: Path) -> None:
    """The webhook, POST /actions and approve read a body: a client that sends half of it
    and closes is one debug line each, and the remediator keeps answering."""
    config = remediator_config(tmp_path)
    log = tmp_path / "remediator.log"
    paths = ("/webhook", "/actions", "/actions/1/approve")
    with serving(
        [PYTHON, "-m", "remediator.cli", "--config", str(config), *ANY_PORT,
         "--log-level", "debug"],
        log=log,
        cwd=REPO,
    ) as served:  # fmt: skip
        port = served.port
        for path in paths:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                    "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode()
                    + b'{"alerts": ['
                    + b" " * 488
                )

        def quiet_lines() -> list[str]:
            text = log.read_text()
            return [line for line in text.splitlines() if "before sending its whole body" in line]

        lines = wait_until(lambda: len(quiet_lines()) == 3 and quiet_lines(), what="3 lines")
        assert status(port, "/healthz") == 200
    assert sorted(line.split(" DEBUG   remediator.webhook: POST ")[1].split(":")[0]
                  for line in lines) == sorted(paths)  # fmt: skip
    text = log.read_text()
    assert "Traceback" not in text and "Exception in ASGI application" not in text
