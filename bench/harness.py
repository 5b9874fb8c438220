"""The benchmark's moving parts: an nginx upstream, pinned processes, wrk runs.

Every process a benchmark starts is recorded and stopped by its PID, even when the
benchmark fails half-way (use :class:`Processes` as a context manager). Nothing is
sent anywhere but 127.0.0.1.

Layout on a 2-core machine: the process under test is pinned to core 1; nginx and
wrk share core 0, so the proxy's figures are those of one core.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "LOAD_CORE",
    "PROXY_CORE",
    "Processes",
    "WrkResult",
    "cpu_seconds",
    "free_port",
    "raise_open_file_limit",
    "require_tools",
    "rss_mib",
    "start_nginx",
    "start_proxy",
    "wait_for_port",
    "wrk",
]

PROXY_CORE = "1"
LOAD_CORE = "0"

# Debian package of each program the benchmark runs.
_APT_PACKAGES = {"wrk": "wrk", "nginx": "nginx-light", "taskset": "util-linux"}

# Printed by wrk's done() hook as one JSON line, so no text output is scraped.
_WRK_REPORT = """
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, '
    .. '"read_errors": %d, "write_errors": %d, "timeouts": %d, "non2xx": %d, '
    .. '"min_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, summary.bytes, errors.connect,
    errors.read, errors.write, errors.timeout, errors.status,
    latency.min, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


def require_tools(*names: str, install: bool = False) -> None:
    """Make sure the programs the benchmark drives are installed.

    With ``install`` (and root with apt-get), missing ones are installed from
    Debian's packages; otherwise the run stops with the exact command to run.
    """
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return
    packages = sorted({_APT_PACKAGES.get(name, name) for name in missing})
    command = f"apt-get install -y {' '.join(packages)}"
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"bench: installing {' '.join(packages)} with apt-get", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True)
        return
    sys.exit(f"bench: missing {', '.join(missing)}; install with `{command}`")


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system, all threads) process ``pid`` has used."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5), counted after the command name's ")".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(pid: int, timeout: float = 10.0) -> None:
    """Wait until process ``pid`` is idle: under 2% of a core for 200 ms.

    Every measurement starts with the proxy idle, so that one does not carry the
    tail of the last: wrk closing 1000 connections costs a proxy tens of
    milliseconds of work (a Python one more than Envoy), which would otherwise
    land on the first requests of the next run. Gives up after ``timeout``.
    """
    window = 0.2
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(window)
        if cpu_seconds(pid) - before <= 0.02 * window:
            return


def rss_mib(pid: int) -> float:
    """Return the resident memory of process ``pid`` in MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def raise_open_file_limit() -> None:
    """Lift this process's (and so its children's) open-file limit to the hard one.

    wrk and every proxy hold a socket per connection, two for the proxies: 1000
    connections need more than the usual soft limit of 1024.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


class Processes:
    """Started processes, stopped by PID (TERM, then KILL) when the block ends."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``argv`` with output discarded unless redirected by ``kwargs``."""
        options: dict[str, object] = {
            "stdout": subprocess.DEVNULL,
            "stderr": subprocess.DEVNULL,
        }
        options.update(kwargs)
        process = subprocess.Popen(argv, **options)  # type: ignore[call-overload]
        self.started.append(process)
        return process  # type: ignore[no-any-return]

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """Stop one process by its PID and wait for it."""
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        if process in self.started:
            self.started.remove(process)

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for process in list(reversed(self.started)):
            self.stop(process)


def start_nginx(procs: Processes, workdir: Path) -> int:
    """Start nginx on core 0 serving /1k (1 KiB) and /1m (1 MiB); return its port."""
    port = free_port()
    root = workdir / "www"
    root.mkdir(exist_ok=True)
    (root / "1k").write_bytes(b"x" * 1024)
    (root / "1m").write_bytes(b"y" * (1 << 20))
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
worker_processes 1;
user root;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        root {root};
    }}
}}
""",
        encoding="utf-8",
    )
    procs.start(
        ["taskset", "-c", LOAD_CORE, "nginx", "-c", str(conf), "-p", str(workdir)]
    )
    wait_for_port(port)
    return port


def start_proxy(
    procs: Processes,
    workdir: Path,
    config_yaml: str,
    name: str = "proxy",
    *,
    cores: str = PROXY_CORE,
    extra_args: tuple[str, ...] = (),
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``chaosproxy run`` pinned to ``cores`` (core 1) with access logs off."""
    port = free_port()
    path = workdir / f"{name}.yaml"
    path.write_text(config_yaml.replace("LISTEN", f"127.0.0.1:{port}"), "utf-8")
    with open(workdir / f"{name}.log", "wb") as log:
        # The child writes through its own copy of the descriptor.
        process = procs.start(
            [
                "taskset",
                "-c",
                cores,
                sys.executable,
                "-m",
                "chaosproxy",
                "run",
                "-c",
                str(path),
                "--no-access-log",
                *extra_args,
            ],
            stderr=log,
        )
    wait_for_port(port)
    return process, port


@dataclass(frozen=True)
class WrkResult:
    """One wrk run's figures; latencies in milliseconds."""

    requests: int
    seconds: float
    errors: int
    non2xx: int
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    bytes: int

    @property
    def rps(self) -> float:
        """Requests per second over the run."""
        return self.requests / self.seconds


def wrk(
    url: str,
    connections: int,
    seconds: float,
    timeout_s: int = 10,
    cores: str = LOAD_CORE,
) -> WrkResult:
    """Run wrk (one thread, pinned to core 0) against ``url`` and parse its report."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_REPORT)
    try:
        out = subprocess.run(
            [
                "taskset",
                "-c",
                cores,
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                f"--timeout={timeout_s}s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        os.unlink(script.name)
    doc = json.loads(out.strip().splitlines()[-1])
    errors = (
        doc["connect_errors"]
        + doc["read_errors"]
        + doc["write_errors"]
        + doc["timeouts"]
    )
    return WrkResult(
        requests=doc["requests"],
        seconds=doc["duration_us"] / 1e6,
        errors=errors,
        non2xx=doc["non2xx"],
        min_ms=doc["min_us"] / 1000,
        p50_ms=doc["p50_us"] / 1000,
        p90_ms=doc["p90_us"] / 1000,
        p99_ms=doc["p99_us"] / 1000,
        max_ms=doc["max_us"] / 1000,
        bytes=doc["bytes"],
    )
