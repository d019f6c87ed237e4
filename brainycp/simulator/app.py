"""The simulator's HTTP side: the panel API, the ``/_sim/`` control API, many panels per process.

A plain ASGI callable routes by path (cheap with thousands of panels) and answers with
Starlette responses. Evolution of each panel's state happens lazily inside each request.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from brainycp.config.values import zone_of
from brainycp.simulator import render
from brainycp.simulator.state import DAEMONS, PanelState

# Exim 4.96 ids are 6-6-2, 4.97 and later 6-11-4 (base 62 digits); matched whole.
_EXIM_ID = re.compile(
    r"[0-9A-Za-z]{6}-(?:[0-9A-Za-z]{6}-[0-9A-Za-z]{2}|[0-9A-Za-z]{11}-[0-9A-Za-z]{4})"
)
LoginStyle = Literal["both", "username", "login"]
#: The credential fields each login style reads, as (name field, password field) pairs.
LOGIN_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "both": (("username", "password"), ("login", "pass")),
    "username": (("username", "password"),),
    "login": (("login", "pass"),),
}
_SECRET_FIELDS = frozenset(("username", "password", "login", "pass"))

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
DetailFormat = Literal["string", "lines", "objects"]

#: Operations of module ``mailserver``, picked by parameter NAME, in this precedence.
OPERATIONS = (
    "list_msg",
    "count_msg",
    "delete_frozen_msg",
    "delete_all_msg",
    "controll_msg",
    "clamav",
    "spamassassin",
)
CALL_LOG = 10_000
MAX_LISTING_MESSAGES = 1_000_000
ERROR_NO_MODULE = 2
ERROR_NO_OPERATION = 3

# (English, Russian): the panel answers in Russian unless language=en.
TEXTS: dict[str, tuple[str, str]] = {
    "queue": ("Mail queue", "Очередь почты"),
    "queue_empty": ("Mail queue is empty", "Очередь почты пуста"),
    "count": ("Number of messages", "Количество сообщений"),
    "frozen_deleted": ("Frozen messages deleted", "Замороженные сообщения удалены"),
    "no_frozen": (
        "This mail server has no frozen messages to delete",
        "На этом почтовом сервере нет замороженных сообщений",
    ),
    "all_deleted": ("All messages deleted", "Все сообщения удалены"),
    "no_force": (
        "Forced deletion is not supported by this mail server",
        "Принудительное удаление не поддерживается этим почтовым сервером",
    ),
    "msg_deleted": ("Message deleted", "Сообщение удалено"),
    "msg_reshipped": ("Message sent for delivery", "Сообщение отправлено на доставку"),
    "bad_command": ("Invalid command", "Неверная команда"),
    "no_id": ("Message id is missing", "Не указан идентификатор сообщения"),
    "no_relay": (
        "No server to send letters through",
        "Не указан сервер для отправки писем",
    ),
    "status": ("Service status", "Статус службы"),
    "started": ("Service started", "Служба запущена"),
    "stopped": ("Service stopped", "Служба остановлена"),
    "no_perm": (
        "Module is not available to this user",
        "Модуль недоступен этому пользователю",
    ),
    "no_module": ("Module not found", "Модуль не найден"),
    "no_operation": ("Unknown operation", "Неизвестная операция"),
}

_STATUS_HTML = (
    "<html>\r\n<head><title>{code} Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>{code} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_PHP_ERROR_HTML = (
    "<br />\n<b>Fatal error</b>:  Allowed memory size of 134217728 bytes exhausted "
    "(tried to allocate 20480 bytes) in <b>/usr/local/brainycp/api/mailserver.php</b> "
    "on line <b>212</b><br />\n"
)


@dataclass
class User:
    """A panel login; ``role`` ``root`` has full API access, ``user`` only its own account."""

    password: str
    role: str


@dataclass
class Fault:
    """An injected failure; applies to ``operations`` (all when None) for ``times`` calls."""

    latency: float = 0.0
    status: int | None = None
    html: bool = False
    truncated_json: bool = False
    empty_body: bool = False
    close_connection: bool = False
    listing_messages: int | None = None
    operations: frozenset[str] | None = None
    times: int | None = None

    def matches(self, operation: str | None) -> bool:
        """Whether a call of ``operation`` is affected."""
        return self.operations is None or operation in self.operations

    def as_dict(self) -> dict[str, Any]:
        """The fault as the control API shows it."""
        out: dict[str, Any] = {
            "latency": self.latency,
            "status": self.status,
            "html": self.html,
            "truncated_json": self.truncated_json,
            "empty_body": self.empty_body,
            "close_connection": self.close_connection,
            "listing_messages": self.listing_messages,
            "operations": sorted(self.operations) if self.operations is not None else None,
            "times": self.times,
        }
        return out


def parse_fault(data: object) -> Fault:
    """A :class:`Fault` from the JSON body of ``POST /_sim/fault``; ValueError when invalid."""
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    known = set(Fault.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(unknown)}")
    fault = Fault()
    for key in ("html", "truncated_json", "empty_body", "close_connection"):
        if key in data:
            if not isinstance(data[key], bool):
                raise ValueError(f"{key}: must be true or false")
            setattr(fault, key, data[key])
    if "latency" in data:
        value = data["latency"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
            raise ValueError("latency: must be a number of seconds between 0 and 3600")
        fault.latency = float(value)
    if data.get("status") is not None:
        status = data["status"]
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError("status: must be an HTTP status code")
        fault.status = status
    if data.get("listing_messages") is not None:
        count = data["listing_messages"]
        if isinstance(count, bool) or not isinstance(count, int):
            raise ValueError("listing_messages: must be an integer")
        if not 0 <= count <= MAX_LISTING_MESSAGES:
            raise ValueError(f"listing_messages: must be between 0 and {MAX_LISTING_MESSAGES}")
        fault.listing_messages = count
    if data.get("operations") is not None:
        operations = data["operations"]
        if not isinstance(operations, list) or not all(isinstance(o, str) for o in operations):
            raise ValueError("operations: must be a list of operation names")
        bad = sorted(set(operations) - set(OPERATIONS))
        if bad:
            raise ValueError(f"operations: unknown {', '.join(bad)}")
        fault.operations = frozenset(operations)
    if data.get("times") is not None:
        times = data["times"]
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times: must be a positive integer")
        fault.times = times
    return fault


@dataclass
class Panel:
    """One simulated panel: its state, its call log and its current fault."""

    name: str
    scenario: str
    state: PanelState
    calls: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=CALL_LOG))
    fault: Fault | None = None

    def take_fault(self, operation: str | None) -> Fault | None:
        """The fault for this call, counting it against ``times``."""
        fault = self.fault
        if fault is None or not fault.matches(operation):
            return None
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                self.fault = None
        return fault


@dataclass
class SimSettings:
    """Process-wide settings shared by every panel."""

    users: dict[str, User]
    latency: float = 0.0
    detail_format: DetailFormat = "string"
    no_relay: bool = False
    wall_clock: Callable[[], float] = time.time
    timezone: str = "UTC"
    """The panels' clock zone: Postfix listings print arrival times in it, with no zone."""
    login_style: LoginStyle = "both"
    """Which credential fields the panel reads: both pairs, or only one of them."""

    @property
    def zone(self) -> ZoneInfo | None:
        return zone_of(self.timezone)

    def authenticate(self, params: dict[str, str]) -> User | None:
        """The user whose name and password are in ``params`` under this panel's fields."""
        return authenticate(self.users, self.login_style, params)


def authenticate(
    users: Mapping[str, User], login_style: str, params: dict[str, str]
) -> User | None:
    """The user whose name and password ``params`` carry, in the fields ``login_style``
    reads (both pairs for a style it does not know); None when nobody's do."""
    for name_field, password_field in LOGIN_FIELDS.get(login_style, LOGIN_FIELDS["both"]):
        user = users.get(params.get(name_field, ""))
        if user is not None and hmac.compare_digest(
            user.password.encode(), params.get(password_field, "").encode()
        ):
            return user
    return None


async def read_call(request: Request) -> tuple[dict[str, str], str | None]:
    """An API call's parameters (the query string, then the form body, which wins) and the
    operation it names (None when it names none). The query string is read as Latin-1:
    a hostile client's raw bytes cannot fail the call."""
    query = bytes(request.scope.get("query_string", b"")).decode("latin-1")
    params = dict(parse_qsl(query, keep_blank_values=True))
    if request.method == "POST":
        form = await request.body()
        params.update(parse_qsl(form.decode("utf-8", "replace"), keep_blank_values=True))
    return params, next((op for op in OPERATIONS if op in params), None)


def call_record(
    operation: str | None, params: dict[str, str], at: float, authorised: bool
) -> dict[str, Any]:
    """What the call log keeps of one call: never the credentials."""
    return {
        "operation": operation,
        "params": {k: v for k, v in params.items() if k not in _SECRET_FIELDS},
        "at": at,
        "auth": authorised,
    }


class _ListingCache:
    """Encoded answers of synthetic listings, by (flavour, N, format, language); a few kept."""

    def __init__(self, size: int = 3) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[str, int, str, bool], bytes] = OrderedDict()

    def get(self, flavour: str, count: int, fmt: str, english: bool) -> bytes:
        key = (flavour, count, fmt, english)
        body = self.entries.get(key)
        if body is not None:
            self.entries.move_to_end(key)
            return body
        text = render.synthetic_listing("exim" if flavour == "exim" else "postfix", count)
        mess = TEXTS["queue"][0 if english else 1]
        detail: object
        if fmt == "lines":
            detail = render.as_lines(text)
        elif fmt == "objects":
            detail = [{"id": f"{i:06X}", "age": 300, "size": 350} for i in range(count)]
        else:
            detail = text
        body = _encode({"error": 0, "mess": mess, "detail": detail})
        del text, detail
        self.entries[key] = body
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return body


def _encode(answer: dict[str, Any]) -> bytes:
    # PHP's json_encode escapes non-ASCII as \uXXXX by default; so do we.
    return json.dumps(answer, separators=(",", ":")).encode("ascii")


def panel_text(key: str, english: bool) -> str:
    """A message of the panel's answers (TEXTS), in English or in Russian."""
    return TEXTS[key][0 if english else 1]


@dataclass(frozen=True)
class Admitted:
    """An authenticated call the panel's logic answers: its operation and its language."""

    operation: str
    english: bool

    def text(self, key: str) -> str:
        """A message of the answer in the call's language."""
        return panel_text(key, self.english)


def admit(
    params: dict[str, str], operation: str | None, user: User, english: bool
) -> Admitted | dict[str, Any]:
    """The call, admitted; else the panel's answer to a call it refuses before any
    operation runs: no ``mailserver`` module, a user who is not root, or no ``operation``.
    Shared by the simulated panel and the real-MTA panel."""
    if "mailserver" not in params:
        return {"error": ERROR_NO_MODULE, "mess": panel_text("no_module", english)}
    if user.role != "root":
        return {"error": 400, "mess": panel_text("no_perm", english)}
    if operation is None:
        return {"error": ERROR_NO_OPERATION, "mess": panel_text("no_operation", english)}
    return Admitted(operation, english)


def control_arguments(
    params: dict[str, str], no_relay: bool, text: Callable[[str], str]
) -> tuple[str, str] | dict[str, Any]:
    """``controll_msg``'s ``(id, command)``; else the panel's answer refusing them: no
    id (101), a command other than delete or reship (100), reship without a relay (102)."""
    message_id = params.get("id", "").strip()
    command = params.get("command", "")
    if not message_id:
        return {"error": 101, "mess": text("no_id")}
    if command not in ("delete", "reship"):
        return {"error": 100, "mess": text("bad_command")}
    if command == "reship" and no_relay:
        return {"error": 102, "mess": text("no_relay")}
    return message_id, command


class SimulatorApp:
    """The ASGI application serving every panel of the process."""

    def __init__(self, panels: list[Panel], settings: SimSettings) -> None:
        if not panels:
            raise ValueError("at least one panel is needed")
        self.panels = {p.name: p for p in panels}
        self.default = panels[0]
        self.settings = settings
        self.listings = _ListingCache()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan or websocket support needed
        path: str = scope["path"]
        panel = self.default
        if path.startswith("/panel/"):
            name, _, rest = path[len("/panel/") :].partition("/")
            found = self.panels.get(name)
            if found is None:
                response: Response = JSONResponse({"error": f"no panel named {name!r}"}, 404)
                await response(scope, receive, send)
                return
            panel, path = found, "/" + rest
        request = Request(scope, receive)
        method = scope["method"]
        if path == "/api/api.php":
            if method not in ("GET", "POST"):
                response = Response("method not allowed", 405)
            else:
                await self.api(panel, request, scope, receive, send)
                return
        elif path == "/healthz" and method == "GET":
            response = JSONResponse({"status": "ok", "panels": len(self.panels)})
        elif path.startswith("/_sim/"):
            response = await self.control(panel, path[len("/_sim/") :], request)
        else:
            response = JSONResponse({"error": "not found"}, 404)
        await response(scope, receive, send)

    # ------------------------------------------------------------------ panel API

    async def api(
        self, panel: Panel, request: Request, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Answer one ``/api/api.php`` call, with the panel's fault if one applies."""
        params, operation = await read_call(request)
        user = self.settings.authenticate(params)
        authorised = user is not None
        fault = panel.take_fault(operation)
        call = call_record(operation, params, self.settings.wall_clock(), authorised)
        if fault is not None:
            call["fault"] = True
        panel.calls.append(call)

        delay = self.settings.latency + (fault.latency if fault else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)

        response: Response
        if fault is not None and fault.close_connection:
            await _drop_connection(scope, receive, send)
            return
        if fault is not None and fault.status is not None:
            response = Response(
                _STATUS_HTML.format(code=fault.status), fault.status, media_type="text/html"
            )
        elif fault is not None and fault.html:
            response = Response(_PHP_ERROR_HTML, 200, media_type="text/html")
        elif fault is not None and fault.empty_body:
            response = Response(b"", 200, media_type="application/json")
        else:
            english = params.get("language") == "en"
            if not authorised:
                body = _encode({"code": 1, "message": "Not perm2"})
            elif (
                fault is not None
                and fault.listing_messages is not None
                and operation == "list_msg"
                and "mailserver" in params
                and user is not None
                and user.role == "root"
            ):
                body = self.listings.get(
                    panel.state.flavour,
                    fault.listing_messages,
                    self.settings.detail_format,
                    english,
                )
            else:
                assert user is not None
                body = _encode(self.answer(panel, params, operation, user, english))
            if fault is not None and fault.truncated_json:
                body = body[: max(1, min(len(body) - 1, len(body) // 2))]
            response = Response(body, 200, media_type="application/json")
        await response(scope, receive, send)

    def answer(
        self,
        panel: Panel,
        params: dict[str, str],
        operation: str | None,
        user: User,
        english: bool,
    ) -> dict[str, Any]:
        """The JSON answer of an authenticated call (the panel's logic, quirks included)."""
        call = admit(params, operation, user, english)
        if not isinstance(call, Admitted):
            return call
        text, operation = call.text, call.operation
        state = panel.state
        state.advance()
        wall_now = self.settings.wall_clock()
        flavour = state.flavour

        if operation == "list_msg":
            if state.counts.messages == 0:
                return {"error": 100, "mess": text("queue_empty")}
            detail: object
            if self.settings.detail_format == "objects":
                detail = render.listing_objects(state)
            else:
                listing = render.listing_text(state, wall_now, self.settings.zone)
                detail = (
                    render.as_lines(listing) if self.settings.detail_format == "lines" else listing
                )
            return {"error": 0, "mess": text("queue"), "detail": detail}

        if operation == "count_msg":
            return {"error": 0, "message": text("count"), "detail": state.counts.messages}

        if operation == "delete_frozen_msg":
            if flavour == "postfix":
                return {"error": 100, "message": text("no_frozen")}
            ids = state.delete_frozen()
            return {
                "error": 0,
                "message": text("frozen_deleted"),
                "detail": render.removed_lines("exim", ids),
            }

        if operation == "delete_all_msg":
            forced = "dellete_forse" in params
            if forced and flavour == "exim":
                return {"error": 100, "message": text("no_force")}
            ids = state.delete_all()
            output = (
                render.removed_lines("exim", ids)
                if flavour == "exim"
                else render.postsuper_total(len(ids))
            )
            return {"error": 0, "message": text("all_deleted"), "detail": output}

        if operation == "controll_msg":
            return self.control_message(state, params, text)

        # clamav / spamassassin
        command = params.get("command", "")
        if command not in ("status", "on", "off"):
            return {"error": 100, "mess": text("bad_command")}
        if command == "status":
            daemon = state.daemons[operation]
            key = "status"
        else:
            daemon = state.set_daemon(operation, command == "on")
            key = "started" if command == "on" else "stopped"
        return {
            "error": 0,
            "mess": text(key),
            "detail": render.daemon_status(operation, daemon, state, wall_now),
        }

    def control_message(
        self, state: PanelState, params: dict[str, str], text: Callable[[str], str]
    ) -> dict[str, Any]:
        """``controll_msg``: delete or reship one message, with what the MTA prints."""
        flavour = state.flavour
        checked = control_arguments(params, self.settings.no_relay, text)
        if isinstance(checked, dict):
            return checked
        message_id, command = checked
        if command == "reship":
            found = state.reship(message_id)
            output = ""
            if not found and flavour == "exim":
                output = f"Spool read error for {message_id}-H: No such file or directory\n"
            return {"error": 0, "mess": text("msg_reshipped"), "detail": output}
        found = state.delete(message_id)
        if flavour == "exim":
            if found:
                output = render.removed_lines("exim", [message_id])
            elif not _EXIM_ID.fullmatch(message_id):
                # tests/fixtures/exim-Mrm-malformed.txt: exim refuses the id outright.
                output = f"exim: malformed message id {message_id} after -Mrm option\n"
            else:
                output = render.exim_missing(message_id)
        else:
            output = (
                render.removed_lines("postfix", [message_id])
                if found
                else render.postsuper_total(0)
            )
        return {"error": 0, "mess": text("msg_deleted"), "detail": output}

    # ------------------------------------------------------------------ control API

    async def control(self, panel: Panel, what: str, request: Request) -> Response:
        """The ``/_sim/`` control API of one panel."""
        method = request.method
        state = panel.state
        data: Any = None
        if method == "POST":
            raw = await request.body()
            try:
                data = json.loads(raw) if raw.strip() else {}
            except ValueError:
                return JSONResponse({"error": "the body is not JSON"}, 400)
            if not isinstance(data, dict):
                return JSONResponse({"error": "the body must be a JSON object"}, 400)
        try:
            if what == "state" and method == "GET":
                return JSONResponse(self.state_of(panel))
            if what == "fault" and method == "POST":
                panel.fault = parse_fault(data)
                return JSONResponse({"fault": panel.fault.as_dict()})
            if what == "fault" and method == "DELETE":
                panel.fault = None
                return JSONResponse({"fault": None})
            if what == "fault" and method == "GET":
                return JSONResponse({"fault": panel.fault.as_dict() if panel.fault else None})
            if what == "calls" and method == "DELETE":
                panel.calls.clear()
                return JSONResponse({"calls": []})
            if what == "queue" and method == "POST":
                added = state.add_messages(**_queue_args(data))
                return JSONResponse({"added": added, "queue": state.summary()})
            if what == "daemon" and method == "POST":
                for name, value in daemon_args(data).items():
                    state.set_daemon(name, value)
                return JSONResponse({"daemons": _daemons(state)})
            if what == "pause" and method == "POST":
                paused = data.get("paused", True)
                if not isinstance(paused, bool):
                    raise ValueError("paused: must be true or false")
                state.set_paused(paused)
                return JSONResponse({"paused": state.paused})
            if what == "panels" and method == "GET":
                return JSONResponse({"panels": list(self.panels), "default": self.default.name})
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse({"error": f"no control endpoint {method} /_sim/{what}"}, 404)

    def state_of(self, panel: Panel) -> dict[str, Any]:
        """What ``GET /_sim/state`` answers."""
        state = panel.state
        state.advance()
        return {
            "panel": panel.name,
            "queue": state.summary(),
            "oldest_age_seconds": max(
                (state.now - m.arrival for m in state.messages.values()), default=None
            ),
            "daemons": _daemons(state),
            "calls": list(panel.calls),
            "flavour": state.flavour,
            "scenario": panel.scenario,
            "paused": state.paused,
            "sim_time": state.now,
            "fault": panel.fault.as_dict() if panel.fault else None,
        }


def _daemons(state: PanelState) -> dict[str, str]:
    return {name: "running" if d.running else "stopped" for name, d in state.daemons.items()}


def _queue_args(data: dict[str, Any]) -> dict[str, Any]:
    known = {"add", "frozen", "bounce", "age", "sender", "recipient", "size", "held"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(unknown)}")
    count = data.get("add", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1_000_000:
        raise ValueError("add: must be an integer between 0 and 1000000")
    args: dict[str, Any] = {"count": count}
    for key in ("frozen", "bounce", "held"):
        if key in data:
            if not isinstance(data[key], bool):
                raise ValueError(f"{key}: must be true or false")
            args[key] = data[key]
    if "age" in data:
        age = data["age"]
        if isinstance(age, bool) or not isinstance(age, int | float) or age < 0:
            raise ValueError("age: must be a non-negative number of seconds")
        args["age"] = float(age)
    for key in ("sender", "recipient"):
        if key in data:
            if not isinstance(data[key], str) or any(c.isspace() for c in data[key]):
                raise ValueError(f"{key}: must be an address without spaces")
            args[key] = data[key]
    if "size" in data:
        size = data["size"]
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size < 2**40:
            raise ValueError("size: must be a positive number of bytes")
        args["size"] = size
    return args


def daemon_args(data: dict[str, Any]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for name, value in data.items():
        if name not in DAEMONS:
            raise ValueError(f"unknown daemon {name!r}")
        if value not in ("running", "stopped"):
            raise ValueError(f"{name}: must be running or stopped")
        out[name] = value == "running"
    return out


async def _drop_connection(scope: Scope, receive: Receive, send: Send) -> None:
    """Close the TCP connection without any HTTP answer.

    Uvicorn answers 500 when an app fails before starting a response, so the fault
    reaches for the connection's transport through the bound ``receive`` method of
    uvicorn's request cycle and closes it.
    """
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None and hasattr(transport, "close"):
        transport.close()
        # Let uvicorn see the connection is gone, so it does not try to answer.
        for _ in range(3):
            await asyncio.sleep(0)
        return
    # Another server: start a response, then fail, which makes it abort the connection.
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise ConnectionAbortedError("close_connection fault")
