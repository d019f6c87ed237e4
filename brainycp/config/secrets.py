"""Secret files (passwords, tokens): read once, bounded, and checked for loose modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_SECRET_BYTES = 64 * 1024
"""A secret file larger than this is refused: it is not a password or a token."""


def read_secret_file(path: Path, key: str = "", warnings: list[str] | None = None) -> str:
    """The secret in ``path`` (one trailing newline dropped).

    Adds a warning, naming the file and its mode, when group or others may read it.
    """
    with open(path, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        data = handle.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"{str(path)!r} is over {MAX_SECRET_BYTES} bytes; not a secret file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not UTF-8 text") from None
    if warnings is not None and mode & 0o077:
        line = (
            f"{key}: {path} is mode {stat.S_IMODE(mode):04o}, readable by group or others;"
            " make it 0600 or 0400, owned by the user the daemon runs as"
        )
        if line not in warnings:
            warnings.append(line)
    secret = text.rstrip("\r\n")
    if not secret:
        raise ValueError(f"{str(path)!r} is empty")
    return secret


def unreadable_reason(exc: OSError | ValueError) -> str:
    """Why a secret could not be read, for ``key: cannot read ...: <reason>`` (never the secret)."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
