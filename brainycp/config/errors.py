"""How the config says what is wrong: one ``key.path: problem`` line each.

:class:`ConfigError` carries every line found; :func:`validation_errors` turns a pydantic
error into such lines, so a daemon's section reads like the shared ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


class ConfigError(Exception):
    """The config cannot be used; ``errors`` holds one ``key.path: problem`` line each."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def _loc(prefix: str, loc: Sequence[int | str]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-", "list[", "dict[", "tagged-union")):
            continue
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def validation_errors(prefix: str, exc: ValidationError) -> list[str]:
    """One ``prefix.key.path: problem`` line per error of ``exc``."""
    out = []
    for err in exc.errors():
        msg = str(err["msg"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "is required"
        msg = msg.removeprefix("Value error, ")
        loc = list(err["loc"])
        # A rule's own model_validator names the key at the start of its message.
        if err["type"] == "value_error" and ": " in msg and msg.split(": ", 1)[0].isidentifier():
            key, msg = msg.split(": ", 1)
            loc.append(key)
        out.append(f"{_loc(prefix, loc)}: {msg}")
    return out
