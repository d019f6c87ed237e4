"""Basic auth for both daemons' HTTP endpoints: the web config's ``basic_auth_users``.

A bcrypt check costs ~0.1-0.3 s of CPU, so a successful (user, password) pair is
remembered by a SHA-256 digest, as exporter-toolkit does, and checks run in a worker
thread, at most two at a time. An unknown user is checked against a stand-in hash of
the same cost, so its refusal takes as long as a known user's.
:class:`BasicAuthMiddleware` guards every path but the ones a daemon leaves open and
records the user it checked (:mod:`brainycp.daemon.access`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
from collections.abc import Collection, Mapping
from dataclasses import KW_ONLY, dataclass

import bcrypt
from starlette.types import ASGIApp, Receive, Scope, Send

from brainycp.daemon.access import BASIC_AUTH, AuthFailures, Identity, remember
from brainycp.daemon.responses import header, send_json

MAX_CACHED = 1024
"""Remembered good (user, password) digests; the memory is emptied when it is full."""
MAX_PASSWORD_BYTES = 72
"""bcrypt hashes only 72 bytes; bcrypt 5 raises above that."""


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def bcrypt_cost(hashed: bytes) -> int:
    """The cost factor of a bcrypt hash (``$2b$10$...`` is 10: 2**10 rounds)."""
    return int(hashed.split(b"$")[2])


_STAND_INS: dict[int, bytes] = {}


def stand_in_hash(cost: int) -> bytes:
    """A hash of a random password at ``cost``, checked for an unknown user so that the
    refusal takes as long as a known user's. Made once per cost (~70 ms at cost 10)."""
    if cost not in _STAND_INS:
        _STAND_INS[cost] = bcrypt.hashpw(os.urandom(18).hex().encode(), bcrypt.gensalt(cost))
    return _STAND_INS[cost]


@dataclass(frozen=True)
class Checked:
    """The outcome of a basic-auth check: the user name sent (if any), whether it passed,
    and why it did not (for the log; never the password)."""

    user: str | None
    ok: bool
    why: str = ""


class BasicAuth:
    """Checks credentials against the web config's users; remembers the good ones.

    An unknown user is checked against :func:`stand_in_hash` at the highest cost among
    the users (rebuilt at reload), so its refusal costs what a known user's does.
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._checks = asyncio.Semaphore(2)
        self.replace(users)

    def replace(self, users: Mapping[str, bytes]) -> None:
        """New users (reload); remembered checks are forgotten."""
        self.users = dict(users)
        self._good: set[bytes] = set()
        costs = [bcrypt_cost(hashed) for hashed in self.users.values()]
        self.stand_in = stand_in_hash(max(costs)) if costs else b""

    def _digest(self, user: str, password: str, hashed: bytes) -> bytes:
        return hashlib.sha256(
            b"\0".join((user.encode(), password.encode(), hashed)), usedforsecurity=True
        ).digest()

    async def verify(self, header: str | None) -> Checked:
        """Whether ``header`` carries a configured user and its password."""
        creds = basic_credentials(header)
        if creds is None:
            return Checked(None, False, "no basic credentials" if header else "none sent")
        user, password = creds
        hashed = self.users.get(user)
        against = hashed or self.stand_in
        digest = self._digest(user, password, against)
        if hashed is not None and digest in self._good:
            return Checked(user, True)
        if not against:
            return Checked(user, False, "no users configured")
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            return Checked(user, False, f"password over {MAX_PASSWORD_BYTES} bytes")
        async with self._checks:
            # CPU-bound (~0.1-0.3 s): a worker thread keeps the event loop answering.
            ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), against)
        if hashed is None:
            return Checked(user, False, "unknown user")
        if not ok or self.users.get(user) != hashed:
            return Checked(user, False, "wrong password")
        if len(self._good) >= MAX_CACHED:
            self._good.clear()
        self._good.add(digest)
        return Checked(user, True)

    async def check(self, header: str | None) -> bool:
        """True when ``header`` carries a configured user and its password."""
        return (await self.verify(header)).ok


@dataclass
class BasicAuthMiddleware:
    """401 for every HTTP request without valid basic auth, except on ``open_paths``.

    A request that passes carries its user in the scope
    (:func:`brainycp.daemon.access.identity`); a refused one that sent credentials is
    counted on ``failures``.
    """

    app: ASGIApp
    auth: BasicAuth
    _: KW_ONLY
    realm: str
    open_paths: Collection[str] = ()
    failures: AuthFailures | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.auth.users or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        sent = header(scope, b"authorization")
        checked = await self.auth.verify(sent)
        if checked.ok and checked.user is not None:
            remember(scope, Identity(checked.user, BASIC_AUTH))
            await self.app(scope, receive, send)
            return
        if sent is not None and self.failures is not None:
            self.failures.record(scope, checked.user, checked.why)
        challenge = f'Basic realm="{self.realm}", charset="UTF-8"'.encode()
        await send_json(
            send,
            401,
            b'{"error": "missing or wrong credentials (see --web.config.file)"}',
            [(b"www-authenticate", challenge)],
        )
