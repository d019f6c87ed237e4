"""The shipped packages keep the shape the developers' guide asks for: no module uses
another module's private (``_underscore``) names, no module is over 800 lines and no
function over 100."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support import REPO

PACKAGES = ("brainycp", "exporter", "remediator")
MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 100

# Modules other engineers are splitting right now; each entry leaves with its split.
TOO_LONG_FOR_NOW: set[str] = set()
# Functions over the limit in modules others are changing right now, by (module, name).
LONG_FUNCTIONS_FOR_NOW: set[tuple[str, str]] = set()


def shipped_modules() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def name_of(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """``from x import _name`` and ``module._name`` where ``module`` is an imported module."""
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if is_private(alias.name):
                    yield node.lineno, f"from {node.module} import {alias.name}"
                elif alias.name[:1].islower():
                    # ``from package import module``: its attributes are that module's.
                    modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and is_private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            yield node.lineno, f"{node.value.id}.{node.attr}"


def test_no_module_uses_another_modules_private_names() -> None:
    found = [
        f"{name_of(path)}:{line}: {use}"
        for path in shipped_modules()
        for line, use in private_uses(ast.parse(path.read_text(), str(path)))
    ]
    assert not found, "\n".join(found)


def test_the_private_names_check_sees_both_spellings() -> None:
    tree = ast.parse(
        "import os\nfrom json import decoder\nfrom x.y import _hidden\n"
        "os._exit(0)\ndecoder._private\nself._mine\n"
    )
    assert [use for _, use in sorted(private_uses(tree))] == [
        "from x.y import _hidden",
        "os._exit",
        "decoder._private",
    ]


def imported_packages(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """The top-level package of every absolute import in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module.split(".")[0]


def test_the_shared_package_imports_neither_daemon_and_they_not_each_other() -> None:
    forbidden = {
        "brainycp": {"exporter", "remediator"},
        "exporter": {"remediator"},
        "remediator": {"exporter"},
    }
    found = [
        f"{name_of(path)}:{line}: imports {package}"
        for path in shipped_modules()
        for line, package in imported_packages(ast.parse(path.read_text(), str(path)))
        if package in forbidden[name_of(path).split("/")[0]]
    ]
    assert not found, "\n".join(found)


def test_no_module_is_over_800_lines() -> None:
    long = {
        name_of(path): lines
        for path in shipped_modules()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert set(long) <= TOO_LONG_FOR_NOW, long


def test_no_function_is_over_100_lines() -> None:
    long = []
    for path in shipped_modules():
        module = name_of(path)
        for function, length in function_lengths(path).items():
            if length > MAX_FUNCTION_LINES and (module, function) not in LONG_FUNCTIONS_FOR_NOW:
                long.append(f"{module} {function}: {length} lines")
    assert not long, "\n".join(long)


def function_lengths(path: Path) -> dict[str, int]:
    """The longest function of each name in ``path``, in lines."""
    lengths: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            lengths[node.name] = max(length, lengths.get(node.name, 0))
    return lengths


def test_the_allow_lists_name_only_what_is_still_too_long() -> None:
    """An entry leaves its list when its module is split: a stale one would hide the next."""
    stale = []
    for name in sorted(TOO_LONG_FOR_NOW):
        path = REPO / name
        if not path.exists() or len(path.read_text().splitlines()) <= MAX_MODULE_LINES:
            stale.append(name)
    for name, function in sorted(LONG_FUNCTIONS_FOR_NOW):
        path = REPO / name
        lengths = function_lengths(path) if path.exists() else {}
        if lengths.get(function, 0) <= MAX_FUNCTION_LINES:
            stale.append(f"{name} {function}")
    assert not stale, f"no longer too long, remove from the allow-lists: {stale}"
