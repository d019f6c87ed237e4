"""Hypothesis over every route of both apps: paths, methods, query strings, headers, bodies.

Requests go straight to the ASGI app (no client in between to tidy them up), with
whatever bytes a hostile client could put on the wire. Whatever arrives: no 5xx
(except the documented 503 when the remediator's journal is down), every error
the remediator gives is JSON with a reason, and ``/metrics`` still renders after.
The routes come from the apps themselves, so a route added later is covered too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from exporter import settings as exporter_settings
from exporter.app import create_app
from exporter.poller import initial_state
from remediator.app import Remediator
from remediator.journal import Journal
from remediator.metrics import Stats
from remediator.runner import Runner
from remediator.settings.config import parse_config

TOKEN = "hypothesis-token"
METHODS = ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "G\u00e9T", "")


class Answer:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = b""


async def call(
    app: Any, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> Answer:
    """One request as uvicorn would hand it over (path percent-decoded, the rest raw)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 9864),
    }
    chunks = [body[:7], body[7:]] if len(body) > 7 else [body]
    sent_all = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        await sent_all.wait()
        return {"type": "http.disconnect"}

    answer = Answer()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = dict(message.get("headers", []))
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")
            if not message.get("more_body"):
                sent_all.set()

    try:
        await app(scope, receive, send)
    except Exception as exc:  # Starlette re-raises after its 500: that is the failure
        raise AssertionError(f"{method} {path!r}?{query!r} raised {exc!r}") from exc
    return answer


def route_paths(app: Any) -> list[str]:
    return [r.path for r in app.routes if isinstance(r, Route)]


# ------------------------------------------------------------------------------ strategies

header_value = st.binary(max_size=60).map(lambda b: bytes(c for c in b if c not in b"\r\n\x00"))
any_text = st.text(max_size=40)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([10**400, 2**64, 2**64 - 1, 2**53 + 1, -1, 0]),
    st.floats(allow_nan=False),
)


@st.composite
def query_strings(draw: st.DrawFn) -> bytes:
    keys = st.one_of(
        st.sampled_from(["limit", "panel", "rule", "outcome", "target", "module", "x"]),
        any_text,
    )
    values = st.one_of(
        st.sampled_from(["", "1", "100", "10000", "10001", "0", "-1", "\u00b2", "\u0663", "1e3"]),
        any_text,
        st.integers().map(str),
    )
    pairs = draw(st.lists(st.tuples(keys, values), max_size=4))
    raw = draw(st.binary(max_size=20))
    parts = [
        quote_from_bytes(k.encode("utf-8", "surrogatepass"))
        + "="
        + quote_from_bytes(v.encode("utf-8", "surrogatepass"))
        for k, v in pairs
    ]
    text = "&".join(parts).encode()
    return draw(st.sampled_from([text, text + b"&" + raw, raw]))


def alerts() -> st.SearchStrategy[dict[str, Any]]:
    labels = st.dictionaries(
        st.sampled_from(["alertname", "panel", "severity", "x\n", "\u00e9"]),
        st.one_of(st.sampled_from(["X", "Y", "web01", "nope", "a\nb", "X\n", ""]), any_text),
        max_size=4,
    )
    return st.fixed_dictionaries(
        {
            "labels": st.one_of(labels, st.just("x"), st.none()),
            "startsAt": st.one_of(st.sampled_from(["2026-11-25T08:00:00Z", ""]), any_text),
        },
        optional={
            "status": st.sampled_from(["firing", "resolved", "other", 3]),
            "fingerprint": st.one_of(any_text, numbers),
            "annotations": st.dictionaries(any_text, any_text, max_size=2),
        },
    )


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, any_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(any_text, inner)),
    max_leaves=10,
)
notifications = st.fixed_dictionaries(
    {
        "version": st.sampled_from(["4", 4, "3", None]),
        "status": st.sampled_from(["firing", "resolved", "x"]),
        "alerts": st.one_of(st.lists(alerts(), max_size=4), json_values),
    },
    optional={
        "truncatedAlerts": st.one_of(numbers, any_text, st.none()),
        "receiver": st.one_of(any_text, numbers),
        "groupLabels": st.one_of(st.dictionaries(any_text, any_text, max_size=2), json_values),
        "commonLabels": json_values,
    },
)


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


bodies = st.one_of(
    notifications.map(encode),
    json_values.map(encode),
    st.binary(max_size=200),
    st.just(b"[" * 2000),
    st.just(b'{"version": "4", "truncatedAlerts": 1' + b"0" * 400 + b"}"),
)


@st.composite
def header_lists(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    auth = st.sampled_from(
        [
            f"Bearer {TOKEN}".encode(),
            b"Bearer nope",
            b"Basic !!!",
            b"Basic \xe9\xe9",
            b"Basic YW06cHc=",
            b"bearer",
        ]
    )
    content_type = st.sampled_from(
        [b"application/json", b"application/json; charset=utf-8", b"text/plain", b"\xff"]
    )
    content_length = st.sampled_from([b"\xc2\xb2", b"9" * 30, b"1" + b"0" * 5000, b"-1", b"0"])
    headers = []
    if draw(st.booleans()):
        headers.append((b"authorization", draw(st.one_of(auth, header_value))))
    if draw(st.booleans()):
        headers.append((b"content-type", draw(st.one_of(content_type, header_value))))
    if draw(st.booleans()):
        headers.append((b"content-length", draw(st.one_of(content_length, header_value))))
    names = st.sampled_from([b"accept", b"x-forwarded-for", b"host", b"cookie", b"range"])
    headers += draw(st.lists(st.tuples(names, header_value), max_size=3))
    return headers


def paths(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(known),
        st.sampled_from(known).map(lambda p: p + "/"),
        st.binary(max_size=30).map(lambda b: "/" + unquote(quote_from_bytes(b))),
    )


@dataclass
class Request:
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    async def to(self, app: Any) -> Answer:
        return await call(app, self.method, self.path, self.query, self.headers, self.body)

    def shown(self) -> tuple[Any, ...]:
        """What a failure shows of the request (the start of its body)."""
        return (self.method, self.path, self.query, self.headers, self.body[:200])


@st.composite
def requests(draw: st.DrawFn, known: list[str], body: st.SearchStrategy[bytes]) -> Request:
    """Any request to one of the ``known`` paths or any other, with a ``body``."""
    return Request(
        draw(st.sampled_from(METHODS)),
        draw(paths(known)),
        draw(query_strings()),
        draw(header_lists()),
        draw(body),
    )


def fuzzing(max_examples: int) -> settings:
    """The settings of a test over whole requests to an app (a module fixture)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# ------------------------------------------------------------------------------ remediator


def make_remediator(tmp: Path) -> Remediator:
    (tmp / "token").write_text(TOKEN)
    config = parse_config(
        {
            "panels": {
                "web01": {"url": "http://127.0.0.1:9", "username": "a", "password": "b",
                          "timeout": "1s"},
            },
            "remediator": {
                "auth": {"bearer_token_file": str(tmp / "token")},
                "state_file": str(tmp / "s.sqlite"),
                "rate_limit": {"max_actions": 100000, "per": "1h"},
                "rules": [
                    {"name": "preview", "matchers": ['alertname="X"'], "action": "delete_frozen",
                     "dry_run": True, "cooldown": "0s"},
                    {"name": "regex", "matchers": ['alertname=~"Y|X.+"', 'severity!~"a.*"'],
                     "action": "delete_frozen", "cooldown": "0s"},
                ],
            },
        },
        require_auth=True,
    )  # fmt: skip
    journal = Journal(config.remediator.state_file)
    stats = Stats()
    rules = {r.name: r for r in config.remediator.rules}
    runner = Runner(journal, config.panels, rules, stats, max_concurrent=2, action_timeout=2)
    return Remediator(config, journal, runner, stats)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def remediator_app(
    tmp_path_factory: pytest.TempPathFactory, loop: asyncio.AbstractEventLoop
) -> Iterator[tuple[Remediator, Any]]:
    rem = make_remediator(tmp_path_factory.mktemp("routes"))
    yield rem, rem.app()
    loop.run_until_complete(rem.runner.close())
    rem.journal.close()


REMEDIATOR_PATHS = ["/webhook", "/actions", "/metrics", "/healthz", "/"]


@fuzzing(max_examples=400)
@given(data=st.data())
def test_no_route_of_the_remediator_answers_5xx(
    remediator_app: tuple[Remediator, Any], loop: asyncio.AbstractEventLoop, data: st.DataObject
) -> None:
    _, app = remediator_app
    known = sorted(set(route_paths(app)) | set(REMEDIATOR_PATHS))
    request = data.draw(requests(known, bodies))
    answer = loop.run_until_complete(request.to(app))
    assert answer.status < 500, (request.shown(), answer.body[:300])
    if answer.status >= 400 and request.method != "HEAD":
        reason = json.loads(answer.body)["error"]
        assert isinstance(reason, str) and reason
    metrics = loop.run_until_complete(call(app, "GET", "/metrics", b"", [], b""))
    assert metrics.status == 200


def test_odd_actions_parameters_are_400_with_a_reason(
    remediator_app: tuple[Remediator, Any], loop: asyncio.AbstractEventLoop
) -> None:
    _, app = remediator_app
    for query in (
        b"limit=%C2%B2",  # superscript two: str.isdigit() says yes, int() says no
        b"limit=%D9%A3",  # Arabic-Indic three
        b"limit=0",
        b"limit=10001",
        b"limit=" + b"9" * 5000,
        b"limit=1&limit=2",
        b"outcome=nonsense",
        b"lmit=5",
        b"panel=" + b"x" * 300,
    ):
        answer = loop.run_until_complete(call(app, "GET", "/actions", query, [], b""))
        assert answer.status == 400, (query, answer.body)
        assert json.loads(answer.body)["error"]
    ok = loop.run_until_complete(call(app, "GET", "/actions", b"limit=5&panel=web01", [], b""))
    assert ok.status == 200 and "actions" in json.loads(ok.body)
    for method, path, status in (("GET", "/nope", 404), ("DELETE", "/actions", 405)):
        answer = loop.run_until_complete(call(app, method, path, b"", [], b""))
        assert answer.status == status and json.loads(answer.body)["error"]


def test_truncated_alerts_beyond_uint64_are_refused_and_metrics_keep_rendering(
    tmp_path: Path,
) -> None:
    rem = make_remediator(tmp_path)
    app = rem.app()
    headers = [
        (b"authorization", f"Bearer {TOKEN}".encode()),
        (b"content-type", b"application/json"),
    ]
    huge = b'{"version": "4", "status": "firing", "alerts": [], "truncatedAlerts": 1'
    huge += b"0" * 400 + b"}"
    most = encode({"version": "4", "status": "firing", "alerts": [], "truncatedAlerts": 2**64 - 1})

    async def scenario() -> list[Answer]:
        answers = [await call(app, "POST", "/webhook", b"", headers, huge)]
        answers += [await call(app, "POST", "/webhook", b"", headers, most) for _ in range(3)]
        return [*answers, await call(app, "GET", "/metrics", b"", [], b"")]

    refused, *accepted, metrics = asyncio.run(scenario())
    assert refused.status == 422 and b"truncatedAlerts" in refused.body
    assert [a.status for a in accepted] == [200, 200, 200]
    assert metrics.status == 200
    assert b"brainycp_remediator_truncated_alerts_total 5.5340232221128655e+19" in metrics.body


def test_a_journal_that_cannot_be_read_is_a_json_503(tmp_path: Path) -> None:
    rem = make_remediator(tmp_path)
    app = rem.app()
    rem.journal.close()

    async def both() -> list[Answer]:
        return [await call(app, "GET", path, b"", [], b"") for path in ("/actions", "/")]

    for answer in asyncio.run(both()):
        assert answer.status == 503 and "journal" in json.loads(answer.body)["error"]


# ------------------------------------------------------------------------------ exporter


@pytest.fixture(scope="module")
def exporter_app() -> Any:
    config = exporter_settings.parse_config(
        {
            "panels": {
                name: {"url": "http://127.0.0.1:9", "username": "a", "password": "b"}
                for name in ("web01", "web02")
            }
        }
    )
    return create_app(initial_state(config))


@fuzzing(max_examples=300)
@given(data=st.data())
def test_no_route_of_the_exporter_answers_5xx(
    exporter_app: Any, loop: asyncio.AbstractEventLoop, data: st.DataObject
) -> None:
    known = sorted(set(route_paths(exporter_app)) | {"/", "/metrics", "/healthz"})
    request = data.draw(requests(known, st.binary(max_size=100)))
    answer = loop.run_until_complete(request.to(exporter_app))
    assert answer.status < 500, (request.shown(), answer.body[:300])
    metrics = loop.run_until_complete(call(exporter_app, "GET", "/metrics", b"", [], b""))
    assert metrics.status == 200
