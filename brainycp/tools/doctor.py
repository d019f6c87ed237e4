"""``brainycp-mail-doctor``: check, step by step, that each configured panel can be monitored.

For each panel: name resolution and TCP connect, TLS (what the certificate is and the
``tls_fingerprint`` line that pins it), which credential pairs the panel accepts, whether
the login has the rights the mail module needs, every read operation, and a clock hint.
A step that the next needs stops the panel's checks when it fails. Only read operations
are sent: the doctor never changes anything on a panel, and never prints a secret.

Exit codes: 0 every checked panel passed, 1 one failed (a panel whose own config entry
is broken fails with the reasons, and the others are still checked), 2 the config is
broken as a whole (no file, not YAML, bad ``defaults``, an unknown top-level key) or a panel
name on the command line is not configured.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import hashlib
import json
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from cryptography import x509
from cryptography.x509.oid import NameOID

from brainycp import __version__
from brainycp.config.errors import ConfigError
from brainycp.config.loader import SharedConfig, load_shared
from brainycp.config.panels import PanelConfig
from brainycp.daemon.startup import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from brainycp.panel.answers import QueueListing
from brainycp.panel.client import PanelClient
from brainycp.panel.errors import BrainyCPError
from brainycp.panel.sockets import describe_os_error, is_ip_address
from brainycp.panel.tls import format_fingerprint, pinning_context, shared_ssl_context
from brainycp.queue import iter_messages, summarize

T = TypeVar("T")

STYLE_FIELDS = {
    "both": "username/password and login/pass",
    "username": "username/password",
    "login": "login/pass",
}
# Shifting "now" forward lets a Postfix arrival time that lies in the future show as a
# negative age (the parser never gives one) without changing the year it is read in.
_CLOCK_SHIFT = 2 * 86400.0
_FUTURE_SLACK = 120.0


@dataclass
class Check:
    """One step's result; ``ok`` None means skipped because an earlier step failed."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


@dataclass
class Report:
    panel: str
    url: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def add(self, name: str, ok: bool, detail: str, fix: str = "") -> bool:
        self.checks.append(Check(name, ok, detail, "" if ok else fix))
        return ok

    def skip(self, names: Sequence[str], because: str) -> None:
        for name in names:
            self.checks.append(Check(name, None, f"skipped: needs {because}"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "panel": self.panel,
            "url": self.url,
            "ok": self.ok,
            "checks": [c.as_dict() for c in self.checks if c.ok is not None],
            "skipped": [c.name for c in self.checks if c.ok is None],
        }


# ------------------------------------------------------------------ certificates


# The name attributes shown, in the order the certificate lists them.
_NAME_KEYS = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COUNTRY_NAME: "C",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
}


def _name(name: x509.Name) -> str:
    parts = []
    for attribute in name:
        key = _NAME_KEYS.get(attribute.oid)
        if key is not None:
            value = attribute.value
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            parts.append(f"{key}={text}")
    return ", ".join(parts) or "(empty)"


def certificate_facts(der: bytes) -> tuple[str, str, datetime.datetime]:
    """(subject, issuer, not-after) of a DER certificate; ValueError when unreadable."""
    try:
        certificate = x509.load_der_x509_certificate(der)
        return (
            _name(certificate.subject),
            _name(certificate.issuer),
            certificate.not_valid_after_utc,
        )
    except ValueError as exc:
        raise ValueError(f"unreadable certificate: {exc}") from None


# ------------------------------------------------------------------ steps


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _age(seconds: float) -> str:
    value = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}s"


async def _deadline(seconds: float, work: Awaitable[T]) -> T:
    async with asyncio.timeout(seconds):
        return await work


class Doctor:
    """Runs the checks of one panel."""

    def __init__(self, panel: PanelConfig) -> None:
        self.panel = panel
        self.url = httpx.URL(panel.url)
        self.https = self.url.scheme == "https"
        self.host = self.url.host
        self.port = self.url.port or (443 if self.https else 80)
        self.report = Report(panel.name, panel.url)
        self.address = self.host
        self.first: int | BrainyCPError | None = None
        """The answer of the login step's count_msg, which the permission step reads."""

    def key(self, name: str) -> str:
        return f"panels.{self.panel.name}.{name}"

    async def run(self) -> Report:
        order = ["connect", "tls", "login", "permission", "reads", "clock"]
        if not await self.connect():
            self.report.skip(order[1:] if self.https else order[2:], "connect")
            return self.report
        if self.https and not await self.tls():
            self.report.skip(order[2:], "tls")
            return self.report
        if not await self.login():
            self.report.skip(order[3:], "login")
            return self.report
        if not self.permission():
            self.report.skip(order[4:], "permission")
            return self.report
        listing = await self.reads()
        self.clock(listing)
        return self.report

    # -- 1. name resolution and TCP connect

    async def connect(self) -> bool:
        loop = asyncio.get_running_loop()
        timeout = self.panel.timeout
        where = f"{self.host}:{self.port}"
        started = time.perf_counter()
        try:
            if is_ip_address(self.host):
                addresses = [self.host]
                resolved = "an IP address, no lookup"
            else:
                infos = await _deadline(
                    timeout, loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
                )
                addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
                resolved = (
                    f"resolved to {', '.join(addresses)} in {_ms(time.perf_counter() - started)}"
                )
        except TimeoutError:
            return self.report.add(
                "connect",
                False,
                f"{self.host}: name resolution timed out after {timeout:g}s",
                "check the resolver of this host (/etc/resolv.conf)",
            )
        except (OSError, UnicodeError) as exc:
            return self.report.add(
                "connect",
                False,
                describe_os_error(exc, self.host),
                f"check the host name in {self.key('url')} and this host's resolver",
            )
        errors = []
        for address in addresses:
            started = time.perf_counter()
            try:
                _, writer = await _deadline(timeout, asyncio.open_connection(address, self.port))
            except TimeoutError:
                errors.append(f"{address}: timed out after {timeout:g}s")
                continue
            except OSError as exc:
                errors.append(f"{address}: {describe_os_error(exc, self.host)}")
                continue
            took = time.perf_counter() - started
            writer.close()
            self.address = address
            return self.report.add(
                "connect", True, f"{where}: {resolved}; TCP connect to {address} in {_ms(took)}"
            )
        refused = all("connection refused" in e for e in errors)
        fix = (
            f"nothing listens on port {self.port}: check the port in {self.key('url')} "
            "(the BrainyCP API is on 8002) and that the panel is up"
            if refused
            else f"a firewall or the network stops {where}: allow this host to reach it"
        )
        return self.report.add("connect", False, f"{where}: {'; '.join(errors)}", fix)

    # -- 2. TLS

    async def _handshake(self, context: ssl.SSLContext) -> tuple[str, bytes]:
        _, writer = await _deadline(
            self.panel.timeout,
            asyncio.open_connection(
                self.address, self.port, ssl=context, server_hostname=self.host
            ),
        )
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            return str(ssl_object.version()), ssl_object.getpeercert(binary_form=True) or b""
        finally:
            writer.close()

    async def tls(self) -> bool:
        try:
            protocol, der = await self._handshake(pinning_context())
        except TimeoutError:
            return self.report.add(
                "tls",
                False,
                f"no TLS handshake within {self.panel.timeout:g}s",
                f"is the panel serving plain http? try http:// in {self.key('url')}",
            )
        except OSError as exc:
            return self.report.add(
                "tls",
                False,
                describe_os_error(exc, self.host),
                f"the port may serve plain http: try http:// in {self.key('url')}",
            )
        digest = hashlib.sha256(der).digest()
        pin = format_fingerprint(digest)
        paste = f'tls_fingerprint: "{pin}"'
        lines = [protocol]
        try:
            subject, issuer, expires = certificate_facts(der)
            days = (expires - datetime.datetime.now(datetime.UTC)).days
            lines.append(f"subject {subject}")
            lines.append(f"issuer {issuer}" + (" (self-signed)" if issuer == subject else ""))
            expiry = expires.strftime("%Y-%m-%d")
            lines.append(f"expires {expiry} ({'EXPIRED' if days < 0 else f'in {days} days'})")
        except ValueError as exc:
            lines.append(str(exc))
        lines.append(f"fingerprint {pin}")
        verified = "yes"
        try:
            await self._handshake(shared_ssl_context(self.panel.tls_verify or True))
        except TimeoutError:
            verified = "no: the verifying handshake timed out"
        except OSError as exc:
            verified = f"no: {describe_os_error(exc, self.host)}"
        lines.append(f"verifies: {verified}")
        lines.append(f"to pin it: {paste}")
        detail = "\n".join(lines)
        expected = self.panel.tls_fingerprint
        if expected is not None:
            if expected == pin:
                return self.report.add("tls", True, detail + "\npinned: matches tls_fingerprint")
            return self.report.add(
                "tls",
                False,
                detail + f"\npinned: MISMATCH, tls_fingerprint is {expected}",
                f"the certificate is not the pinned one. If the panel's certificate was "
                f"renewed (check on the panel itself), set {self.key('tls_fingerprint')}: "
                f'"{pin}"',
            )
        if self.panel.tls_verify is False:
            return self.report.add(
                "tls", True, detail + "\nnot checked (tls_verify: false): pin it instead"
            )
        if verified == "yes":
            return self.report.add("tls", True, detail)
        return self.report.add(
            "tls",
            False,
            detail,
            f'pin this certificate: set {self.key("tls_fingerprint")}: "{pin}" '
            "(or give tls_verify the CA bundle that signed it)",
        )

    # -- 3. login and 4. permission

    def _client(self, style: str | None = None) -> PanelClient:
        panel = self.panel
        if style is not None:
            panel = dataclasses.replace(panel, credentials_style=style)  # type: ignore[arg-type]
        return PanelClient(panel, retry_delay=(0.0, 0.0))

    async def _count(self, style: str | None = None) -> int | BrainyCPError:
        async with self._client(style) as client:
            try:
                return await client.count_msg()
            except BrainyCPError as exc:
                return exc

    async def login(self) -> bool:
        style = self.panel.credentials_style
        result = await self._count()
        self.first = result
        if isinstance(result, BrainyCPError) and result.reason != "auth":
            if result.reason in ("permission", "api_error", "bad_detail"):
                pass  # the panel knew the login: credentials accepted
            else:
                return self.report.add(
                    "login", False, f"{result.reason}: {result.detail}", _fix_for(result, self)
                )
        if isinstance(result, BrainyCPError) and result.reason == "auth":
            others = [s for s in ("username", "login") if s != style and style != "both"]
            for other in others:
                retry = await self._count(other)
                if not (isinstance(retry, BrainyCPError) and retry.reason == "auth"):
                    return self.report.add(
                        "login",
                        False,
                        f"rejected with {STYLE_FIELDS[style]}; accepted with {STYLE_FIELDS[other]}",
                        f"set {self.key('credentials_style')}: {other} (or both)",
                    )
            return self.report.add(
                "login",
                False,
                f"the panel rejected the login with {STYLE_FIELDS[style]} ({result.detail})",
                f"check {self.key('username')} and the password; the login must exist on "
                "the panel and its group needs API access",
            )
        accepted = []
        if style == "both":
            for single in ("username", "login"):
                probe = await self._count(single)
                if not (isinstance(probe, BrainyCPError) and probe.reason == "auth"):
                    accepted.append(STYLE_FIELDS[single])
            found = " and ".join(accepted) if accepted else "only the two pairs together"
            detail = f"accepted (sent {STYLE_FIELDS[style]}); the panel accepts {found}"
        else:
            detail = f"accepted with {STYLE_FIELDS[style]} (credentials_style: {style})"
        return self.report.add("login", True, detail)

    def permission(self) -> bool:
        result = self.first
        if not isinstance(result, BrainyCPError):
            return self.report.add(
                "permission", True, "the mail module answers this login (count_msg)"
            )
        if result.reason == "permission":
            return self.report.add(
                "permission",
                False,
                "error 400: the login lacks API rights for the mail module",
                'grant the login\'s group "Full API access (administrator)" in the panel '
                '(the wiki also lists a finer right, mailserver_queue "mail-queue '
                'management", unverified)',
            )
        return self.report.add(
            "permission", False, f"{result.reason}: {result.detail}", _fix_for(result, self)
        )

    # -- 5. the read operations

    async def reads(self) -> QueueListing | None:
        listing: QueueListing | None = None
        async with self._client() as client:
            started = time.perf_counter()
            try:
                count = await client.count_msg()
                self.report.add(
                    "count_msg",
                    True,
                    f"{count} messages in {_ms(time.perf_counter() - started)}",
                )
            except BrainyCPError as exc:
                self.report.add(
                    "count_msg", False, f"{exc.reason}: {exc.detail}", _fix_for(exc, self)
                )
                count = None
            started = time.perf_counter()
            try:
                listing = await client.list_msg()
                took = time.perf_counter() - started
                parse_started = time.perf_counter()
                summary = summarize(listing.detail, zone=self.panel.zone)
                parse = time.perf_counter() - parse_started
                agrees = "" if count is None else f" (count_msg said {count})"
                detail = (
                    f"{listing.body_bytes} bytes in {_ms(took)}; {summary.messages} messages"
                    f"{agrees}, {summary.frozen} frozen; MTA {summary.flavour}; parsed in "
                    f"{_ms(parse)}; {summary.unparsed_lines} unparsed lines"
                )
                ok = listing.empty or summary.flavour != "unknown"
                self.report.add(
                    "list_msg",
                    ok,
                    detail,
                    "the listing is in a format the parser does not know: keep a copy of it "
                    "for a bug report",
                )
            except BrainyCPError as exc:
                self.report.add(
                    "list_msg", False, f"{exc.reason}: {exc.detail}", _fix_for(exc, self)
                )
            for daemon in self.panel.daemons:
                try:
                    status = await client.service(daemon, "status")
                except BrainyCPError as exc:
                    self.report.add(
                        daemon, False, f"{exc.reason}: {exc.detail}", _fix_for(exc, self)
                    )
                    continue
                text = _status_line(status.text)
                self.report.add(
                    daemon,
                    status.state != "unknown",
                    f"{status.state}: {text!r}",
                    f"the status text matches neither pattern: add one to "
                    f"{self.key('status_patterns')}.running or .stopped",
                )
        return listing

    # -- 6. the clock hint

    def clock(self, listing: QueueListing | None) -> None:
        if listing is None:
            self.report.skip(["clock"], "list_msg")
            return
        if listing.empty:
            self.report.add("clock", True, "the queue is empty: no hint")
            return
        now = time.time()
        newest: float | None = None
        flavour = summarize(listing.detail, zone=self.panel.zone).flavour
        for message in iter_messages(listing.detail, now + _CLOCK_SHIFT, zone=self.panel.zone):
            age = message.age_seconds - (0 if flavour == "exim" else _CLOCK_SHIFT)
            newest = age if newest is None else min(newest, age)
        if newest is None:
            self.report.add("clock", True, "no message with an age in the listing: no hint")
            return
        if flavour == "exim":
            self.report.add(
                "clock", True, f"newest message {_age(newest)} old (Exim prints ages: no zone)"
            )
            return
        zone = self.panel.timezone
        if newest < -_FUTURE_SLACK:
            hours = round(-newest / 3600)
            self.report.add(
                "clock",
                False,
                f"the newest message arrived {_age(newest)} in the future, read in timezone {zone}",
                f"the panel's clock zone is about {hours}h ahead of {zone}: set "
                f"{self.key('timezone')} to the panel's zone (e.g. Europe/Moscow for UTC+3)",
            )
            return
        self.report.add(
            "clock",
            True,
            f"newest message {_age(newest)} old, read in timezone {zone}; on a panel with "
            "steady mail a newest message hours old points at a wrong timezone",
        )


def _status_line(text: str) -> str:
    """The telling line of a status text (systemd's ``Active:`` line when there is one)."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    chosen = next((line for line in lines if line.startswith("Active:")), lines[0] if lines else "")
    return chosen[:120]


def _fix_for(error: BrainyCPError, doctor: Doctor) -> str:
    reason = error.reason
    if reason == "timeout":
        return f"the panel is slow or overloaded: raise {doctor.key('timeout')} or check it"
    if reason == "tls":
        return "run the doctor's tls step again: the certificate changed during the run?"
    if reason == "protocol":
        return (
            f"the answer is not valid HTTP/1.1: check that {doctor.key('url')} points at the "
            "panel's API port, and any proxy in between"
        )
    if reason == "too_large":
        return f"raise {doctor.key('max_response_bytes')}, or clean the queue"
    if reason in ("http_status", "not_json"):
        return (
            f"the URL may not be the API endpoint: {doctor.key('url')} should end in "
            "/api/api.php (or have no path), or a proxy answers instead of the panel"
        )
    if reason == "auth":
        return f"check {doctor.key('username')} and the password"
    return "see docs/panel-api.md for this reason"


# ------------------------------------------------------------------ output


def render_text(reports: Sequence[Report]) -> str:
    lines: list[str] = []
    for report in reports:
        url = report.url or "(no valid url)"
        lines.append(f"{report.panel}  {url}  {'OK' if report.ok else 'FAILED'}")
        for check in report.checks:
            mark = "skip" if check.ok is None else ("ok" if check.ok else "FAIL")
            detail_lines = check.detail.splitlines() or [""]
            lines.append(f"  {mark:<5} {check.name:<13} {detail_lines[0]}")
            lines.extend(f"  {'':<5} {'':<13} {more}" for more in detail_lines[1:])
            if check.ok is False and check.fix:
                lines.append(f"        fix: {check.fix}")
        lines.append("")
    return "\n".join(lines)


def render_json(reports: Sequence[Report]) -> str:
    return json.dumps([r.as_dict() for r in reports], indent=2, ensure_ascii=False)


# ------------------------------------------------------------------ entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainycp-mail-doctor",
        description="Check step by step that brainycp-mail can monitor each configured panel. "
        "Sends only read operations; never changes anything on a panel.",
    )
    parser.add_argument(
        "--version", action="version", version=f"brainycp-mail-doctor {__version__}"
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="the YAML config file")
    parser.add_argument("panels", nargs="*", metavar="PANEL", help="panels to check (default all)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of tables")
    return parser


async def check_panels(panels: Sequence[PanelConfig], concurrency: int = 8) -> list[Report]:
    """Run every panel's checks, a few panels at a time; reports in the given order."""
    slots = asyncio.Semaphore(concurrency)

    async def one(panel: PanelConfig) -> Report:
        async with slots:
            return await Doctor(panel).run()

    return list(await asyncio.gather(*(one(p) for p in panels)))


def config_report(name: str, problems: Sequence[str], config_path: str) -> Report:
    """The report of a panel whose config entry is broken: it fails with the reasons."""
    report = Report(name, "")
    report.add(
        "config",
        False,
        "\n".join(problems),
        f"fix panels.{name} in {config_path}; brainycp-mail-exporter --check-config"
        " checks the whole file",
    )
    return report


async def check_all(
    names: Sequence[str], config: SharedConfig, problems: dict[str, list[str]], config_path: str
) -> list[Report]:
    """Reports in ``names`` order: a broken panel's config reasons, the others checked."""
    checked = iter(await check_panels([config.panels[n] for n in names if n in config.panels]))
    return [
        next(checked) if name in config.panels else config_report(name, problems[name], config_path)
        for name in names
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``brainycp-mail-doctor``."""
    args = build_parser().parse_args(argv)
    # Each panel's own problems come back here, so the other panels are still checked.
    problems: dict[str, list[str]] = {}
    try:
        config = load_shared(args.config, panel_errors=problems)
    except ConfigError as exc:
        for line in [*exc.errors, *(e for errors in problems.values() for e in errors)]:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    unknown = [name for name in args.panels if name not in problems]
    if unknown:
        known = ", ".join(problems) or "none"
        print(
            f"no panel named {', '.join(unknown)} in {args.config} (panels: {known})",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    names = args.panels or list(problems)
    if not names:
        print(f"{args.config}: no panels configured", file=sys.stderr)
        return EXIT_CONFIG
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    reports = asyncio.run(check_all(names, config, problems, args.config))
    print(render_json(reports) if args.json else render_text(reports))
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
