"""The panel client: request shape, typed results, and one error reason per failure.

Transport faults are injected with respx. respx intercepts httpx's own transport
(httpcore), so these tests hand the client that transport instead of its default
:class:`~brainycp.transport.PanelTransport`; the same faults over real sockets, through
the default transport, are in tests/test_transport.py, and the client against the real
simulator in tests/test_simulator.py.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from brainycp.client import PanelClient
from brainycp.config import PanelConfig, parse_config
from brainycp.errors import BrainyCPError, PanelAPIError

URL = "https://panel.test:8002/api/api.php"
PASSWORD = "pw-Secret-42"


def make_panel(**overrides: Any) -> PanelConfig:
    settings = {"url": "https://panel.test:8002", "username": "admin", "password": PASSWORD}
    settings.update(overrides)
    return parse_config({"panels": {"web01": settings}}).panels["web01"]


def run(coro_factory: Callable[[PanelClient], Any], **overrides: Any) -> Any:
    async def go() -> Any:
        panel = make_panel(**overrides)
        transport = httpx.AsyncHTTPTransport()  # what respx patches
        async with PanelClient(panel, transport=transport, retry_delay=(0.0, 0.01)) as client:
            return await coro_factory(client)

    return asyncio.run(go())


def form_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def failure(coro_factory: Callable[[PanelClient], Any], **overrides: Any) -> BrainyCPError:
    with pytest.raises(BrainyCPError) as info:
        run(coro_factory, **overrides)
    error = info.value
    assert error.panel == "web01"
    assert PASSWORD not in str(error) and PASSWORD not in repr(error)
    return error


@respx.mock
def test_requests_are_post_forms_with_english_and_vendor_names() -> None:
    route = respx.post(URL).respond(json={"error": 0, "message": "ok", "detail": ""})
    run(lambda c: c.delete_all_msg(force=True))
    request = route.calls.last.request
    form = form_of(request)
    assert request.method == "POST"
    assert PASSWORD not in str(request.url)
    assert form == {
        "username": "admin",
        "password": PASSWORD,
        "mailserver": "1",
        "delete_all_msg": "1",
        "language": "en",
        "dellete_forse": "1",
    }


@respx.mock
def test_controll_msg_sends_id_and_command() -> None:
    route = respx.post(URL).respond(
        json={"error": 0, "mess": "done", "detail": "Message x removed"}
    )
    result = run(lambda c: c.controll_msg("1xW6VZ-0000xu-1S", "reship"))
    form = form_of(route.calls.last.request)
    assert (form["controll_msg"], form["id"], form["command"]) == (
        "1",
        "1xW6VZ-0000xu-1S",
        "reship",
    )
    assert result.message == "done" and result.applicable


@pytest.mark.parametrize("bad_id", ["", "x; rm -rf /", "../../etc", "a b"])
def test_controll_msg_refuses_ids_that_are_not_queue_ids(bad_id: str) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(URL).respond(json={"error": 0})
        with pytest.raises(ValueError):
            run(lambda c: c.controll_msg(bad_id, "delete"))
        assert not route.called


@respx.mock
@pytest.mark.parametrize(
    ("detail", "expected"), [(12, 12), ("12", 12), (" 7 \n", 7), (0, 0), (3.0, 3)]
)
def test_count_accepts_integers_and_numeric_strings(detail: object, expected: int) -> None:
    respx.post(URL).respond(json={"error": 0, "message": "Number of messages", "detail": detail})
    assert run(lambda c: c.count_msg()) == expected


@respx.mock
@pytest.mark.parametrize("detail", ["many", None, -1, True, [1], "1.5"])
def test_count_with_a_non_number_is_bad_detail(detail: object) -> None:
    respx.post(URL).respond(json={"error": 0, "detail": detail})
    assert failure(lambda c: c.count_msg()).reason == "bad_detail"


@respx.mock
@pytest.mark.parametrize(
    "detail",
    [
        " 6m   350 1xW6VZ-0000xu-1S <a@b>\n          c@d\n",
        [" 6m 350 x <a@b>", "   c@d"],
        [{"id": "x"}],
    ],
)
def test_list_msg_keeps_each_detail_shape(detail: object) -> None:
    respx.post(URL).respond(json={"error": 0, "mess": "Queue", "detail": detail})
    listing = run(lambda c: c.list_msg())
    assert listing.detail == detail and not listing.empty and listing.body_bytes > 0


@respx.mock
def test_list_msg_code_100_is_an_empty_queue_not_a_failure() -> None:
    respx.post(URL).respond(json={"error": 100, "mess": "Queue is empty"})
    listing = run(lambda c: c.list_msg())
    assert listing.empty and listing.detail == ""


@respx.mock
def test_list_msg_with_mixed_list_is_bad_detail() -> None:
    respx.post(URL).respond(json={"error": 0, "detail": ["line", {"id": 1}]})
    assert failure(lambda c: c.list_msg()).reason == "bad_detail"


@respx.mock
def test_delete_frozen_code_100_means_not_applicable() -> None:
    respx.post(URL).respond(json={"error": 100, "message": "no frozen state"})
    result = run(lambda c: c.delete_frozen_msg())
    assert result.applicable is False


@respx.mock
def test_service_status_is_classified_by_the_panel_patterns() -> None:
    respx.post(URL).respond(
        json={"error": 0, "mess": "ok", "detail": "Active: inactive (dead) since Mon"}
    )
    status = run(lambda c: c.clamav("status"))
    assert (status.daemon, status.state) == ("clamav", "stopped")


@respx.mock
def test_service_status_matching_nothing_is_unknown() -> None:
    respx.post(URL).respond(json={"error": 0, "mess": "ok", "detail": "hmm"})
    assert run(lambda c: c.spamassassin("status")).state == "unknown"


@respx.mock
def test_wrong_credentials_answer_is_auth() -> None:
    respx.post(URL).respond(json={"code": 1, "message": "Not perm2"})
    assert failure(lambda c: c.count_msg()).reason == "auth"


@respx.mock
def test_code_400_is_permission() -> None:
    respx.post(URL).respond(json={"error": 400, "mess": "Нет доступа"})
    assert failure(lambda c: c.list_msg()).reason == "permission"


@respx.mock
def test_other_codes_are_api_error_with_the_code_kept() -> None:
    respx.post(URL).respond(json={"error": 102, "mess": "no relay"})
    error = failure(lambda c: c.controll_msg("1xW6VZ-0000xu-1S", "reship"))
    assert isinstance(error, PanelAPIError)
    assert (error.reason, error.code, error.operation) == ("api_error", 102, "controll_msg")


@respx.mock
@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx.Response(502, html="<html><body>Bad Gateway</body></html>"), "http_status"),
        (httpx.Response(200, html="<html>PHP Fatal error</html>"), "not_json"),
        (httpx.Response(200, content=b""), "not_json"),
        (httpx.Response(200, content=b'{"error": 0, "detail": "tru'), "not_json"),
        (httpx.Response(200, json=[1, 2]), "not_json"),
        (httpx.Response(200, json={"error": "zero"}), "bad_detail"),
        (httpx.Response(200, json={"detail": 3}), "bad_detail"),
    ],
)
def test_garbage_answers_fail_with_their_own_reason(response: httpx.Response, reason: str) -> None:
    respx.post(URL).mock(return_value=response)
    assert failure(lambda c: c.count_msg()).reason == reason


@respx.mock
def test_timeout_is_timeout() -> None:
    respx.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    assert failure(lambda c: c.count_msg()).reason == "timeout"


@respx.mock
def test_a_panel_trickling_bytes_hits_the_whole_call_deadline() -> None:
    class Trickle(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b'{"error": 0, '
            for _ in range(100):
                await asyncio.sleep(0.05)
                yield b" "

    respx.post(URL).mock(return_value=httpx.Response(200, stream=Trickle()))
    assert failure(lambda c: c.count_msg(), timeout=0.3).reason == "timeout"


@respx.mock
def test_tls_failure_is_tls() -> None:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate")
    error = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]")
    error.__cause__ = cause
    respx.post(URL).mock(side_effect=error)
    assert failure(lambda c: c.count_msg()).reason == "tls"


@respx.mock
def test_reads_retry_once_after_a_connect_failure() -> None:
    route = respx.post(URL).mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.Response(200, json={"error": 0, "detail": 5}),
        ]
    )
    assert run(lambda c: c.count_msg()) == 5
    assert route.call_count == 2


@respx.mock
def test_reads_give_up_after_the_one_retry() -> None:
    route = respx.post(URL).mock(side_effect=httpx.ConnectError("refused"))
    assert failure(lambda c: c.count_msg()).reason == "connect"
    assert route.call_count == 2


@respx.mock
@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.delete_frozen_msg(),
        lambda c: c.delete_all_msg(),
        lambda c: c.controll_msg("1xW6VZ-0000xu-1S", "delete"),
        lambda c: c.clamav("off"),
    ],
)
def test_state_changing_operations_are_never_retried(call: Callable[[PanelClient], Any]) -> None:
    route = respx.post(URL).mock(side_effect=httpx.RemoteProtocolError("reset"))
    assert failure(call).reason == "connect"
    assert route.call_count == 1


@respx.mock
def test_body_cap_is_enforced_while_streaming() -> None:
    consumed = []

    class Endless(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b'{"error": 0, "detail": "'
            for _ in range(100_000):  # 6.4 GB if read to the end
                consumed.append(1)
                yield b"x" * 65536

    respx.post(URL).mock(return_value=httpx.Response(200, stream=Endless()))
    assert failure(lambda c: c.list_msg(), max_response_bytes="1MiB").reason == "too_large"
    assert len(consumed) <= 20  # stopped near 1 MiB, not after reading everything


@respx.mock
def test_declared_length_over_the_cap_is_refused_before_reading() -> None:
    body = json.dumps({"error": 0, "detail": "x" * 5000}).encode()
    respx.post(URL).mock(return_value=httpx.Response(200, content=body))
    assert failure(lambda c: c.list_msg(), max_response_bytes=1000).reason == "too_large"


def test_invalid_arguments_are_refused_before_any_call() -> None:
    with pytest.raises(ValueError):
        run(lambda c: c.service("postfix", "status"))
    with pytest.raises(ValueError):
        run(lambda c: c.clamav("restart"))  # type: ignore[arg-type]
