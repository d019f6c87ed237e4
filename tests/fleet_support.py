"""A fleet of remediator replicas on one PostgreSQL journal, for the tests that run real
replicas: a simulator with 20 quiet panels, the replicas, and ways to drive and inspect
them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.harness import serving
from tests.pg import PASSWORD, Cluster
from tests.remediator_support import TOKEN, am_alert, notification, remediator_cmd
from tests.support import read_answer, sim_args, wait_until

_databases = iter(range(1, 10_000))


def fleet_db(pg: Cluster) -> str:
    """A fresh database for one fleet; its URL."""
    return pg.create_database(f"fleet{next(_databases)}")


@dataclass
class Fleet:
    sim: str
    urls: list[str]
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]
    db: str
    pg: Cluster

    def rows(self) -> list[tuple[Any, ...]]:
        with self.pg.connect(self.db) as conn:
            return conn.execute(
                "SELECT id, dedupe_key, outcome, lease_owner FROM actions ORDER BY id"
            ).fetchall()

    def calls(self, panel: str) -> list[tuple[str, str]]:
        state = httpx.get(f"{self.sim}/panel/{panel}/_sim/state", timeout=10).json()
        return [(c["operation"], c["params"].get("command", "")) for c in state["calls"]]

    def sim_post(self, panel: str, what: str, body: dict[str, Any]) -> None:
        httpx.post(f"{self.sim}/panel/{panel}/_sim/{what}", json=body, timeout=5).raise_for_status()

    def listings(self) -> int:
        """How many times the fleet's panels were asked for their queue (``list_msg``)."""
        return sum(op == "list_msg" for p in FLEET_PANELS for op, _ in self.calls(p))


FLEET_PANELS = [f"p{i:02d}" for i in range(20)]
FLEET_RULES: list[dict[str, Any]] = [
    {"name": "clean-frozen", "matchers": ['alertname="Frozen"'], "action": "delete_frozen",
     "cooldown": "0s"},
    {"name": "restart-clamav", "matchers": ['alertname="ClamAVDown"'],
     "action": "restart_service", "daemon": "clamav", "cooldown": "0s"},
    {"name": "drop-bounces", "matchers": ['alertname="Bounces"'], "action": "delete_messages",
     "select": {"bounce": True}, "cooldown": "0s"},
]  # fmt: skip


@contextmanager
def fleet(
    pg: Cluster,
    tmp: Path,
    replicas: int,
    lease: str = "30s",
    extra_args: tuple[str, ...] = (),
    rules: list[dict[str, Any]] = FLEET_RULES,
) -> Iterator[Fleet]:
    """A simulator with 20 quiet panels and ``replicas`` remediators on one fresh database."""
    db_url = fleet_db(pg)
    token = tmp / "webhook.token"
    token.write_text(TOKEN + "\n")
    secret = tmp / "panel.pw"
    secret.write_text("admin\n")
    args = sim_args(0, "--seed", "7")
    for name in FLEET_PANELS:
        args += ["--panel", f"{name}:quiet:exim"]
    with ExitStack() as stack:
        sim = stack.enter_context(serving(args, log=tmp / "sim.log")).url
        for name in FLEET_PANELS:
            httpx.post(f"{sim}/panel/{name}/_sim/pause", json={"paused": True}).raise_for_status()
        urls, procs, logs = [], [], []
        for n in range(replicas):
            config = {
                "defaults": {"username": "admin", "password_file": str(secret), "timeout": "60s"},
                "panels": {
                    name: {"url": f"{sim}/panel/{name}/api/api.php"} for name in FLEET_PANELS
                },
                "remediator": {
                    "auth": {"bearer_token_file": str(token)},
                    "journal": {
                        "url": db_url, "password_file": str(pg.password_file), "lease": lease,
                    },
                    "max_concurrent_actions": 8,
                    "action_timeout": "60s",
                    "rate_limit": {"max_actions": 100000, "per": "1h"},
                    "rules": rules,
                },
            }  # fmt: skip
            path = tmp / f"replica{n}.yml"
            path.write_text(yaml.safe_dump(config))
            log = tmp / f"replica{n}.log"
            replica = stack.enter_context(
                serving(
                    remediator_cmd(path, *extra_args),
                    log=log,
                    ready_path=None if extra_args else "/healthz",
                    timeout=30,
                )
            )
            url = replica.url
            procs.append(replica.proc)
            if extra_args:  # a web config may guard /healthz: wait for the port instead
                wait_until(lambda u=url: _answers(u), timeout=30, what=f"{url} listening")
            urls.append(url)
            logs.append(log)
        yield Fleet(sim, urls, procs, logs, db_url.rsplit("/", 1)[1], pg)
    for log in logs:
        text = log.read_text()
        assert PASSWORD not in text and TOKEN not in text, log


def tcp_ports(pid: int) -> set[int]:
    """The local ports of the TCP sockets process ``pid`` has open (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=2)
    except httpx.HTTPError:
        return False
    return True


def episode(i: int, alertname: str = "Frozen") -> dict[str, Any]:
    panel = FLEET_PANELS[i % len(FLEET_PANELS)]
    return notification(am_alert(alertname, panel, starts_at=f"2026-11-25T08:{i:06d}Z"))


async def _post_raw(
    url: str, bodies: list[dict[str, Any]], answers: list[tuple[int, dict[str, Any]]]
) -> None:
    """POST ``bodies`` one after another on one keep-alive connection (a bare HTTP/1.1
    client: httpx's CPU per request would make the sender the bottleneck)."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for body in bodies:
            data = json.dumps(body).encode()
            writer.write(
                b"POST /webhook HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                + data
            )
            head, answer = await read_answer(reader)
            answers.append((int(head.split()[1]), json.loads(answer)))
    finally:
        writer.close()


def send_to_every_replica(
    f: Fleet, episodes: int, copies: int, connections: int = 8
) -> list[tuple[int, dict[str, Any]]]:
    """Every episode to every replica ``copies`` times, interleaved, all concurrently:
    ``connections`` keep-alive connections per replica."""
    answers: list[tuple[int, dict[str, Any]]] = []
    bodies = [episode(i) for _ in range(copies) for i in range(episodes)]

    async def main() -> None:
        await asyncio.gather(
            *(
                _post_raw(url, bodies[n::connections], answers)
                for url in f.urls
                for n in range(connections)
            )
        )

    asyncio.run(main())
    return answers
