"""Shared test helpers moved out of test_real_exim.py, so that no test imports another."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import require_binary

_HEADER = re.compile(r"^ ?\s?\d+[mhd] +\S+ ([0-9A-Za-z]{6}-[0-9A-Za-z-]{9,16}) ", re.M)


CONFIG_TEMPLATE = """\
# Throwaway Exim: every message stays queued; nothing is ever delivered anywhere.
primary_hostname = brainycp-test.invalid
qualify_domain = brainycp-test.invalid
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
# Messages are only queued on arrival; no daemon or queue runner is ever started.
queue_only = true
exim_user = {user}
exim_group = {group}
trusted_users = {user}
never_users = root
keep_environment =

begin routers
# Every address defers here, before any transport: a forced "exim -M" cannot deliver.
defer_everything:
  driver = redirect
  allow_defer
  data = :defer: brainycp test spool: delivery is disabled

begin transports

begin retry
# Without a retry rule a temporary failure counts as permanent and would bounce.
* * F,9000d,1d
"""


@dataclass
class EximQueue:
    """A throwaway Exim queue and the commands that are the truth about it."""

    root: Path
    config: Path
    exim: str
    exiqgrep: str

    def run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.exim, "-C", str(self.config), *args],
            input=stdin.decode() if stdin is not None else None,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return result

    def submit(self, sender: str, *recipients: str, body: str = "hello\n") -> str:
        before = set(self.ids())
        message = f"Subject: brainycp test\n\n{body}".encode()
        result = self.run("-odq", "-f", sender, *recipients, stdin=message)
        assert result.returncode == 0, result.stderr
        (new,) = set(self.ids()) - before
        return new

    def ids(self) -> list[str]:
        return _HEADER.findall(self.run("-bp").stdout)

    def count(self) -> int:
        return int(self.run("-bpc").stdout)

    def grep(self, *args: str) -> str:
        argv = [self.exiqgrep, "-E", self.exim, "-C", str(self.config), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout

    def frozen_ids(self) -> set[str]:
        return set(self.grep("-z", "-i").split())

    def frozen_count(self) -> int:
        # "2 matches out of 5 messages"
        return int(self.grep("-z", "-c").split()[0])

    def mainlog(self) -> str:
        path = self.root / "log" / "mainlog"
        return path.read_text() if path.exists() else ""


def make_queue(root: Path) -> EximQueue:
    """An empty queue under ``root`` with the never-deliver configuration."""
    exim = require_binary("exim", "apt-get install exim4-daemon-light") or ""
    exiqgrep = require_binary("exiqgrep", "apt-get install exim4-daemon-light") or ""
    root.chmod(0o755)  # Exim works as exim_user under here
    for sub in ("spool", "log"):
        (root / sub).mkdir()
    if os.getuid() == 0:
        # Exim keeps root for the spool and does its file work as exim_user.
        user = "Debian-exim"
        pw = pwd.getpwnam(user)
        for sub in ("spool", "log"):
            os.chown(root / sub, pw.pw_uid, pw.pw_gid)
        group = grp.getgrgid(pw.pw_gid).gr_name
    else:
        # "-C" makes Exim drop its setuid root: it runs as the caller, who owns everything.
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
    config = root / "exim.conf"
    config.write_text(CONFIG_TEMPLATE.format(root=root, user=user, group=group))
    return EximQueue(root, config, exim, exiqgrep)


@contextmanager
def temporary_queue() -> Iterator[EximQueue]:
    """:func:`make_queue` in a new directory, removed afterwards."""
    # Not tmp_path: pytest's directories are 0700 and Exim needs to reach the spool as
    # exim_user.
    root = Path(tempfile.mkdtemp(prefix="brainycp-exim-"))
    try:
        yield make_queue(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
