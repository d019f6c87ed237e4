"""The panel client: request shape, typed results, and one error reason per failure.

Transport faults are injected with respx. respx intercepts httpx's own transport
(httpcore), so these tests hand the client that transport instead of its default
:class:`~brainycp.panel.transport.PanelTransport`; the same faults over real sockets, through
the default transport, are in tests/test_transport.py, and the client against the real
simulator in tests/test_simulator.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from brainycp.config import ConfigError, PanelConfig, parse_config
from brainycp.panel.client import PanelClient
from brainycp.panel.errors import BrainyCPError, PanelAPIError
from tests.support import free_port, running, sim_args

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
        "login": "admin",
        "pass": PASSWORD,
        "mailserver": "1",
        "delete_all_msg": "1",
        "language": "en",
        "dellete_forse": "1",
    }


@respx.mock
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
    route = respx.post(URL).respond(json={"error": 0, "detail": 3})
    run(lambda c: c.count_msg(), credentials_style=style)
    request = route.calls.last.request
    form = form_of(request)
    assert present <= form.keys() and not absent & form.keys()
    assert PASSWORD not in str(request.url) and "login" not in str(request.url)


def test_an_unknown_credentials_style_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        make_panel(credentials_style="user")
    assert any(e.startswith("panels.web01.credentials_style:") for e in info.value.errors)


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


@respx.mock
@pytest.mark.parametrize(
    "good_id", ["1xW6VZ-0000xu-1S", "16VDhn-000000001bo-D342", "4jZ9BP4K3zzBydM"]
)
def test_controll_msg_accepts_exim_496_and_497_and_postfix_ids(good_id: str) -> None:
    route = respx.post(URL).respond(json={"error": 0, "mess": "done", "detail": ""})
    run(lambda c: c.controll_msg(good_id, "delete"))
    assert form_of(route.calls.last.request)["id"] == good_id


@pytest.mark.parametrize(
    "bad_id", ["", "x; rm -rf /", "../../etc", "a b", "ABCDE12345\n", "1xW6VZ-0000xu-1S\n"]
)
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
@pytest.mark.parametrize("code", [1, "1"])
def test_wrong_credentials_answer_is_auth(code: object) -> None:
    respx.post(URL).respond(json={"code": code, "message": "Not perm2"})
    assert failure(lambda c: c.count_msg()).reason == "auth"


@respx.mock
@pytest.mark.parametrize("code", [1000, 1001, 2, "1000"])
def test_other_codes_of_the_other_api_family_are_api_errors_with_the_code(code: object) -> None:
    respx.post(URL).respond(json={"code": code, "message": "No administrator rights"})
    error = failure(lambda c: c.count_msg())
    assert isinstance(error, PanelAPIError)
    assert error.reason == "api_error" and error.code == int(str(code))
    assert f"code {int(str(code))}" in error.detail


@respx.mock
@pytest.mark.parametrize("answer", [{"code": 0}, {"code": 0, "message": "ok", "detail": 5}])
def test_code_0_is_never_an_auth_failure(answer: dict[str, Any]) -> None:
    respx.post(URL).respond(json=answer)
    error = failure(lambda c: c.count_msg())
    assert error.reason == "bad_detail" and "code 0" in error.detail


@respx.mock
@pytest.mark.parametrize("code", ["x", None, 1.5, True, [1]])
def test_a_code_that_is_not_a_number_is_bad_detail(code: object) -> None:
    respx.post(URL).respond(json={"code": code, "message": "?"})
    assert failure(lambda c: c.count_msg()).reason == "bad_detail"


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
    error = failure(lambda c: c.count_msg())
    assert error.reason == "timeout" and error.detail == "timed out after 10s while reading"


@respx.mock
def test_a_panel_trickling_bytes_hits_the_whole_call_deadline() -> None:
    class Trickle(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b'{"error": 0, '
            for _ in range(100):
                await asyncio.sleep(0.05)
                yield b" "

    respx.post(URL).mock(return_value=httpx.Response(200, stream=Trickle()))
    error = failure(lambda c: c.count_msg(), timeout=0.3)
    assert error.reason == "timeout" and error.detail == "timed out after 0.3s while reading"


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
    route = respx.post(URL).mock(side_effect=httpx.ReadError("reset"))
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


# ---------------------------------------------------------------- against the real simulator


@pytest.fixture(scope="module")
def styled_sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One simulator process per ``--login-style``: style -> its base URL."""
    logs = tmp_path_factory.mktemp("styled-sims")
    with contextlib.ExitStack() as stack:
        urls = {}
        for style in ("both", "username", "login"):
            port = free_port()
            args = sim_args(port, "--users", f"admin:{PASSWORD}:root", "--login-style", style)
            url = f"http://127.0.0.1:{port}"
            stack.enter_context(
                running(args, log=logs / f"{style}.log", ready_url=f"{url}/healthz")
            )
            urls[style] = url
        yield urls


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

    result = asyncio.run(go())
    accepted = "both" in (panel_style, client_style) or panel_style == client_style
    if accepted:
        assert isinstance(result, int)
    else:
        assert result == "auth"
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
        parse_config(data)
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
    config = parse_config(
        {
            "defaults": {"username": "u", "password_env": "HOME", "tls_verify": False},
            "panels": panels,
        }
    )
    warned = [w for w in config.warnings if "tls_verify" in w]
    assert len(warned) == 2
    assert warned[0].startswith("panels.a.tls_verify") and warned[1].startswith("panels.b.")
