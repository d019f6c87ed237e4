"""The daemons' one server set-up (brainycp.daemon.server.HttpService), in process: it
says when it listens without polling, a stop signal ends serving, and the signal handlers
stay until the daemon's own shutdown work is done."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from brainycp.daemon.listener import (
    TIMEOUTS_ENV,
    Deadlines,
    GuardedH11Protocol,
    listen_socket,
    server_config,
)
from brainycp.daemon.reload import Reloader
from brainycp.daemon.server import HttpService
from brainycp.daemon.webconfig import WebConfigHolder


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("hello")(scope, receive, send)


def test_it_listens_stops_on_sigterm_and_keeps_handlers_until_the_daemon_is_done() -> None:
    stops: list[str] = []
    reloads: list[str] = []

    async def run() -> tuple[str, bool]:
        second_stop, reloaded = asyncio.Event(), asyncio.Event()

        def on_stop(signame: str) -> None:
            stops.append(signame)
            if len(stops) == 2:
                second_stop.set()

        def reload() -> list[str]:
            reloads.append("reloaded")
            reloaded.set()
            return []

        sock = listen_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        web = WebConfigHolder(None, logging.getLogger("test"))
        http = HttpService(
            hello, sock, web, Reloader(reload), host="127.0.0.1", port=port,
            shutdown_seconds=1, on_stop=on_stop,
        )  # fmt: skip
        async with http:
            serving = asyncio.create_task(http.serve())
            assert await http.wait_started(serving)
            async with httpx.AsyncClient() as client:
                answer = (await client.get(f"http://127.0.0.1:{port}/")).text
            os.kill(os.getpid(), signal.SIGTERM)
            await serving
            # The daemon's own shutdown work: a second SIGTERM and a SIGHUP here are the
            # daemon's to handle, not the end of the process.
            os.kill(os.getpid(), signal.SIGTERM)
            async with asyncio.timeout(5):
                await second_stop.wait()
            os.kill(os.getpid(), signal.SIGHUP)
            async with asyncio.timeout(5):
                await reloaded.wait()
        return answer, http.server.started

    answer, started = asyncio.run(run())
    assert answer == "hello" and started
    assert stops == ["SIGTERM", "SIGTERM"]
    assert reloads == ["reloaded"]


def test_wait_started_says_false_when_serving_ends_before_it_listens() -> None:
    async def run() -> bool:
        sock = listen_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        web = WebConfigHolder(None, logging.getLogger("test"))
        http = HttpService(
            hello, sock, web, Reloader(lambda: []), host="127.0.0.1", port=port,
            shutdown_seconds=1,
        )  # fmt: skip
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(OSError("no"))
        async with http:
            started = await http.wait_started(failed)
        sock.close()
        return started

    assert asyncio.run(run()) is False


def test_the_listener_deadlines_are_10_30_and_5_seconds_unless_the_tests_set_them(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Operators get the documented deadlines; only the internal TIMEOUTS_ENV (the
    listener tests' way to wait a second, not ten) changes them, and a malformed value
    leaves them alone."""
    monkeypatch.delenv(TIMEOUTS_ENV, raising=False)
    default = server_config(hello, host="127.0.0.1", port=1)
    assert (default.http.head_timeout, default.http.body_timeout) == (10.0, 30.0)  # type: ignore[union-attr]
    assert default.timeout_keep_alive == 5
    monkeypatch.setenv(TIMEOUTS_ENV, "3 2.5 1")
    short = server_config(hello, host="127.0.0.1", port=1)
    assert issubclass(short.http, GuardedH11Protocol)  # type: ignore[arg-type]
    assert (short.http.head_timeout, short.http.body_timeout) == (3.0, 2.5)  # type: ignore[union-attr]
    assert short.timeout_keep_alive == 1
    for malformed in ("3 2", "a b c", "0 1 1"):
        monkeypatch.setenv(TIMEOUTS_ENV, malformed)
        assert Deadlines.from_env() == Deadlines(10.0, 30.0, 5)
    # Not an operator setting: whenever it is set, the log says so.
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum(TIMEOUTS_ENV in m and "a test setting" in m for m in warned) == 1
    assert sum(TIMEOUTS_ENV in m and "ignored" in m for m in warned) == 3
