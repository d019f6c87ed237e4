"""Helpers of tests/test_deploy.py: build the sdist and a wheel from it, install them as
the README says into a scratch root, run processes as another user, and record the
requests a local webhook receiver gets."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sysconfig
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import PYTHON, REPO, require_e2e

DEPLOY = REPO / "deploy"
# Where the README installs the package, and so where the units run the daemons from.
VENV = "/opt/brainycp-mail/venv"
# Numeric users of the scratch root: the daemons, and prometheus (Prometheus and
# Alertmanager on Debian), and anyone else.
SERVICE_ID, PROMETHEUS_ID, OTHER_ID = 64101, 64102, 64103
# Not in the source distribution: the checkout's own state and build output.
NOT_SHIPPED = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.pyc", "*.so", "*.egg-info", ".pytest_cache",
    ".mypy_cache", ".ruff_cache", ".hypothesis", "build", "dist", "tmp",
)  # fmt: skip


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``args``; the result, whatever the exit code (the caller asserts)."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [str(a) for a in args], capture_output=True, text=True, timeout=300, check=False,
        **kwargs,
    )  # fmt: skip


def open_dir(prefix: str) -> Path:
    """A new directory under /tmp that other users can walk into (pytest's are 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def as_user(uid: int, *args: str | Path) -> list[str]:
    """``args`` run as ``uid`` (primary group ``uid``, no others), through setpriv."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv is missing (util-linux)")
    return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *map(str, args)]


@dataclass
class Dists:
    sdist: Path
    wheel: Path
    source: Path
    """The unpacked sdist: the source tree an operator installs from."""


def build_dists(workdir: Path) -> Dists:
    """``python -m build --no-isolation`` on a copy of the checkout (the build writes
    egg-info beside the sources): the sdist, then a wheel built from the sdist."""
    if importlib.util.find_spec("build") is None:
        reason = "the 'build' package is not installed (pip install -e '.[dev]')"
        if require_e2e():
            pytest.fail(reason)
        pytest.skip(reason)
    copy = workdir / "checkout"
    shutil.copytree(REPO, copy, ignore=NOT_SHIPPED)
    out = workdir / "dist"
    result = run(PYTHON, "-m", "build", "--no-isolation", "--outdir", out, copy)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    with tarfile.open(sdist) as archive:
        archive.extractall(workdir / "unpacked", filter="tar")
    (source,) = (workdir / "unpacked").iterdir()
    return Dists(sdist, wheel, source)


def sdist_names(sdist: Path) -> set[str]:
    """The sdist's file names, relative to its top directory."""
    with tarfile.open(sdist) as archive:
        return {m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile()}


def install_venv(root: Path, wheel: Path) -> Path:
    """README step 1 (``python3 -m venv VENV; VENV/bin/pip install .``) under ``root``,
    without downloads: the wheel built from the sdist goes into a new virtualenv, and
    its dependencies come from this checkout's virtualenv through a ``.pth`` file."""
    venv = root / VENV.lstrip("/")
    result = run(PYTHON, "-m", "venv", "--without-pip", venv)
    assert result.returncode == 0, result.stderr
    python = venv / "bin" / "python"
    result = run(
        PYTHON, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
        "--no-index", wheel,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site.stdout.strip()) / "test-dependencies.pth").write_text("\n".join(sorted(ours)))
    return venv


def install_files(
    source: Path, destdir: Path, *, user: int | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """README step 2: ``sh deploy/install-files.sh`` of ``source`` into ``destdir``."""
    settings = {
        "DESTDIR": str(destdir),
        "SERVICE_USER": str(SERVICE_ID),
        "PROMETHEUS_USER": str(PROMETHEUS_ID),
        **env,
    }
    command = ["sh", str(source / "deploy" / "install-files.sh")]
    if user is not None:
        command = as_user(user, "env", *(f"{k}={v}" for k, v in settings.items()), *command)
        return run(*command)
    return run(*command, env={**os.environ, **settings})


def setup_verify_root(root: Path) -> None:
    """What ``systemd-analyze verify --root`` looks up inside the root besides the units:
    systemd's own units (sysinit.target, ...) and ``/bin/kill`` of ``ExecReload=``."""
    units = Path("/usr/lib/systemd/system")
    if not units.is_dir():
        units = Path("/lib/systemd/system")
    shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    kill = shutil.which("kill") or "/bin/kill"
    shutil.copy2(kill, root / "usr/bin/kill")
    for link in ("bin", "lib"):
        if not (root / link).exists():
            (root / link).symlink_to(f"usr/{link}")


@dataclass
class Received:
    path: str
    authorization: str
    body: dict[str, object]


@dataclass
class Receiver:
    """A webhook receiver on a port the kernel chose; it records every POST."""

    url: str
    requests: list[Received] = field(default_factory=list)


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    received: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            received.append(Received(self.path, self.headers.get("authorization", ""), body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def writable_by(uid: int, prefix: str) -> Path:
    """A fresh directory under /tmp owned by ``uid`` (a daemon's storage)."""
    path = open_dir(prefix)
    os.chown(path, uid, uid)
    return path
