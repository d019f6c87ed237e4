"""``brainycp-panel-sim --mta exim``: one panel whose mail operations run this machine's Exim.

The panel answers ``/api/api.php`` as a BrainyCP panel does, but its queue is a real Exim
queue: ``list_msg`` runs ``exim -bp``, ``count_msg`` ``exim -bpc``, ``delete_frozen_msg``
``exiqgrep -z -i`` then ``exim -Mrm`` on those ids, ``delete_all_msg`` ``exiqgrep -i -f .``
then ``exim -Mrm``, ``controll_msg`` ``exim -Mrm ID`` (delete) or ``exim -M ID`` (reship).
ClamAV and SpamAssassin stay simulated.

Safety: commands run without a shell (an argument list, ``create_subprocess_exec``), each
under a timeout that kills its process group; every id is checked against the Exim id
shapes before it reaches a command line. Whether a forced delivery can leave the machine
is the Exim configuration's business: docs/simulator.md gives one in which every delivery
attempt defers locally, and ``--exim-config`` points the commands at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from brainycp.simulator import render
from brainycp.simulator.app import (
    CALL_LOG,
    Admitted,
    Receive,
    Scope,
    Send,
    User,
    admit,
    authenticate,
    call_record,
    control_arguments,
    daemon_args,
    read_call,
)
from brainycp.simulator.state import SCENARIO_TABLE, PanelState

log = logging.getLogger("brainycp.simulator.mta")

#: Exim 4.96 ids are 6-6-2 (``1xW6VZ-0000xu-1S``), 4.97 and later 6-11-4
#: (``16VDhn-000000001bo-D342``); base 62 digits. Checked with fullmatch before any id
#: reaches a command line, so nothing starting with ``-`` or holding a space gets there.
EXIM_ID = re.compile(
    r"[0-9A-Za-z]{6}-(?:[0-9A-Za-z]{6}-[0-9A-Za-z]{2}|[0-9A-Za-z]{11}-[0-9A-Za-z]{4})"
)
#: Ids per ``exim -Mrm`` command line, well under any argument-length limit.
MRM_BATCH = 500
#: Most bytes kept of one command's output (a 1M-message ``exim -bp`` is ~100 MB).
MAX_OUTPUT_BYTES = 256 * 1024 * 1024
DEFAULT_TIMEOUT = 60.0
CONFIG_ENV = "BRAINYCP_SIM_EXIM_CONFIG"
LoginStyle = Literal["both", "username", "login"]

_FAILED_HTML = (
    "<br />\n<b>Warning</b>:  {what} in <b>/usr/local/brainycp/api/mailserver.php</b>"
    " on line <b>97</b><br />\n"
)


def is_exim_id(text: str) -> bool:
    """Whether ``text`` is exactly one Exim message id (4.96 or 4.97+ shape)."""
    return EXIM_ID.fullmatch(text) is not None


class CommandFailed(Exception):
    """A command could not run, timed out, or failed in a way a panel cannot answer."""


@dataclass(frozen=True)
class CommandResult:
    """Exit status and decoded output of one finished command."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout then stderr, as a panel's ``2>&1`` console output shows them."""
        return self.stdout + self.stderr


async def run_command(argv: Sequence[str], timeout: float) -> CommandResult:
    """Run ``argv`` (no shell) with stdin closed; kill its process group after ``timeout``."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # exiqgrep starts exim through perl: kill them together
        )
    except OSError as exc:
        raise CommandFailed(f"{argv[0]}: cannot run: {exc.strerror or exc}") from None
    try:
        stdout, stderr = await asyncio.wait_for(_read_all(proc), timeout)
    except TimeoutError:
        raise CommandFailed(f"{_shown(argv)} timed out after {timeout:g}s") from None
    finally:
        if proc.returncode is None:
            _kill_group(proc.pid)
            await proc.wait()
    assert proc.returncode is not None
    return CommandResult(
        proc.returncode,
        stdout.decode("utf-8", "replace"),
        stderr.decode("utf-8", "replace"),
    )


async def _read_all(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = await asyncio.gather(
        _read_capped(proc.stdout, MAX_OUTPUT_BYTES), _read_capped(proc.stderr, 1024 * 1024)
    )
    await proc.wait()
    return stdout, stderr


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> bytes:
    chunks: list[bytes] = []
    kept = 0
    while chunk := await stream.read(1 << 20):
        if kept < cap:
            chunks.append(chunk[: cap - kept])
            kept += len(chunks[-1])
    if kept >= cap:
        raise CommandFailed(f"output longer than {cap} bytes")
    return b"".join(chunks)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _shown(argv: Sequence[str]) -> str:
    return " ".join(os.path.basename(argv[0]) if i == 0 else a for i, a in enumerate(argv))


def default_binary(name: str, *fallbacks: str) -> str:
    """``name`` on PATH, else the first existing fallback, else ``name`` itself."""
    found = shutil.which(name)
    if found:
        return found
    return next((f for f in fallbacks if os.access(f, os.X_OK)), name)


@dataclass(frozen=True)
class EximCommands:
    """Where Exim and exiqgrep are, which configuration (``-C``) they use, how long they get."""

    exim: str = "exim"
    exiqgrep: str = "exiqgrep"
    config: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def exim_argv(self, *args: str) -> list[str]:
        """``exim [-C CONFIG] ARGS``."""
        config = ["-C", self.config] if self.config else []
        return [self.exim, *config, *args]

    def exiqgrep_argv(self, *args: str) -> list[str]:
        """``exiqgrep -E EXIM [-C CONFIG] ARGS``."""
        config = ["-C", self.config] if self.config else []
        return [self.exiqgrep, "-E", self.exim, *config, *args]

    async def run_exim(self, *args: str) -> CommandResult:
        """Run exim with ``args``."""
        return await run_command(self.exim_argv(*args), self.timeout)

    async def ids(self, *selection: str) -> list[str]:
        """Ids that ``exiqgrep -i SELECTION`` prints; anything not shaped like an id is dropped."""
        result = await run_command(self.exiqgrep_argv(*selection, "-i"), self.timeout)
        if result.returncode != 0:
            raise CommandFailed(f"exiqgrep {' '.join(selection)} -i exited {result.returncode}")
        ids = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        bad = [i for i in ids if not is_exim_id(i)]
        if bad:
            log.warning("exiqgrep printed %d line(s) that are not message ids; skipped", len(bad))
        return [i for i in ids if is_exim_id(i)]

    async def remove(self, ids: Sequence[str]) -> str:
        """``exim -Mrm`` on ``ids`` (checked), in batches; the console output of all batches."""
        outputs = []
        for start in range(0, len(ids), MRM_BATCH):
            batch = [i for i in ids[start : start + MRM_BATCH] if is_exim_id(i)]
            if batch:
                outputs.append((await self.run_exim("-Mrm", *batch)).output)
        return "".join(outputs)


# The calls' daemons need a clock but no traffic: the quiet scenario with no arrivals.
_NO_TRAFFIC = replace(SCENARIO_TABLE["quiet"], name="exim", initial_messages=0, arrival_rate=0.0)


@dataclass
class EximPanelApp:
    """The ASGI application: one panel at ``/api/api.php`` backed by a real Exim queue."""

    commands: EximCommands
    users: dict[str, User]
    login_style: LoginStyle = "both"
    no_relay: bool = False
    latency: float = 0.0
    wall_clock: Callable[[], float] = time.time
    name: str = "exim"
    calls: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=CALL_LOG))

    def __post_init__(self) -> None:
        self.daemons = PanelState(
            flavour="exim", scenario=_NO_TRAFFIC, time_scale=1.0, clock=time.monotonic
        )
        # One change of the queue at a time, as one panel's PHP workers would hope for.
        self._changing = asyncio.Lock()

    def describe(self) -> str:
        """One line for the start-up log."""
        config = self.commands.config or "its default configuration"
        return f"{self.name} (real Exim: {self.commands.exim} with {config})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        request = Request(scope, receive)
        response: Response
        if path == "/api/api.php":
            if method in ("GET", "POST"):
                response = await self.api(request)
            else:
                response = Response("method not allowed", 405)
        elif path == "/healthz" and method == "GET":
            response = JSONResponse({"status": "ok", "panels": 1, "mta": "exim"})
        elif path.startswith("/_sim/"):
            response = await self.control(path[len("/_sim/") :], request)
        else:
            response = JSONResponse({"error": "not found"}, 404)
        await response(scope, receive, send)

    # ------------------------------------------------------------------ panel API

    def authorised(self, params: dict[str, str]) -> User | None:
        """The user whose credentials the call carries (in the accepted style), else None."""
        return authenticate(self.users, self.login_style, params)

    async def api(self, request: Request) -> Response:
        """Answer one ``/api/api.php`` call."""
        params, operation = await read_call(request)
        user = self.authorised(params)
        self.calls.append(call_record(operation, params, self.wall_clock(), user is not None))
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if user is None:
            return _json({"code": 1, "message": "Not perm2"})
        try:
            answer = await self.answer(params, operation, user, params.get("language") == "en")
        except CommandFailed as exc:
            log.warning("%s: %s", operation, exc)
            # What a PHP panel shows when its shell command fails: a warning page.
            return Response(_FAILED_HTML.format(what=str(exc)), 500, media_type="text/html")
        return _json(answer)

    async def answer(
        self, params: dict[str, str], operation: str | None, user: User, english: bool
    ) -> dict[str, Any]:
        """The JSON answer of an authenticated call; CommandFailed when a command failed."""
        call = admit(params, operation, user, english)
        if not isinstance(call, Admitted):
            return call
        text, operation, commands = call.text, call.operation, self.commands

        if operation == "list_msg":
            listing = await commands.run_exim("-bp")
            if listing.returncode != 0:
                raise CommandFailed(f"exim -bp exited {listing.returncode}: {listing.stderr[:300]}")
            if not listing.stdout.strip():
                return {"error": 100, "mess": text("queue_empty")}
            return {"error": 0, "mess": text("queue"), "detail": listing.stdout}

        if operation == "count_msg":
            counted = await commands.run_exim("-bpc")
            value = counted.stdout.strip()
            if counted.returncode != 0 or not value.isdigit():
                raise CommandFailed(
                    f"exim -bpc exited {counted.returncode}: {counted.output[:300]}"
                )
            return {"error": 0, "message": text("count"), "detail": int(value)}

        if operation == "delete_frozen_msg":
            async with self._changing:
                output = await commands.remove(await commands.ids("-z"))
            return {"error": 0, "message": text("frozen_deleted"), "detail": output}

        if operation == "delete_all_msg":
            if "dellete_forse" in params:
                return {"error": 100, "message": text("no_force")}
            async with self._changing:
                # exiqgrep needs a selection; every sender, "<>" included, matches ".".
                output = await commands.remove(await commands.ids("-f", "."))
            return {"error": 0, "message": text("all_deleted"), "detail": output}

        if operation == "controll_msg":
            checked = control_arguments(params, self.no_relay, text)
            if isinstance(checked, dict):
                return checked
            message_id, command = checked
            option = "-Mrm" if command == "delete" else "-M"
            key = "msg_deleted" if command == "delete" else "msg_reshipped"
            if not is_exim_id(message_id):
                # Never handed to exim; this is what exim itself says (exim-Mrm-malformed.txt).
                output = f"exim: malformed message id {message_id} after {option} option\n"
                return {"error": 0, "mess": text(key), "detail": output}
            async with self._changing:
                result = await commands.run_exim(option, message_id)
            return {"error": 0, "mess": text(key), "detail": result.output}

        # clamav / spamassassin: simulated.
        command = params.get("command", "")
        if command not in ("status", "on", "off"):
            return {"error": 100, "mess": text("bad_command")}
        state = self.daemons
        if command == "status":
            state.advance()
            daemon = state.daemons[operation]
            key = "status"
        else:
            daemon = state.set_daemon(operation, command == "on")
            key = "started" if command == "on" else "stopped"
        detail = render.daemon_status(operation, daemon, state, self.wall_clock())
        return {"error": 0, "mess": text(key), "detail": detail}

    # ------------------------------------------------------------------ control API

    async def control(self, what: str, request: Request) -> Response:
        """``/_sim/state`` (GET), ``/_sim/calls`` (DELETE), ``/_sim/daemon`` (POST)."""
        method = request.method
        if what == "state" and method == "GET":
            return JSONResponse(self.state())
        if what == "calls" and method == "DELETE":
            self.calls.clear()
            return JSONResponse({"calls": []})
        if what == "daemon" and method == "POST":
            try:
                data = json.loads(await request.body() or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("the body must be a JSON object")
                for name, running in daemon_args(data).items():
                    self.daemons.set_daemon(name, running)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            return JSONResponse({"daemons": self._daemon_states()})
        return JSONResponse({"error": f"no control endpoint {method} /_sim/{what}"}, 404)

    def state(self) -> dict[str, Any]:
        """What ``GET /_sim/state`` answers: the queue is Exim's, so only calls and daemons."""
        return {
            "panel": self.name,
            "mta": "exim",
            "exim": self.commands.exim,
            "exim_config": self.commands.config,
            "daemons": self._daemon_states(),
            "calls": list(self.calls),
        }

    def _daemon_states(self) -> dict[str, str]:
        return {n: "running" if d.running else "stopped" for n, d in self.daemons.daemons.items()}


def _json(answer: dict[str, Any]) -> Response:
    # PHP's json_encode escapes non-ASCII as \uXXXX by default; so do we.
    body = json.dumps(answer, separators=(",", ":")).encode("ascii")
    return Response(body, media_type="application/json")


def check_setup(commands: EximCommands) -> str | None:
    """Why the commands cannot work (binary missing, config unreadable), or None."""
    for what, path in (("exim", commands.exim), ("exiqgrep", commands.exiqgrep)):
        if not (shutil.which(path) or os.access(path, os.X_OK)):
            return f"{what} not found: {path}"
    if commands.config and not os.access(commands.config, os.R_OK):
        return f"Exim configuration not readable: {commands.config}"
    return None
