"""A throwaway PostgreSQL cluster for tests and benches: initdb in a temp dir, own port.

No system service is touched: the cluster lives in its own directory, listens on
127.0.0.1 and a free port, keeps its unix socket inside that directory, and is
stopped and removed afterwards. As root, initdb and postgres run as the
``postgres`` system user that Debian's package creates (they refuse to run as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
import pytest

from tests.harness import PortTaken, address_in_use, on_free_port
from tests.support import require_e2e

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/local/bin")
USER = "brainycp"
PASSWORD = "pg-test-password-7d1e"


def pg_bin(name: str) -> str | None:
    """Path of a PostgreSQL server binary, or None."""
    for directory in PG_BIN_DIRS:
        path = Path(directory) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which(name)


def require_pg() -> tuple[str, str]:
    """(initdb, pg_ctl); skip with the reason when missing, fail in CI."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    reason = ""
    if initdb is None or pg_ctl is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) are not installed (apt: postgresql)"
    elif os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            reason = "running as root needs the 'postgres' system user (apt: postgresql)"
    if reason:
        if require_e2e():
            pytest.fail(reason + " and BRAINYCP_REQUIRE_E2E=1")
        pytest.skip(reason)
    assert initdb is not None and pg_ctl is not None
    return initdb, pg_ctl


class Cluster:
    """One running cluster; :meth:`stop` and :meth:`start` simulate the database going away."""

    def __init__(self, root: Path, port: int, pg_ctl: str, as_user: list[str]) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.pg_ctl = pg_ctl
        self.as_user = as_user
        self.password_file = root / "password"
        self.log = root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        """Connection URL without the password (that is in :attr:`password_file`)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(database), password=PASSWORD, autocommit=True)

    def create_database(self, name: str) -> str:
        """A fresh database; returns its URL."""
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, self.pg_ctl, "-D", str(self.data), "-w", "-t", "60", *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.root} -c max_connections=100"
        )
        self._ctl("-l", str(self.log), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session (clients see their connection drop)."""
        self._ctl("-m", mode, "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


def first_start(node: Cluster, port: int) -> None:
    """Start ``node`` on ``port``; :class:`PortTaken` when another process had bound it
    (PostgreSQL takes its port as a number: :func:`tests.harness.on_free_port` tries again
    on another). Later starts (after :meth:`Cluster.stop`) keep this port."""
    node.port = port
    logged = node.log.stat().st_size if node.log.exists() else 0
    try:
        node.start()
    except subprocess.CalledProcessError:
        with open(node.log, "rb") as log:
            log.seek(logged)
            if address_in_use(log.read().decode(errors="replace")):
                raise PortTaken(f"port {port} was taken") from None
        raise


@contextmanager
def cluster(*, fsync: bool = False) -> Iterator[Cluster]:
    """Start a throwaway cluster; stop it and remove its directory after.

    ``fsync=False`` for tests (speed; a crash of this machine is not what they test);
    benches pass True to measure what production pays.
    """
    initdb, pg_ctl = require_pg()
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="brainycp-pg-"))
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
    root.chmod(0o700)
    node = Cluster(root, 0, pg_ctl, as_user)  # its port: at the first start, below
    pwfile = root / "initdb.pw"
    pwfile.write_text(PASSWORD + "\n")
    node.password_file.write_text(PASSWORD + "\n")
    node.password_file.chmod(0o600)
    if as_user:
        os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
    try:
        subprocess.run(
            [
                *as_user, initdb, "-D", str(node.data), "-U", USER, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
                "--locale=C", "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        if not fsync:
            with open(node.data / "postgresql.conf", "a") as conf:
                conf.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        on_free_port(lambda port: first_start(node, port))
        yield node
    finally:
        if node.running():
            with suppress(subprocess.CalledProcessError):
                node.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
