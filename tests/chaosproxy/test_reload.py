"""Reloading the configuration file: POST /reload, SIGHUP and --watch."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from aumai_chaos import ExperimentStatus
from chaosproxy.client import AdminClient, AdminError
from chaosproxy.server import ChaosProxy
from tests.chaosproxy.adminkit import ROUTES, call, send, start_admin_proxy
from tests.chaosproxy.test_cli import Running, chaosproxy, free_port, running
from tests.conftest import (
    ProxyFactory,
    Upstream,
    make_upstream_app,
    proxy_yaml,
    serve_app,
)

__all__ = ["running"]  # the fixture, imported for the CLI tests below

PAY_ERROR = """
routes:
  - name: pay
    match: {path: "/api/pay/**"}
    component: payments
    faults: [{fault_type: error, error_code: 500}]
  - name: search
    match: {path: "/api/search/**"}
    component: search
"""


def write(path: Path, text: str) -> None:
    """Write a configuration file (small, so fine to do on the loop)."""
    path.write_text(text, encoding="utf-8")


async def start_from_file(
    start_proxy: ProxyFactory, path: Path, text: str
) -> tuple[ChaosProxy, AdminClient]:
    """Write ``text`` to ``path`` and start a proxy that knows it came from there."""
    write(path, text)
    proxy = await start_proxy(text, config_path=path)
    assert proxy.admin_url is not None

    return proxy, AdminClient(proxy.admin_url)


def file_text(upstream_url: str, body: str = ROUTES, **top: object) -> str:
    """A config file with the admin API on an ephemeral loopback port."""
    return proxy_yaml(upstream_url, body, admin="127.0.0.1:0", **top)


@pytest.fixture
async def second_upstream() -> AsyncIterator[Upstream]:
    """Another test upstream, to move the proxy to."""
    state = Upstream(url="")
    async with serve_app(make_upstream_app(state)) as state.url:
        yield state


async def test_reload_puts_the_new_file_in_force(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """After the file changes, ``POST /reload`` makes its faults act."""
    path = tmp_path / "proxy.yaml"
    proxy, admin = await start_from_file(start_proxy, path, file_text(upstream.url))
    assert await send(client, proxy.url + "/api/pay/x") == (200, "")

    write(path, file_text(upstream.url, PAY_ERROR))
    answer = await call(admin.reload)

    assert answer == {"status": "reloaded", "file": str(path), "restart_required": []}
    assert await send(client, proxy.url + "/api/pay/x") == (500, "error")


async def test_reload_moves_traffic_to_a_new_upstream(
    upstream: Upstream,
    second_upstream: Upstream,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """A changed ``upstream`` is used from the next request on."""
    path = tmp_path / "proxy.yaml"
    proxy, admin = await start_from_file(start_proxy, path, file_text(upstream.url))
    await send(client, proxy.url + "/echo")

    write(path, file_text(second_upstream.url))
    await call(admin.reload)
    await send(client, proxy.url + "/echo")

    assert (upstream.hits["/echo"], second_upstream.hits["/echo"]) == (1, 1)
    assert (await call(admin.config))["upstream"] == second_upstream.url


async def test_bad_file_answers_422_with_validate_output_and_keeps_the_old(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """A bad file: 422 with the lines ``validate`` prints; the old rules stay."""
    path = tmp_path / "proxy.yaml"
    proxy, admin = await start_from_file(
        start_proxy, path, file_text(upstream.url, PAY_ERROR)
    )
    bad = file_text(
        upstream.url, PAY_ERROR.replace("error_code: 500", "error_code: 700")
    )
    write(path, bad + "surprise: 1\n")
    with pytest.raises(AdminError) as caught:
        await call(admin.reload)
    validate = await asyncio.to_thread(chaosproxy, "validate", str(path))

    assert caught.value.status == 422
    assert caught.value.body["problems"] == validate.stderr.strip().splitlines()
    assert {e["path"] for e in caught.value.errors} == {
        "routes[0].faults[0].error_code",
        "surprise",
    }
    assert await send(client, proxy.url + "/api/pay/x") == (500, "error")


async def test_reload_keeps_runtime_faults_and_experiments(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """Run-time route faults and running experiments survive a reload."""
    path = tmp_path / "proxy.yaml"
    proxy, admin = await start_from_file(start_proxy, path, file_text(upstream.url))
    await call(admin.set_faults, "pay", [{"fault_type": "error", "error_code": 418}])
    experiment_id = await call(
        admin.start_experiment,
        {
            "name": "search outage",
            "faults": [{"fault_type": "resource_exhaustion"}],
            "target_components": ["search"],
            "duration_seconds": 60,
        },
    )

    write(path, file_text(upstream.url, PAY_ERROR))
    await call(admin.reload)

    assert await send(client, proxy.url + "/api/pay/x") == (418, "error")
    assert (await send(client, proxy.url + "/api/search/x"))[0] == 429
    result = await call(admin.experiment, experiment_id)
    assert result.status is ExperimentStatus.running
    await call(admin.reset)
    assert await send(client, proxy.url + "/api/pay/x") == (500, "error")


async def test_reload_drops_runtime_faults_of_a_removed_route(
    upstream: Upstream, start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    """A route gone from the file takes its run-time faults with it."""
    path = tmp_path / "proxy.yaml"
    proxy, admin = await start_from_file(start_proxy, path, file_text(upstream.url))
    await call(admin.set_faults, "search", [{"fault_type": "error", "error_code": 503}])

    only_pay = ROUTES.split("  - name: search")[0]
    write(path, file_text(upstream.url, only_pay))
    await call(admin.reload)

    assert proxy.route_fault_overrides() == {}
    assert [r["name"] for r in await call(admin.routes)] == ["pay", "default"]


async def test_reload_reports_settings_that_need_a_restart(
    upstream: Upstream, start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    """A changed listen address is reported and left as it runs."""
    path = tmp_path / "proxy.yaml"
    _, admin = await start_from_file(start_proxy, path, file_text(upstream.url))
    moved = file_text(upstream.url).replace("127.0.0.1:0", "127.0.0.1:1", 1)
    write(path, moved)

    assert (await call(admin.reload))["restart_required"] == ["listen"]
    assert (await call(admin.config))["listen"] == "127.0.0.1:0"


async def test_reload_without_a_file_answers_409(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """A proxy started from text, not a file, cannot reload: 409."""
    _, admin = await start_admin_proxy(start_proxy, upstream.url)
    with pytest.raises(AdminError) as caught:
        await call(admin.reload)
    assert (caught.value.status, caught.value.code) == (409, "no_config_file")


# -- the command line -----------------------------------------------------------

CLI_FILE = """version: 1
listen: "127.0.0.1:{listen}"
upstream: "http://127.0.0.1:{upstream}"
admin: "127.0.0.1:{admin}"
admin_token: "cli-secret-token"
routes:
  - name: pay
    match: {{path: "/api/pay/**"}}
    faults: [{{fault_type: error, error_code: {code}}}]
"""


@dataclass
class CliProxy:
    """A ``chaosproxy run`` process, its file, and a client for its admin API."""

    proc: Running
    path: Path
    admin: AdminClient
    ports: dict[str, int]

    def write(self, code: int, comment: str = "") -> None:
        """Rewrite the file so that the pay route answers ``code``."""
        write(self.path, CLI_FILE.format(code=code, **self.ports) + comment)


def start_cli(tmp_path: Path, running: list[Running], *flags: str) -> CliProxy:
    """Run ``chaosproxy run`` on a file whose pay route answers 500."""
    ports = {"listen": free_port(), "upstream": free_port(), "admin": free_port()}
    admin = AdminClient(f"http://127.0.0.1:{ports['admin']}", token="cli-secret-token")
    path = tmp_path / "proxy.yaml"
    write(path, CLI_FILE.format(code=500, **ports))
    proc = Running("-c", str(path), "--log-format", "json", *flags)
    running.append(proc)
    proc.wait_for(r'"event": "ready"')

    return CliProxy(proc, path, admin, ports)


def pay_code(admin: AdminClient) -> int:
    """The error code the pay route's first fault answers with now."""
    return int(admin.route("pay")["faults"][0]["error_code"])


def wait_until(check: Callable[[], bool], timeout: float = 10) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_sighup_reloads_a_good_file_and_refuses_a_bad_one(
    tmp_path: Path, running: list[Running]
) -> None:
    """SIGHUP applies a good file; a bad one is logged and the old rules stay."""
    cli = start_cli(tmp_path, running)
    assert pay_code(cli.admin) == 500

    cli.write(503)
    cli.proc.process.send_signal(signal.SIGHUP)
    cli.proc.wait_for(r'"event": "reloaded"')
    assert pay_code(cli.admin) == 503

    cli.write(700)
    cli.proc.process.send_signal(signal.SIGHUP)
    refused = json.loads(cli.proc.wait_for(r'"event": "reload refused"'))
    assert "routes[0].faults[0].error_code" in refused["problems"]
    assert pay_code(cli.admin) == 503

    assert cli.proc.stop() == 0
    assert "cli-secret-token" not in "".join(cli.proc.lines)


def test_watch_reloads_when_the_file_changes(
    tmp_path: Path, running: list[Running]
) -> None:
    """With ``--watch`` a change to the file is applied without any signal."""
    cli = start_cli(tmp_path, running, "--watch")
    # A comment changes the size too, whatever the file system's clock resolution.
    cli.write(599, "# changed\n")
    wait_until(lambda: pay_code(cli.admin) == 599)
    assert cli.proc.stop() == 0


def test_post_reload_on_the_cli_keeps_command_line_overrides(
    tmp_path: Path, running: list[Running]
) -> None:
    """A reload through the API re-reads the file but keeps ``--seed`` as given."""
    cli = start_cli(tmp_path, running, "--seed", "99")
    cli.write(502)
    assert cli.admin.reload()["restart_required"] == []
    assert (pay_code(cli.admin), cli.admin.config()["seed"]) == (502, 99)
    assert cli.proc.stop() == 0
