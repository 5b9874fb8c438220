"""The ``chaosproxy`` command line: run, validate, schema, demo.

Exit codes: 0 success (a clean shutdown on SIGINT or SIGTERM included), 2 bad
input (a configuration file, a flag), 1 anything else, reported in one line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from chaosproxy.admin import AdminExposedError
from chaosproxy.config import ConfigError, ProxyConfig, config_schema, load_config
from chaosproxy.logs import configure_logging
from chaosproxy.server import ChaosProxy
from chaosproxy.workers import refusal, serve_workers

__all__ = ["main"]

logger = logging.getLogger("chaosproxy.server")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

# Net allocations between two collections of the youngest generation (see
# _tune_collector); CPython's default is 700.
_GC_THRESHOLD = 100_000
# With collections that rare, garbage in reference cycles could wait hours in a
# proxy forwarding steady traffic, whose requests are freed by reference
# counting and so barely count: in the 5-minute soak the admin API's answers
# alone left 3,400 such objects a minute and RSS crept up 0.45 MiB a minute. A
# full collection on a timer bounds that garbage by time; it scans only what was
# made since start (the rest is frozen), 3 to 5 ms in the soak.
_COLLECT_EVERY_SECONDS = 30.0

# Flags of ``run`` that override a field of the file, and that field's name.
_OVERRIDES = {
    "listen": "listen",
    "upstream": "upstream",
    "admin": "admin",
    "seed": "seed",
}


class BadInput(Exception):
    """A flag or file the user gave is wrong; the message says which and how."""


def _fail(message: str) -> None:
    """Print ``message`` as the program's one-line complaint."""
    print(f"chaosproxy: {message}", file=sys.stderr)


def _given_overrides(args: argparse.Namespace) -> dict[str, object]:
    """Return the fields that ``run`` flags set, by field name."""
    return {
        field: getattr(args, flag)
        for flag, field in _OVERRIDES.items()
        if getattr(args, flag) is not None
    }


def _apply_overrides(config: ProxyConfig, args: argparse.Namespace) -> ProxyConfig:
    """Return ``config`` with the ``run`` flags that were given applied."""
    given = _given_overrides(args)
    if not given:
        return config
    data: dict[str, Any] = config.model_dump(mode="json", exclude_unset=True)
    data.update(given)
    try:
        return ProxyConfig.model_validate(data)
    except ValidationError as exc:
        flags = {field: flag for flag, field in _OVERRIDES.items()}
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            where = f"--{flags[field]}" if field in flags else args.config
            problems.append(f"{where}: {error['msg']}, got {error.get('input')!r}")
        raise BadInput("\n".join(problems)) from exc


async def _serve(
    proxy: ChaosProxy,
    args: argparse.Namespace,
    sock: socket.socket | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run ``proxy`` until SIGINT or SIGTERM, reloading the file on SIGHUP.

    A worker of ``--workers`` serves on ``sock`` and reports readiness through
    ``on_ready``; its supervisor writes the one "ready" line.
    """
    # Taken before the proxy is ready: a change made right after the ready line
    # must still count as a change.
    seen = _fingerprint(args.config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Reloads run as tasks (a signal handler cannot await); kept referenced here.
    reloads: set[asyncio.Task[None]] = set()
    loop.add_signal_handler(signal.SIGHUP, _reload_soon, proxy, reloads)

    await proxy.start(sock)
    collector = asyncio.create_task(
        _collect_garbage(_COLLECT_EVERY_SECONDS), name="chaosproxy-gc"
    )
    watcher = None
    if args.watch:
        watcher = asyncio.create_task(
            _watch(proxy, args.config, seen), name="chaosproxy-config-watch"
        )
    if on_ready is not None:
        on_ready()
    else:
        logger.info(
            "ready",
            extra={
                "listen": proxy.url,
                "admin": proxy.admin_url or "off",
                "upstream": proxy.config.upstream,
            },
        )
    try:
        await stop.wait()
        logger.info("shutting down")
    finally:
        for task in (collector, watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await proxy.stop()
    logger.info("stopped")


def _fingerprint(path: str) -> tuple[float, int] | None:
    """Return the file's modification time and size, or None if it is missing."""
    try:
        stat = os.stat(path)
    except OSError:
        return None

    return (stat.st_mtime, stat.st_size)


async def _watch(
    proxy: ChaosProxy,
    path: str,
    seen: tuple[float, int] | None,
    interval: float = 1.0,
) -> None:
    """Reload the file whenever it differs from ``seen`` (``--watch``).

    Polling the modification time and size once a second works on every file
    system, including a Kubernetes ConfigMap volume, whose updates arrive as an
    atomic swap of a symbolic link that inotify watchers often miss.
    """
    while True:
        await asyncio.sleep(interval)
        current = _fingerprint(path)
        if current is not None and current != seen:
            seen = current
            await _reload(proxy)


async def _reload(proxy: ChaosProxy) -> None:
    """Re-read the configuration file; a bad file keeps the old rules in force.

    The proxy logs the outcome either way, so a refusal needs nothing more here.
    """
    with contextlib.suppress(ConfigError):
        await proxy.reload()


def _reload_soon(proxy: ChaosProxy, reloads: set[asyncio.Task[None]]) -> None:
    """Start a reload from a signal handler, keeping its task referenced."""
    task = asyncio.create_task(_reload(proxy), name="chaosproxy-reload")
    reloads.add(task)
    task.add_done_callback(reloads.discard)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return uvloop's loop factory when uvloop is installed, else None (asyncio's).

    uvloop roughly doubles the requests a core can proxy; the proxy behaves the
    same on either loop.
    """
    try:
        import uvloop
    except ImportError:
        return None

    return uvloop.new_event_loop


def _raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard limit.

    Every proxied request holds two sockets (client and upstream); the common soft
    default of 1024 would cap a proxy near 500 concurrent requests.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _tune_collector() -> None:
    """Make the cyclic garbage collector cheap for a proxy holding many requests.

    With CPython's defaults, a collection runs every 700 net allocations and
    scans every young object still alive, which in a proxy is every request in
    flight: measured with 1000 clients held by a 100 ms latency fault, the
    collector took a fifth of the CPU. Nearly all of a request's objects are
    freed by reference counting, so collections can be rare without memory
    growing: what was loaded at start is frozen out of every scan, and a
    collection waits for 100,000 net allocations. Garbage in reference cycles
    is still collected: by ``_collect_garbage``, on a timer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_THRESHOLD, 20, 10)


async def _collect_garbage(every: float) -> None:
    """Run a full collection every ``every`` seconds (see _COLLECT_EVERY_SECONDS)."""
    while True:
        await asyncio.sleep(every)
        gc.collect()


def _cmd_run(args: argparse.Namespace) -> int:
    """``chaosproxy run``: serve until told to stop."""
    configure_logging(args.log_format, access_log=args.access_log)
    _raise_open_file_limit()
    try:
        config = _apply_overrides(load_config(args.config), args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except BadInput as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT

    refused = refusal(args.workers, config.admin, args.observations_file)
    if refused is not None:
        _fail(refused)
        return EXIT_BAD_INPUT
    _tune_collector()
    if args.workers > 1:
        return _run_workers(config, args)

    proxy = ChaosProxy(
        config,
        observations_file=args.observations_file,
        config_path=args.config,
        config_overrides=_given_overrides(args),
    )
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(proxy, args))
    except AdminExposedError as exc:
        _fail(str(exc))
        return EXIT_BAD_INPUT
    except OSError as exc:
        _fail(f"cannot serve on {config.listen}: {exc.strerror or exc}")
        return EXIT_FAILURE

    return EXIT_OK


def _run_workers(config: ProxyConfig, args: argparse.Namespace) -> int:
    """``run --workers N``: N processes on one port (see chaosproxy.workers)."""

    def start(sock: socket.socket, on_ready: Callable[[], None]) -> int:
        proxy = ChaosProxy(
            config, config_path=args.config, config_overrides=_given_overrides(args)
        )
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(proxy, args, sock, on_ready))
        return EXIT_OK

    host, port = config.listen_address
    # Each worker's ChaosProxy keeps its default grace of 10 s for in-flight
    # requests; the supervisor waits that long (and a margin) before killing.
    grace = 10.0
    try:
        return serve_workers(args.workers, host, port, grace, start)
    except OSError as exc:
        _fail(f"cannot serve on {config.listen}: {exc.strerror or exc}")
        return EXIT_FAILURE


def _cmd_validate(args: argparse.Namespace) -> int:
    """``chaosproxy validate``: print ``ok`` or every problem in the file."""
    try:
        load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    print("ok")

    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    """``chaosproxy schema``: print the configuration file's JSON Schema."""
    print(json.dumps(config_schema(), indent=2))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    """``chaosproxy demo``: built-in upstream, proxy and traffic, then a summary."""
    from chaosproxy.demo import run_demo

    return run_demo(seconds=args.seconds)


def _positive_int(text: str) -> int:
    """Parse a whole number of at least 1, for argparse."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")

    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="chaosproxy",
        description="A fault-injecting HTTP reverse proxy for resilience testing.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="serve a configuration file")
    run.add_argument("-c", "--config", required=True, help="the YAML configuration")
    run.add_argument("--listen", help="host:port to serve on (overrides the file)")
    run.add_argument("--upstream", help="scheme://host:port[/base] to forward to")
    run.add_argument("--admin", help="host:port for the admin API")
    run.add_argument("--seed", type=int, help="make fault decisions reproducible")
    run.add_argument("--workers", type=_positive_int, default=1, help="processes")
    run.add_argument("--observations-file", help="append observations as JSON lines")
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="do not log a line per request",
    )
    run.add_argument(
        "--watch", action="store_true", help="reload when the file changes"
    )
    run.set_defaults(func=_cmd_run)

    validate = commands.add_parser("validate", help="check a configuration file")
    validate.add_argument("file")
    validate.set_defaults(func=_cmd_validate)

    schema = commands.add_parser("schema", help="print the config's JSON Schema")
    schema.set_defaults(func=_cmd_schema)

    demo = commands.add_parser("demo", help="watch faults act on a built-in service")
    demo.add_argument("--seconds", type=_positive_int, default=10)
    demo.set_defaults(func=_cmd_demo)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return int(args.func(args))

    return EXIT_OK
