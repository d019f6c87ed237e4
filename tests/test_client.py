"""The panel client: request shape, typed results, and one error reason per failure.

Every call goes through the client's own transport (:class:`PanelTransport`) to a
scripted HTTP server on loopback (tests/panel_support.py), so answers and faults are the
bytes a panel would send. The transport's framing rules are in tests/test_transport.py,
and the client against the real simulator in tests/test_simulator.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from brainycp.config.errors import ConfigError
from brainycp.config.loader import parse_shared
from brainycp.config.panels import PanelConfig
from brainycp.panel.client import PanelClient
from brainycp.panel.connection import READ_HIGH_WATER
from brainycp.panel.errors import BrainyCPError, PanelAPIError
from brainycp.panel.transport import PanelTransport
from tests.harness import serving as serving_process
from tests.panel_support import (
    Reply,
    Script,
    Server,
    always,
    answer,
    form_of,
    in_turn,
    json_answer,
    run,
    serving,
    target_of,
)
from tests.support import sim_args

PASSWORD = "pw-Secret-42"
Use = Callable[[PanelClient], Awaitable[Any]]


def make_panel(**overrides: Any) -> PanelConfig:
    settings = {"url": "https://panel.test:8002", "username": "admin", "password": PASSWORD}
    settings.update(overrides)
    return parse_shared({"panels": {"web01": settings}}).panels["web01"]


def call(
    script: Script,
    use: Use,
    *,
    wrap: Callable[[PanelTransport], httpx.AsyncBaseTransport] | None = None,
    **overrides: Any,
) -> tuple[Any, Server]:
    """Serve ``script`` on loopback and ``use`` a client of it; its result and the server.

    ``wrap`` puts a test's own layer around the client's default transport.
    """

    async def go() -> tuple[Any, Server]:
        async with serving(script) as server:
            panel = make_panel(url=server.url, **overrides)
            transport = None if wrap is None else wrap(PanelTransport(max_connections=4))
            async with PanelClient(panel, transport=transport, retry_delay=(0.0, 0.01)) as client:
                return await use(client), server

    return run(go())


def result(script: Script, use: Use, **overrides: Any) -> Any:
    return call(script, use, **overrides)[0]


def failure(script: Script, use: Use, **overrides: Any) -> BrainyCPError:
    with pytest.raises(BrainyCPError) as info:
        call(script, use, **overrides)
    error = info.value
    assert error.panel == "web01"
    assert PASSWORD not in str(error) and PASSWORD not in repr(error)
    return error


def replying(value: object) -> Script:
    """Every request gets ``value`` as a JSON body, 200 OK."""
    return always(json_answer(value))


def test_requests_are_post_forms_with_english_and_vendor_names() -> None:
    _, server = call(
        replying({"error": 0, "message": "ok", "detail": ""}),
        lambda c: c.delete_all_msg(force=True),
    )
    (request,) = server.requests
    assert target_of(request) == b"POST /api/api.php HTTP/1.1"
    assert b"Content-Type: application/x-www-form-urlencoded\r\n" in request
    assert PASSWORD.encode() not in target_of(request)
    assert form_of(request) == {
        "username": "admin",
        "password": PASSWORD,
        "login": "admin",
        "pass": PASSWORD,
        "mailserver": "1",
        "delete_all_msg": "1",
        "language": "en",
        "dellete_forse": "1",
    }


@pytest.mark.parametrize(
    ("style", "present", "absent"),
    [
        ("username", {"username", "password"}, {"login", "pass"}),
        ("login", {"login", "pass"}, {"username", "password"}),
        ("both", {"username", "password", "login", "pass"}, set()),
    ],
)
def test_credentials_style_picks_the_pairs_sent(
    style: str, present: set[str], absent: set[str]
) -> None:
    _, server = call(
        replying({"error": 0, "detail": 3}), lambda c: c.count_msg(), credentials_style=style
    )
    request = server.requests[-1]
    form = form_of(request)
    assert present <= form.keys() and not absent & form.keys()
    assert PASSWORD.encode() not in target_of(request) and b"login" not in target_of(request)


def test_an_unknown_credentials_style_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        make_panel(credentials_style="user")
    assert any(e.startswith("panels.web01.credentials_style:") for e in info.value.errors)


def test_controll_msg_sends_id_and_command() -> None:
    outcome, server = call(
        replying({"error": 0, "mess": "done", "detail": "Message x removed"}),
        lambda c: c.controll_msg("1xW6VZ-0000xu-1S", "reship"),
    )
    form = form_of(server.requests[-1])
    assert (form["controll_msg"], form["id"], form["command"]) == (
        "1",
        "1xW6VZ-0000xu-1S",
        "reship",
    )
    assert outcome.message == "done" and outcome.applicable


@pytest.mark.parametrize(
    "good_id", ["1xW6VZ-0000xu-1S", "16VDhn-000000001bo-D342", "4jZ9BP4K3zzBydM"]
)
def test_controll_msg_accepts_exim_496_and_497_and_postfix_ids(good_id: str) -> None:
    _, server = call(
        replying({"error": 0, "mess": "done", "detail": ""}),
        lambda c: c.controll_msg(good_id, "delete"),
    )
    assert form_of(server.requests[-1])["id"] == good_id


@pytest.mark.parametrize(
    "bad_id", ["", "x; rm -rf /", "../../etc", "a b", "ABCDE12345\n", "1xW6VZ-0000xu-1S\n"]
)
def test_controll_msg_refuses_ids_that_are_not_queue_ids(bad_id: str) -> None:
    async def use(client: PanelClient) -> None:
        with pytest.raises(ValueError):
            await client.controll_msg(bad_id, "delete")

    _, server = call(replying({"error": 0}), use)
    assert server.requests == [] and server.connections == 0


@pytest.mark.parametrize(
    ("detail", "expected"), [(12, 12), ("12", 12), (" 7 \n", 7), (0, 0), (3.0, 3)]
)
def test_count_accepts_integers_and_numeric_strings(detail: object, expected: int) -> None:
    answer_ = {"error": 0, "message": "Number of messages", "detail": detail}
    assert result(replying(answer_), lambda c: c.count_msg()) == expected


@pytest.mark.parametrize("detail", ["many", None, -1, True, [1], "1.5"])
def test_count_with_a_non_number_is_bad_detail(detail: object) -> None:
    error = failure(replying({"error": 0, "detail": detail}), lambda c: c.count_msg())
    assert error.reason == "bad_detail"


@pytest.mark.parametrize(
    "detail",
    [
        " 6m   350 1xW6VZ-0000xu-1S <a@b>\n          c@d\n",
        [" 6m 350 x <a@b>", "   c@d"],
        [{"id": "x"}],
    ],
)
def test_list_msg_keeps_each_detail_shape(detail: object) -> None:
    body = json.dumps({"error": 0, "mess": "Queue", "detail": detail}).encode()
    listing = result(always(answer(body)), lambda c: c.list_msg())
    assert listing.detail == detail and not listing.empty
    assert listing.body_bytes == len(body)


def test_list_msg_code_100_is_an_empty_queue_not_a_failure() -> None:
    listing = result(replying({"error": 100, "mess": "Queue is empty"}), lambda c: c.list_msg())
    assert listing.empty and listing.detail == ""


def test_list_msg_with_mixed_list_is_bad_detail() -> None:
    error = failure(replying({"error": 0, "detail": ["line", {"id": 1}]}), lambda c: c.list_msg())
    assert error.reason == "bad_detail"


def test_delete_frozen_code_100_means_not_applicable() -> None:
    outcome = result(
        replying({"error": 100, "message": "no frozen state"}), lambda c: c.delete_frozen_msg()
    )
    assert outcome.applicable is False


def test_service_status_is_classified_by_the_panel_patterns() -> None:
    status = result(
        replying({"error": 0, "mess": "ok", "detail": "Active: inactive (dead) since Mon"}),
        lambda c: c.clamav("status"),
    )
    assert (status.daemon, status.state) == ("clamav", "stopped")


def test_service_status_matching_nothing_is_unknown() -> None:
    status = result(
        replying({"error": 0, "mess": "ok", "detail": "hmm"}), lambda c: c.spamassassin("status")
    )
    assert status.state == "unknown"


@pytest.mark.parametrize("code", [1, "1"])
def test_wrong_credentials_answer_is_auth(code: object) -> None:
    error = failure(replying({"code": code, "message": "Not perm2"}), lambda c: c.count_msg())
    assert error.reason == "auth"


@pytest.mark.parametrize("code", [1000, 1001, 2, "1000"])
def test_other_codes_of_the_other_api_family_are_api_errors_with_the_code(code: object) -> None:
    error = failure(
        replying({"code": code, "message": "No administrator rights"}), lambda c: c.count_msg()
    )
    assert isinstance(error, PanelAPIError)
    assert error.reason == "api_error" and error.code == int(str(code))
    assert f"code {int(str(code))}" in error.detail


@pytest.mark.parametrize("answer_", [{"code": 0}, {"code": 0, "message": "ok", "detail": 5}])
def test_code_0_is_never_an_auth_failure(answer_: dict[str, Any]) -> None:
    error = failure(replying(answer_), lambda c: c.count_msg())
    assert error.reason == "bad_detail" and "code 0" in error.detail


@pytest.mark.parametrize("code", ["x", None, 1.5, True, [1]])
def test_a_code_that_is_not_a_number_is_bad_detail(code: object) -> None:
    error = failure(replying({"code": code, "message": "?"}), lambda c: c.count_msg())
    assert error.reason == "bad_detail"


def test_code_400_is_permission() -> None:
    error = failure(replying({"error": 400, "mess": "Нет доступа"}), lambda c: c.list_msg())
    assert error.reason == "permission"


def test_other_codes_are_api_error_with_the_code_kept() -> None:
    error = failure(
        replying({"error": 102, "mess": "no relay"}),
        lambda c: c.controll_msg("1xW6VZ-0000xu-1S", "reship"),
    )
    assert isinstance(error, PanelAPIError)
    assert (error.reason, error.code, error.operation) == ("api_error", 102, "controll_msg")


HTML = "Content-Type: text/html\r\n"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (answer(b"<html><body>Bad Gateway</body></html>", status="502 Bad Gateway"), "http_status"),
        (answer(b"<html>PHP Fatal error</html>", headers=HTML), "not_json"),
        (answer(b""), "not_json"),
        (answer(b'{"error": 0, "detail": "tru'), "not_json"),
        (json_answer([1, 2]), "not_json"),
        (json_answer({"error": "zero"}), "bad_detail"),
        (json_answer({"detail": 3}), "bad_detail"),
    ],
    ids=["502", "html", "empty", "truncated-json", "json-list", "error-zero", "no-code"],
)
def test_garbage_answers_fail_with_their_own_reason(data: bytes, reason: str) -> None:
    assert failure(always(data), lambda c: c.count_msg()).reason == reason


def test_timeout_is_timeout() -> None:
    error = failure(always(b"", hang=True), lambda c: c.count_msg(), timeout="0.2s")
    assert error.reason == "timeout" and error.detail == "timed out after 0.2s while reading"


def test_a_panel_trickling_bytes_hits_the_whole_call_deadline() -> None:
    # A byte every 50 ms never trips a per-read timeout; only the call's own deadline
    # ends it (read to its end, the body would be invalid JSON: not_json after 5 s).
    start = b'{"error": 0, '
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(start) + 100)
    trickling = always(head + start, trickle=(b" ", 100, 0.05))
    error = failure(trickling, lambda c: c.count_msg(), timeout=0.3)
    assert error.reason == "timeout" and error.detail == "timed out after 0.3s while reading"


def test_tls_failure_is_tls() -> None:
    async def go() -> BrainyCPError:
        async with serving(always(answer()), tls=True) as server:
            async with PanelClient(make_panel(url=server.url, tls_verify=True)) as client:
                with pytest.raises(BrainyCPError) as info:
                    await client.count_msg()
            assert server.requests == []
            return info.value

    error = run(go())
    assert error.reason == "tls"
    assert error.detail == "certificate verify failed: self-signed certificate"


def test_reads_retry_once_after_a_connect_failure() -> None:
    script = in_turn(Reply(b"", close=True), Reply(json_answer({"error": 0, "detail": 5})))
    count, server = call(script, lambda c: c.count_msg())
    assert count == 5
    assert len(server.requests) == 2 and server.connections == 2


def test_reads_give_up_after_the_one_retry() -> None:
    error, server = call(always(b"", close=True), _caught(lambda c: c.count_msg()))
    assert error.reason == "connect"
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(Reply(b"", close=True), "connect"), (Reply(b"HELLO\r\n\r\n", close=True), "protocol")],
    ids=["closed", "malformed"],
)
@pytest.mark.parametrize(
    "use",
    [
        lambda c: c.delete_frozen_msg(),
        lambda c: c.delete_all_msg(),
        lambda c: c.controll_msg("1xW6VZ-0000xu-1S", "delete"),
        lambda c: c.clamav("off"),
    ],
    ids=["delete_frozen_msg", "delete_all_msg", "controll_msg", "clamav-off"],
)
def test_state_changing_operations_are_never_retried(use: Use, fault: Reply, reason: str) -> None:
    error, server = call(lambda _n, _c, _r: fault, _caught(use))
    assert error.reason == reason and PASSWORD not in str(error)
    assert len(server.requests) == 1


class _CountingBody(httpx.AsyncByteStream):
    """The transport's body, counting the bytes the client took from it."""

    def __init__(self, inner: httpx.AsyncByteStream, taken: list[int]) -> None:
        self._inner = inner
        self._taken = taken

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self._inner:
            self._taken.append(len(piece))
            yield piece

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Counting(httpx.AsyncBaseTransport):
    """The client's PanelTransport, with each answer's body counted on its way out."""

    def __init__(self, inner: PanelTransport, taken: list[int]) -> None:
        self._inner = inner
        self._taken = taken

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CountingBody(response.stream, self._taken),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def test_body_cap_is_enforced_while_streaming() -> None:
    taken: list[int] = []
    start = b'{"error": 0, "detail": "'
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (
        len(start),
        start,
    )
    endless = always(head, endless=b"%x\r\n%s\r\n" % (65536, b"x" * 65536))
    error = failure(
        endless,
        lambda c: c.list_msg(),
        max_response_bytes="1MiB",
        wrap=lambda inner: _Counting(inner, taken),
    )
    assert error.reason == "too_large"
    # Stopped at the cap, plus at most what one read of the connection buffer holds;
    # the server would have gone on for ever.
    assert 1024**2 < sum(taken) <= 1024**2 + 2 * READ_HIGH_WATER


def test_declared_length_over_the_cap_is_refused_before_reading() -> None:
    body = json.dumps({"error": 0, "detail": "x" * 5000}).encode()
    error = failure(always(answer(body)), lambda c: c.list_msg(), max_response_bytes=1000)
    assert error.reason == "too_large"
    assert error.detail == f"Content-Length {len(body)} over the 1000-byte cap"


def test_invalid_arguments_are_refused_before_any_call() -> None:
    async def use(client: PanelClient) -> None:
        with pytest.raises(ValueError):
            await client.service("postfix", "status")
        with pytest.raises(ValueError):
            await client.clamav("restart")  # type: ignore[arg-type]

    _, server = call(replying({"error": 0}), use)
    assert server.requests == [] and server.connections == 0


def _caught(use: Use) -> Use:
    """``use``, returning the BrainyCPError it raises (so the server can be inspected too)."""

    async def caught(client: PanelClient) -> BrainyCPError:
        with pytest.raises(BrainyCPError) as info:
            await use(client)
        return info.value

    return caught


# ---------------------------------------------------------------- against the real simulator


@pytest.fixture(scope="module")
def styled_sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One simulator process per ``--login-style``: style -> its base URL."""
    logs = tmp_path_factory.mktemp("styled-sims")
    with contextlib.ExitStack() as stack:
        urls = {}
        for style in ("both", "username", "login"):
            args = sim_args(0, "--users", f"admin:{PASSWORD}:root", "--login-style", style)
            urls[style] = stack.enter_context(serving_process(args, log=logs / f"{style}.log")).url
        yield urls


@pytest.mark.e2e
@pytest.mark.parametrize("panel_style", ["both", "username", "login"])
@pytest.mark.parametrize("client_style", ["both", "username", "login"])
def test_a_panel_reading_one_credential_pair_accepts_exactly_the_matching_styles(
    styled_sims: dict[str, str], panel_style: str, client_style: str
) -> None:
    async def go() -> int | str:
        panel = make_panel(url=styled_sims[panel_style], credentials_style=client_style)
        async with PanelClient(panel) as client:
            try:
                return await client.count_msg()
            except BrainyCPError as exc:
                assert PASSWORD not in str(exc)
                return exc.reason

    outcome = asyncio.run(go())
    accepted = "both" in (panel_style, client_style) or panel_style == client_style
    if accepted:
        assert isinstance(outcome, int)
    else:
        assert outcome == "auth"
    calls = httpx.get(f"{styled_sims[panel_style]}/_sim/state").json()["calls"]
    assert calls[-1]["auth"] is accepted
    assert not {"username", "password", "login", "pass"} & calls[-1]["params"].keys()


# ---------------------------------------------------------------- the keys of this client

FINGERPRINT = "sha256:" + ":".join(["AB"] * 32)


@pytest.mark.parametrize(
    "spelling",
    [FINGERPRINT, "ab" * 32, "SHA256:" + "Ab" * 32, ":".join(["ab"] * 32), f"  {FINGERPRINT} "],
)
def test_tls_fingerprint_is_read_in_any_spelling(spelling: str) -> None:
    panel = make_panel(tls_fingerprint=spelling)
    assert panel.tls_fingerprint == FINGERPRINT
    assert panel.tls_fingerprint_bytes == bytes([0xAB]) * 32


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("sha256:AB:CD", "64 hex digits, this one has 4"),
        ("ZZ" * 32, "hex digits"),
        ("sha1:" + "ab" * 20, "only sha256"),
        (42, "must be a string"),
    ],
)
def test_a_bad_tls_fingerprint_is_a_config_error_naming_the_key(value: object, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_panel(tls_fingerprint=value)
    (line,) = [e for e in info.value.errors if "tls_fingerprint" in e]
    assert line.startswith("panels.web01.tls_fingerprint:") and words in line


def test_a_bad_tls_fingerprint_under_defaults_names_defaults() -> None:
    data = {
        "defaults": {"tls_fingerprint": "abc"},
        "panels": {"web01": {"url": "https://p", "username": "a", "password": "b"}},
    }
    with pytest.raises(ConfigError) as info:
        parse_shared(data)
    assert any(e.startswith("defaults.tls_fingerprint:") for e in info.value.errors)


def test_a_fingerprint_on_an_http_panel_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        make_panel(url="http://panel.test:8002", tls_fingerprint=FINGERPRINT)
    assert any(e.startswith("panels.web01.tls_fingerprint:") for e in info.value.errors)


def test_tls_verify_false_warns_once_per_https_panel_and_not_when_pinned() -> None:
    panels = {
        "a": {"url": "https://a.test"},
        "b": {"url": "https://b.test"},
        "c": {"url": "https://c.test", "tls_fingerprint": FINGERPRINT},
        "d": {"url": "http://d.test"},
    }
    config = parse_shared(
        {
            "defaults": {"username": "u", "password_env": "HOME", "tls_verify": False},
            "panels": panels,
        }
    )
    warned = [w for w in config.warnings if "tls_verify" in w]
    assert len(warned) == 2
    assert warned[0].startswith("panels.a.tls_verify") and warned[1].startswith("panels.b.")
