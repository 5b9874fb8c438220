"""The command line, run as a user runs it: a subprocess, real signals, real sockets."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Upstream

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chaosproxy(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``python -m chaosproxy`` to completion and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "chaosproxy", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


class Running:
    """A ``chaosproxy run`` subprocess, stopped by its PID when the test ends."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chaosproxy", "run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.lines: list[str] = []

    def wait_for(self, pattern: str, timeout: float = 20) -> str:
        """Read stderr lines until one matches ``pattern``; return it."""
        assert self.process.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matched {pattern!r}: {self.lines}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send ``signum`` and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout)
        self.close()
        return code

    def close(self) -> None:
        """Kill the process if it still runs, and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Processes started by a test; any still alive are killed at the end."""
    procs: list[Running] = []
    yield procs
    for proc in procs:
        proc.close()


def write_config(tmp_path: Path, upstream: str, listen: str, extra: str = "") -> Path:
    path = tmp_path / "proxy.yaml"
    path.write_text(
        f'version: 1\nlisten: "{listen}"\nupstream: "{upstream}"\n{extra}',
        encoding="utf-8",
    )
    return path


def test_validate_good_file_prints_ok(tmp_path: Path) -> None:
    """``validate`` on a good file prints ok and exits 0."""
    path = write_config(tmp_path, "http://127.0.0.1:9000", "127.0.0.1:8080")
    result = chaosproxy("validate", str(path))
    assert (result.returncode, result.stdout.strip()) == (0, "ok")


def test_validate_bad_file_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    """``validate`` on a bad file names file, line, path and value of each problem."""
    extra = (
        "routes:\n"
        "  - name: a\n"
        "    faults:\n"
        "      - {fault_type: latency, probability: 1.5, duration_ms: 10}\n"
        "surprise: 1\n"
    )
    path = write_config(tmp_path, "http://127.0.0.1:9000", "127.0.0.1:8080", extra)
    result = chaosproxy("validate", str(path))

    assert result.returncode == 2
    assert "proxy.yaml:7: routes[0].faults[0].probability" in result.stderr
    assert "1.5" in result.stderr
    assert "proxy.yaml:8: surprise" in result.stderr


def test_schema_prints_a_json_schema() -> None:
    """``schema`` prints a JSON Schema that requires version and upstream."""
    result = chaosproxy("schema")
    schema = json.loads(result.stdout)
    assert result.returncode == 0
    assert {"version", "upstream"} <= set(schema["required"])


def test_run_with_bad_file_exits_2_without_serving(tmp_path: Path) -> None:
    """A bad file never starts a proxy: exit 2 and the problem on stderr."""
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nupstream: nope\n", encoding="utf-8")
    result = chaosproxy("run", "-c", str(path))
    assert result.returncode == 2
    assert "bad.yaml:2: upstream" in result.stderr


def test_run_with_bad_flag_names_the_flag(tmp_path: Path) -> None:
    """A bad override flag exits 2 naming the flag."""
    path = write_config(tmp_path, "http://127.0.0.1:9000", "127.0.0.1:0")
    result = chaosproxy("run", "-c", str(path), "--listen", "nohost")
    assert result.returncode == 2
    assert "--listen" in result.stderr


def test_port_in_use_exits_1_with_one_line(tmp_path: Path) -> None:
    """A port already taken: exit 1 and a one-line message, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config(tmp_path, "http://127.0.0.1:9000", f"127.0.0.1:{port}")
        result = chaosproxy("run", "-c", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"127.0.0.1:{port}" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_run_serves_logs_ready_and_stops_cleanly(
    tmp_path: Path, running: list[Running], signum: int
) -> None:
    """``run`` logs one ready line with its address, proxies, and exits 0 on signal."""
    import urllib.request

    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(upstream_port), "-b", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        (tmp_path / "hello.txt").write_text("hello", encoding="utf-8")
        port = free_port()
        path = write_config(
            tmp_path, f"http://127.0.0.1:{upstream_port}", f"127.0.0.1:{port}"
        )
        proc = Running("-c", str(path), "--log-format", "json")
        running.append(proc)
        ready = json.loads(proc.wait_for(r'"event": "ready"'))
        assert ready["listen"] == f"http://127.0.0.1:{port}"

        body = b""
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello.txt") as r:
                    body = r.read()
                break
            except OSError:
                time.sleep(0.1)
        assert body == b"hello"
        access = json.loads(proc.wait_for(r'"event": "request"'))
        assert (access["path"], access["status"]) == ("/hello.txt", 200)
        assert proc.stop(signum) == 0
    finally:
        upstream.terminate()
        upstream.wait()


def test_python_dash_m_and_console_script_agree() -> None:
    """``python -m chaosproxy --help`` works and names every subcommand."""
    result = chaosproxy("--help")
    assert result.returncode == 0
    for command in ("run", "validate", "schema", "demo"):
        assert command in result.stdout
    assert os.path.exists(ROOT / "chaosproxy" / "__main__.py")


async def test_sigterm_lets_in_flight_requests_finish(
    tmp_path: Path, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    """A request in flight when SIGTERM arrives still gets its answer; exit is 0."""
    import asyncio

    port = free_port()
    path = write_config(tmp_path, upstream.url, f"127.0.0.1:{port}")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chaosproxy",
        "run",
        "-c",
        str(path),
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        while b"ready" not in await process.stderr.readline():
            pass
        slow = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/slow/1000"))
        while upstream.hits["/slow/1000"] == 0:
            await asyncio.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        async with await slow as resp:
            assert resp.status == 200
            assert await resp.text() == "slow"
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
