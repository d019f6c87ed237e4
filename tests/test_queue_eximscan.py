"""brainycp._eximscan, the C reading of canonical ``exim -bp`` text: it takes the listings Exim
prints, gives up on everything else, and summarize says the same with it and without it."""

from __future__ import annotations

import gzip
import random
import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brainycp.queue as queue_module
from brainycp.queue import QueueSummary, summarize
from brainycp.simulator.render import exim_age, exim_size
from tests.queue_support import ODD_EXIM_HEADERS
from tests.support import FIXTURES, require_c_reader

_ALNUM = string.ascii_letters + string.digits
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def scanner() -> Any:
    return require_c_reader("_eximscan")


def line_path(text: str) -> QueueSummary:
    acc = queue_module._Acc()
    acc.flavour = "exim"
    queue_module._exim_summarize_lines(text.split("\n"), acc)
    return acc.result()


def python_only(detail: Any, monkeypatch: pytest.MonkeyPatch) -> QueueSummary:
    with monkeypatch.context() as patch:
        patch.setattr(queue_module, "_eximscan", None)
        return summarize(detail)


def all_agree(text: str, monkeypatch: pytest.MonkeyPatch) -> QueueSummary:
    """summarize with the C reading == without it; == the line path when it is Exim text."""
    fast = summarize(text)
    assert fast == python_only(text, monkeypatch)
    with monkeypatch.context() as patch:
        patch.setattr(queue_module, "_SCAN_REGION_CHARS", 64)  # regions cut everywhere
        assert summarize(text) == fast
    if fast.flavour == "exim":
        assert line_path(text) == fast
    return fast


# --------------------------------------------------------------------------------------------
# Listings as Exim prints them


SENDERS = st.one_of(
    st.just(""),
    st.from_regex(r"[a-z0-9.+\-]{1,12}@[a-z0-9\-]{1,10}\.example", fullmatch=True),
    st.sampled_from(['"john doe"@x.example', "jürgen@bücher.example", "李雷@例子.中国", "a>b@c"]),
)


@st.composite
def canonical_listings(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 15))):
        age = exim_age(draw(st.integers(0, 400 * 86400)))
        size = exim_size(draw(st.integers(0, 90 * 1024 * 1024)))
        rng = random.Random(draw(st.integers(0, 2**32)))
        parts = draw(st.sampled_from([(6, 6, 2), (6, 11, 4)]))
        msg_id = "-".join("".join(rng.choices(_ALNUM, k=n)) for n in parts)
        frozen = " *** frozen ***" if draw(st.booleans()) else ""
        lines.append(f"{age} {size} {msg_id} <{draw(SENDERS)}>{frozen}")
        for _ in range(draw(st.integers(0, 3))):
            indent = draw(st.sampled_from(["          ", "        D ", "       +D ", "\t"]))
            lines.append(indent + draw(SENDERS))
        lines.append("")
    return "\n".join(lines)


ODD_LINES = st.one_of(
    st.sampled_from(
        [
            *ODD_EXIM_HEADERS,
            " 6m 9999G 1xW6VZ-0000xu-1S <a>",
            "1000d  350 1xW6VZ-0000xu-1S <a>",
            " 6m   350 1xW6VZ-0000xu-1S <a>\r",
            "  6m   350 1xW6VZ-0000xu-1S <a>",
            " 6m   350 1xW6VZ-0000x-1S <a>",
            " 6m   350 1xW6VZ-0000xu-1Sx <a>",
            " 6m \u00a0350 1xW6VZ-0000xu-1S <a>",
            "   ",
            "  x",
            "\r",
            "exim: spool read error",
            "    orphan recipient",
        ]
    ),
    st.text(max_size=40).filter(lambda line: "\n" not in line),
)


@st.composite
def hostile_listings(draw: st.DrawFn) -> str:
    lines = draw(canonical_listings()).split("\n")
    for position, line in draw(st.lists(st.tuples(st.integers(0, len(lines)), ODD_LINES))):
        lines.insert(position, line)
    joined = "\n".join(lines)
    return joined.replace("\n", "\r\n") if draw(st.integers(0, 9)) == 0 else joined


# --------------------------------------------------------------------------------------------
# Tests


@PROPERTY
@given(canonical_listings())
def test_canonical_listings_take_the_c_reading_and_read_the_same(
    scanner: Any, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    assert scanner.scan(text, 0, len(text)) is not None
    all_agree(text, monkeypatch)


@PROPERTY
@given(hostile_listings())
def test_odd_lines_anywhere_read_the_same_with_or_without_c(
    scanner: Any, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    all_agree(text, monkeypatch)


ODD_ALPHABET = " 0123456789smhdKMG.-<>*\n\tfrozenAZz\r\u00e9"


@PROPERTY
@given(st.text(alphabet=st.sampled_from(ODD_ALPHABET), max_size=200))
def test_any_text_never_breaks_the_c_reading(
    scanner: Any, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    for start in range(0, len(text) + 1, 7):
        found = scanner.scan(text, start, len(text))
        assert found is None or found[0] >= 1
    all_agree(" 5m   350 1xW6VZ-0000xu-1S <a>\n" + text, monkeypatch)


def test_what_the_c_reading_returns(scanner: Any) -> None:
    text = (
        " 5m  2.1K 1xW6VZ-0000xu-1S <a@b.example>\n          c@d.example\n\n"
        "100d   350 16VDhn-000000001bo-D342 <> *** frozen ***\n        D e@f.example\n\n"
        " 5m  2.1K 1xW6VZ-0000xv-1S <x> *** frozen ***\n"
    )
    messages, frozen, bounces, ages, sizes = scanner.scan(text, 0, len(text))
    assert (messages, frozen, bounces) == (3, 2, 1)
    assert ages == {" 5m": 2, "100d": 1}
    assert sizes == {" 2.1K": 2, "  350": 1}
    # Only text[start:end] is read: the first message alone.
    first = text.index("\n\n")
    assert scanner.scan(text, 0, first)[:3] == (1, 0, 0)


def test_bad_bounds_and_types_are_refused(scanner: Any) -> None:
    with pytest.raises(ValueError):
        scanner.scan("abc", 2, 1)
    with pytest.raises(ValueError):
        scanner.scan("abc", 0, 4)
    with pytest.raises(ValueError):
        scanner.scan("abc", -1, 2)
    with pytest.raises(TypeError):
        scanner.scan(b" 5m   350 1xW6VZ-0000xu-1S <a>", 0, 10)


@pytest.mark.parametrize("name", ["exim-bp.txt", "exim-bpr.txt", "exim-bp-aged.txt"])
def test_fixtures_take_the_c_reading(
    scanner: Any, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    text = (FIXTURES / name).read_text()
    assert scanner.scan(text, 0, len(text)) is not None
    all_agree(text, monkeypatch)


def real_captures() -> Iterator[str]:
    folder = FIXTURES / "real" / "exim"
    yield (folder / "mixed-bp.txt").read_text()
    with gzip.open(folder / "large-bp.txt.gz", "rt", encoding="utf-8") as handle:
        yield handle.read()


def test_real_exim_captures_take_the_c_reading(
    scanner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for text in real_captures():
        taken = [
            scanner.scan(text, lo, hi) is not None
            for lo, hi in queue_module._slice_bounds(
                text, 0, len(text), queue_module._SCAN_REGION_CHARS
            )
        ]
        assert all(taken)
        assert summarize(text) == python_only(text, monkeypatch)


def test_a_junk_line_sends_only_its_region_to_python(
    scanner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = " 5m  2.1K 1xW6VZ-0000xu-1S <a@b.example>\n          c@d.example\n\n"
    text = block * 200 + "exim: junk\n\n" + block * 200
    calls: list[bool] = []
    real_scan = scanner.scan

    def counting(text: str, lo: int, hi: int) -> Any:
        found = real_scan(text, lo, hi)
        calls.append(found is not None)
        return found

    monkeypatch.setattr(queue_module, "_SCAN_REGION_CHARS", 4096)
    monkeypatch.setattr(scanner, "scan", counting)
    summary = summarize(text)
    assert summary.messages == 400 and summary.unparsed_lines == 1
    assert calls.count(False) == 1 and calls.count(True) >= 3


@pytest.mark.parametrize("distinct", [3000, 20_000])
def test_many_distinct_sizes_in_one_region(
    scanner: Any, monkeypatch: pytest.MonkeyPatch, distinct: int
) -> None:
    # The size table grows from 64 slots; past 16,384 distinct fields a region goes to Python.
    text = "".join(
        f" 5m {size:5d} 1xW6VZ-{size:06d}-1S <a@b.example>\n          c@d.example\n\n"
        for size in range(distinct)
    )
    found = scanner.scan(text, 0, len(text))
    if distinct <= 1 << 14:
        assert found is not None and len(found[4]) == distinct
    else:
        assert found is None
    summary = summarize(text)
    assert summary.bytes == sum(range(distinct)) and summary == python_only(text, monkeypatch)
