"""Scale-out pieces without a process: ``/probe``, ``/sd``, panel labels and shards."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from brainycp.config.errors import ConfigError
from brainycp.config.values import parse_shard
from exporter.app import create_app
from exporter.poller import initial_state
from exporter.settings import parse_config
from exporter.shard import hashmod, in_shard, shard_config
from exporter.state import ExporterState
from tests.golden_support import exim_and_postfix, render_text

os.environ.setdefault("BRAINYCP_TEST_PW", "pw")
NOW = 1_795_675_500.0


def get(state: ExporterState, path: str, host: str = "exporter:9863") -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(state, clock=lambda: NOW))
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as client:
            return await client.get(path)

    return asyncio.run(run())


def series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def config(
    panels: dict[str, dict[str, Any]], defaults: dict[str, Any] | None = None, **exporter: Any
) -> Any:
    return parse_config(
        {
            "defaults": {"username": "a", "password_env": "BRAINYCP_TEST_PW", **(defaults or {})},
            "panels": {
                n: {"url": f"http://127.0.0.1:9/{n}", **extra} for n, extra in panels.items()
            },
            "exporter": exporter,
        }
    )


# ------------------------------------------------------------------------------ /probe


def test_probe_returns_exactly_that_panels_series_of_metrics() -> None:
    state = exim_and_postfix()
    everything = series(get(state, "/metrics").text)
    for panel in state.panels:
        response = get(state, f"/probe?target={panel}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        probed = series(response.text)
        assert probed, panel
        assert {dict(labels)["panel"] for _, labels, _ in probed} == {panel}
        mine = {s for s in everything if dict(s[1]).get("panel") == panel}
        # The same names and values as /metrics, nothing of the exporter's own.
        assert probed == mine


@pytest.mark.parametrize("query", ["", "?target=", "?target=nope", "?target=exim01%0A"])
def test_probe_of_an_unknown_target_is_a_404_with_a_one_line_reason(query: str) -> None:
    response = get(exim_and_postfix(), f"/probe{query}")
    assert response.status_code == 404
    assert response.text.count("\n") == 1 and response.text.strip()


# ------------------------------------------------------------------------------ /sd and labels


def test_sd_lists_each_panel_at_the_address_the_request_came_to_with_its_labels() -> None:
    cfg = config(
        {"a": {"labels": {"customer": "acme"}}, "b": {"labels": {"dc": "fra1"}}, "c": {}},
        defaults={"labels": {"dc": "ams1"}},
    )
    state = initial_state(cfg)
    response = get(state, "/sd", host="10.0.0.5:9863")
    assert response.status_code == 200
    assert response.json() == [
        {
            "targets": ["10.0.0.5:9863"],
            "labels": {"__param_target": "a", "panel": "a", "dc": "ams1", "customer": "acme"},
        },
        {
            "targets": ["10.0.0.5:9863"],
            "labels": {"__param_target": "b", "panel": "b", "dc": "fra1"},
        },
        {
            "targets": ["10.0.0.5:9863"],
            "labels": {"__param_target": "c", "panel": "c", "dc": "ams1"},
        },
    ]


def test_panel_info_carries_every_label_name_filled_with_empty_strings() -> None:
    cfg = config({"a": {"labels": {"customer": "acme"}}, "b": {"labels": {"dc": "fra1"}}})
    text = render_text(initial_state(cfg), NOW)
    assert 'brainycp_panel_info{customer="acme",dc="",panel="a"} 1.0' in text
    assert 'brainycp_panel_info{customer="",dc="fra1",panel="b"} 1.0' in text
    # Labels are on the info series only, not on every series.
    assert text.count("customer=") == 2


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ({"1dc": "x"}, "must match"),
        ({"d-c": "x"}, "must match"),
        ({"__meta": "x"}, "reserved"),
        ({"panel": "x"}, "set by the exporter"),
        ({"dc": 3}, "valid string"),
    ],
)
def test_bad_label_names_are_config_errors_naming_the_key(
    labels: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as err:
        config({"a": {"labels": labels}})
    assert any(
        line.startswith("panels.a.labels") and problem in line for line in err.value.errors
    ), err.value.errors


# ------------------------------------------------------------------------------ shards


def test_hashmod_is_prometheus_s_last_eight_md5_bytes_big_endian() -> None:
    # relabel.go: mod := binary.BigEndian.Uint64(hash[8:]) % cfg.Modulus
    digest = hashlib.md5(b"web01").digest()
    expected = int.from_bytes(digest[8:16], "big") % 7
    assert hashmod("web01", 7) == expected
    assert hashmod("anything", 1) == 0


@settings(max_examples=200)
@given(
    names=st.sets(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}", fullmatch=True), max_size=40),
    count=st.integers(min_value=1, max_value=16),
)
def test_the_shards_together_hold_every_panel_exactly_once(names: set[str], count: int) -> None:
    owners = {name: [i for i in range(count) if in_shard(name, (i, count))] for name in names}
    assert all(len(found) == 1 for found in owners.values())


def test_shard_config_keeps_only_the_panels_of_its_shard_and_the_state_says_which() -> None:
    names = [f"panel-{i}" for i in range(50)]
    cfg = config({n: {} for n in names}, shard="1/3")
    served = shard_config(cfg)
    assert set(served.panels) == {n for n in names if hashmod(n, 3) == 1}
    # The panel set is a function of (config, shard): a reload or a new COUNT recomputes it.
    assert set(shard_config(cfg, (0, 1)).panels) == set(names)
    state = initial_state(served)
    text = render_text(state, NOW)
    assert 'brainycp_exporter_shard_info{count="3",index="1"} 1.0' in text
    sd = get(state, "/sd").json()
    assert sorted(e["labels"]["panel"] for e in sd) == sorted(served.panels)


@pytest.mark.parametrize("bad", ["4/4", "1/0", "-1/3", "a/b", "3", "1/2/3", 5])
def test_a_bad_shard_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError) as err:
        config({"a": {}}, shard=bad)
    assert any(line.startswith("exporter.shard:") for line in err.value.errors), err.value.errors
    with pytest.raises(ValueError):
        parse_shard(bad)


@pytest.mark.e2e
def test_check_config_with_a_shard_counts_its_panels_and_a_bad_shard_exits_2(
    tmp_path: Any,
) -> None:
    import subprocess

    import yaml

    from tests.support import PYTHON, REPO

    names = [f"panel-{i}" for i in range(20)]
    path = tmp_path / "c.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "defaults": {"username": "a", "password_env": "BRAINYCP_TEST_PW"},
                "panels": {n: {"url": f"http://127.0.0.1:9/{n}"} for n in names},
            }
        )
    )

    def check(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "exporter.cli", "--config", str(path), "--check-config", *extra],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )

    mine = sum(1 for n in names if hashmod(n, 4) == 2)
    result = check("--shard", "2/4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"config OK: {mine} panels in shard 2/4"
    bad = check("--shard", "4/4")
    assert bad.returncode == 2
    assert bad.stderr.startswith("--shard: ") and "Traceback" not in bad.stderr
