"""Rule matchers match exactly what Alertmanager's matchers match (checked against the real one)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest

from brainycp.config.errors import ConfigError
from remediator.settings.config import parse_config
from remediator.settings.matchers import Matcher
from tests.support import alertmanager_args, require_binary, serving_on_free_port

# Matchers as a rule would write them (the text inside the YAML string).
MATCHERS = [
    'x=~"abc"',
    'x=~"a.c"',
    'x=~"(?s)a.c"',
    'x=~"abc$"',
    'x=~"^abc"',
    r'x=~"\d+"',
    'x=~"[[:digit:]]+"',
    r'x=~"\w+"',
    r'x=~"\pL+"',
    'x=~"(?i)ABC"',
    'x=~"a|ab"',
    'x=~".*"',
    'x=~".+"',
    'x=~"[^a]"',
    r'x=~"a\.c"',
    r'x=~"a\\c"',
    r'x=~"a\nb"',
    'x=~"(a+)+$"',
    'x=~"é+"',
    'x!~"abc"',
    'x="abc"',
    'x!="abc"',
    "x=abc",
]
VALUES = [
    "abc",
    "abc\n",
    "\nabc",
    "a\nc",
    "a\nb",
    "ABC",
    "123",
    "\u0661\u0662\u0663",  # Arabic-Indic digits: Python's \d matches them, Go's does not
    "ééé",
    "ab",
    "a",
    "a.c",
    "a\\c",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
]


@pytest.mark.e2e
def test_matchers_agree_with_a_real_alertmanager(tmp_path: Path) -> None:
    """Alertmanager's API filters are parsed and matched like its route matchers."""
    binary = require_binary("prometheus-alertmanager", "apt install prometheus-alertmanager")
    config = tmp_path / "am.yml"
    config.write_text("route:\n  receiver: none\nreceivers:\n  - name: none\n")

    args = alertmanager_args(binary, config, tmp_path / "data")

    now = dt.datetime.now(dt.UTC)
    stamp = {
        "startsAt": now.isoformat().replace("+00:00", "Z"),
        "endsAt": (now + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    }
    alerts = [
        {"labels": {"alertname": "M", "id": str(i), "x": v}, **stamp} for i, v in enumerate(VALUES)
    ]
    alerts.append({"labels": {"alertname": "M", "id": "missing"}, **stamp})
    labels_of = {a["labels"]["id"]: a["labels"] for a in alerts}
    with serving_on_free_port(
        args, log=tmp_path / "am.log", ready_path="/-/ready", timeout=30
    ) as alertmanager:
        am = alertmanager.url
        httpx.post(f"{am}/api/v2/alerts", json=alerts, timeout=10).raise_for_status()
        disagreements, refused = [], []
        for text in MATCHERS:
            answer = httpx.get(
                f"{am}/api/v2/alerts", params={"filter": [text, 'alertname="M"']}, timeout=10
            )
            if answer.status_code == 400:  # Alertmanager refuses the matcher: so do we
                with pytest.raises(ValueError):
                    Matcher.parse(text)
                refused.append(text)
                continue
            answer.raise_for_status()
            theirs = {a["labels"]["id"] for a in answer.json()}
            matcher = Matcher.parse(text)
            ours = {i for i, labels in labels_of.items() if matcher.matches(labels)}
            if ours != theirs:
                disagreements.append((text, sorted(ours - theirs), sorted(theirs - ours)))
        assert len(labels_of) == len(VALUES) + 1
        assert refused == [r'x=~"a\\c"']  # "\\c" is not an escape in Go's syntax
        assert disagreements == [], disagreements


def test_a_trailing_newline_does_not_satisfy_an_anchored_regex() -> None:
    matcher = Matcher.parse('id=~"ABCDE12345"')
    assert matcher.matches({"id": "ABCDE12345"})
    assert not matcher.matches({"id": "ABCDE12345\n"})
    assert Matcher.parse('id!~"ABCDE12345"').matches({"id": "ABCDE12345\n"})


def test_a_backtracking_bomb_is_matched_in_linear_time() -> None:
    # Python's re needs ~2^n steps here; RE2 (like Go) is linear: the test simply ends.
    matcher = Matcher.parse('x=~"(a+)+$"')
    assert not matcher.matches({"x": "a" * 100_000 + "b"})
    assert matcher.matches({"x": "a" * 100_000})
    assert not Matcher.parse('x=~"(x+x+)+y"').matches({"x": "x" * 50_000})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('x=~"(?=a)a"', "invalid perl operator"),  # lookahead: Python accepts, Go refuses
        (r'x=~"(a)\1"', "invalid escape sequence"),  # backreference
        ('x=~"a{2,1001}"', "invalid repetition size"),  # Go caps counted repetition at 1000
        ('x=~"(unclosed"', "missing )"),
    ],
)
def test_regexes_go_refuses_are_config_errors_naming_the_rule(
    text: str, problem: str, capfd: pytest.CaptureFixture[str]
) -> None:
    data = {
        "panels": {"web01": {"url": "http://h:8002", "username": "a", "password": "b"}},
        "remediator": {
            "insecure_no_auth": True,
            "rules": [{"name": "r", "matchers": [text], "action": "delete_frozen"}],
        },
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    (error,) = info.value.errors
    assert error.startswith("remediator.rules[0].matchers") and problem in error, error
    assert "Go RE2 syntax" in error
    # RE2's own logging stays quiet: the config error is the one message.
    assert capfd.readouterr().err == ""
