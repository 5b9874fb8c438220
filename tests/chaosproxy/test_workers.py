"""``run --workers N``: several processes on one port, started and stopped as one."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from chaosproxy.workers import refusal
from tests.chaosproxy.test_cli import Running, chaosproxy, free_port, write_config
from tests.conftest import Upstream


def _children(pid: int) -> list[int]:
    """Return the PIDs of ``pid``'s child processes."""
    path = f"/proc/{pid}/task/{pid}/children"
    with open(path, encoding="ascii") as children:
        return [int(child) for child in children.read().split()]


async def test_two_workers_share_the_port_and_stop_on_sigterm(
    tmp_path: Path, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    """Two workers answer on one port; one ready line; SIGTERM ends both, exit 0."""
    port = free_port()
    path = write_config(tmp_path, upstream.url, f"127.0.0.1:{port}")
    proc = Running("-c", str(path), "--workers", "2", "--log-format", "json")
    try:
        await _serve_and_stop(proc, port, upstream, client)
    finally:
        proc.close()


async def _serve_and_stop(
    proc: Running, port: int, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    """Check the ready line, traffic through both workers' port, and the stop."""
    ready = json.loads(proc.wait_for(r'"event": "ready"'))
    assert (ready["listen"], ready["workers"]) == (f"http://127.0.0.1:{port}", 2)
    workers = _children(proc.process.pid)
    assert len(workers) == 2

    for _ in range(20):
        async with client.get(f"http://127.0.0.1:{port}/echo") as resp:
            assert resp.status == 200
    assert upstream.hits["/echo"] == 20

    assert proc.stop(signal.SIGTERM) == 0
    assert all(_gone(pid) for pid in workers)
    assert sum("ready" in line for line in proc.lines) == 1


def _gone(pid: int) -> bool:
    """Return whether ``pid`` has exited (reaped, or a zombie awaiting it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_workers_with_admin_are_refused_with_exit_2(tmp_path: Path) -> None:
    """The admin API would steer one worker of N: refused before anything starts."""
    path = write_config(
        tmp_path, "http://127.0.0.1:9000", "127.0.0.1:0", 'admin: "127.0.0.1:0"\n'
    )
    result = chaosproxy("run", "-c", str(path), "--workers", "2")
    assert result.returncode == 2
    assert "--workers" in result.stderr
    assert "admin" in result.stderr


@pytest.mark.parametrize(
    ("workers", "admin", "file", "refused"),
    [
        (1, "127.0.0.1:9", "obs.jsonl", False),
        (2, None, None, False),
        (2, "127.0.0.1:9", None, True),
        (2, None, "obs.jsonl", True),
    ],
    ids=["one-worker-anything", "two-plain", "two-admin", "two-observations-file"],
)
def test_refusal_names_what_workers_cannot_share(
    workers: int, admin: str | None, file: str | None, refused: bool
) -> None:
    """Only settings whose state would split across workers are refused."""
    assert (refusal(workers, admin, file) is not None) == refused


def test_a_dead_worker_stops_the_others_and_exits_1(tmp_path: Path) -> None:
    """A worker killed from outside: the supervisor stops the rest and exits 1."""
    path = write_config(tmp_path, "http://127.0.0.1:9", f"127.0.0.1:{free_port()}")
    proc = Running("-c", str(path), "--workers", "2")
    try:
        proc.wait_for("ready")
        first, second = _children(proc.process.pid)
        os.kill(first, signal.SIGKILL)
        assert proc.process.wait(timeout=20) == 1
        assert _gone(second)
    finally:
        proc.close()
