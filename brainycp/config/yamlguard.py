"""The YAML guard: read a config file safely before anything trusts its contents.

A file over :data:`MAX_CONFIG_BYTES`, not UTF-8, not YAML, with a key given twice in one
mapping, nested deeper than :data:`MAX_CONFIG_DEPTH` or expanding to more than
:data:`MAX_CONFIG_NODES` values (an alias bomb) is refused with a :class:`ConfigError`
that names the file, the key or the line. Both daemons' config and web config go through it.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from brainycp.config.errors import ConfigError

MAX_CONFIG_BYTES = 1024 * 1024
"""A config file larger than this (1 MiB) is refused unread."""
MAX_CONFIG_NODES = 100_000
"""YAML nodes after expanding aliases: a billion-laughs file is refused here, not in memory."""
MAX_CONFIG_DEPTH = 64
"""Nesting deeper than this is refused (the real config nests 5 levels)."""
_BOOL_TAG = "tag:yaml.org,2002:bool"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "<complex key>"


def _check_tree(root: yaml.Node) -> list[str]:
    """Walk the composed document once, expanding aliases as the constructor would.

    Refuses a key that appears twice in one mapping (YAML keeps the last one
    silently), nesting deeper than :data:`MAX_CONFIG_DEPTH` and more than
    :data:`MAX_CONFIG_NODES` nodes. Plain ``on``/``off``/``yes``/``no`` keys are
    retagged as strings: YAML 1.1 reads them as booleans, and a rule's ``on:`` key
    must stay ``on``.
    """
    problems: list[str] = []
    seen_nodes = 0
    stack: list[tuple[yaml.Node, str, int]] = [(root, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        seen_nodes += 1
        if seen_nodes > MAX_CONFIG_NODES:
            return [
                f"(top level): more than {MAX_CONFIG_NODES} values once aliases are expanded;"
                " refused (an alias bomb?)"
            ]
        if depth > MAX_CONFIG_DEPTH:
            where = path if len(path) <= 80 else path[:77] + "..."
            return [f"{where or '(top level)'}: nested deeper than {MAX_CONFIG_DEPTH} levels"]
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                stack.append((item, f"{path}[{index}]", depth + 1))
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    stack.append((value_node, path, depth + 1))
                    continue
                if (
                    isinstance(key_node, yaml.ScalarNode)
                    and key_node.tag == _BOOL_TAG
                    and key_node.style is None
                ):
                    key_node.tag = _STR_TAG
                key = _key_text(key_node)
                where = f"{path}.{key}" if path else key
                line = key_node.start_mark.line + 1
                if key in first_line:
                    problems.append(
                        f"{where}: appears twice in the same mapping (lines {first_line[key]}"
                        f" and {line}); YAML would silently keep only the last"
                    )
                else:
                    first_line[key] = line
                stack.append((key_node, where, depth + 1))
                stack.append((value_node, where, depth + 1))
    return problems


def _yaml_problem(source: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None)
    if not problem:
        problem = str(exc).splitlines()[0] if str(exc) else "not valid YAML"
    return f"{source}: {problem}{where}"


def load_yaml(text: str, source: str = "config") -> Any:
    """The YAML document in ``text``, checked by :func:`_check_tree` before it is built.

    Raises :class:`ConfigError` naming ``source`` for anything that is not one
    well-formed, reasonably sized YAML document.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(source, exc)]) from None
    except RecursionError:
        raise ConfigError(
            [f"{source}: nested deeper than {MAX_CONFIG_DEPTH} levels; refused"]
        ) from None
    if root is None:
        return None
    problems = _check_tree(root)
    if problems:
        raise ConfigError(problems)
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(source, exc)]) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # A plain scalar that looks like a date but is none (2024-13-45) raises ValueError.
        raise ConfigError([f"{source}: a value cannot be read: {exc}"]) from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | os.PathLike[str]) -> Any:
    """The YAML document in the file at ``path`` (:func:`read_config_text`, :func:`load_yaml`)."""
    return load_yaml(read_config_text(path), str(path))


def read_config_text(path: str | os.PathLike[str]) -> str:
    """The text of the config file: at most :data:`MAX_CONFIG_BYTES`, UTF-8."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: the config file is over {MAX_CONFIG_BYTES} bytes; refused"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})"]
        ) from None
