"""The pytest plugin and the ProxyFixture behind it: set-up, steering, questions."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from chaosproxy.testing import ProxyFixture

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
# The inner runs load every installed plugin; pytest-asyncio warns when unset.
QUIET_INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


class _Hello(BaseHTTPRequestHandler):
    """Answers every GET with 200 and a short body."""

    def do_GET(self) -> None:
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def threaded_upstream() -> Iterator[str]:
    """An upstream in a thread of its own, so blocking tests can call through it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="test-upstream"
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def status_of(url: str) -> int:
    """GET ``url`` with a blocking client and return the status."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def error(code: int) -> dict[str, object]:
    """An error fault that always fires."""
    return {"fault_type": "error", "probability": 1.0, "error_code": code}


def test_plugin_is_registered_through_the_pytest11_entry_point() -> None:
    """Installing aumai-chaos is all it takes for pytest to find the plugin."""
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("chaosproxy") == "chaosproxy.pytest_plugin"


def test_plugin_module_imports_no_proxy_code() -> None:
    """Loading the plugin, as every pytest run does, imports neither aiohttp nor
    pydantic nor the proxy."""
    probe = (
        "import sys, chaosproxy.pytest_plugin; "
        "print([m for m in ('aiohttp', 'pydantic', 'chaosproxy.server') "
        "if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "[]", result.stderr


def test_fixture_without_config_forwards_everything_on_the_default_route(
    threaded_upstream: str,
) -> None:
    """With no configuration every request passes and is counted under "default"."""
    with ProxyFixture.start(threaded_upstream) as proxy:
        assert status_of(f"{proxy.url}/a") == 200
        assert status_of(f"{proxy.url}/b") == 200

        assert proxy.calls() == 2
        assert proxy.calls("default", path="/a") == 1
        assert [a.route for a in proxy.attempts()] == ["default", "default"]


def test_nested_fault_blocks_restore_what_was_there_before(
    threaded_upstream: str,
) -> None:
    """Leaving a block puts back the enclosing block's faults, then none."""
    with ProxyFixture.start(threaded_upstream) as proxy:
        with proxy.faults("default", [error(503)]):
            with proxy.faults("default", [error(500)]):
                assert status_of(proxy.url) == 500
            assert status_of(proxy.url) == 503
        assert status_of(proxy.url) == 200


def test_fault_block_restores_the_route_when_the_test_fails_inside_it(
    threaded_upstream: str,
) -> None:
    """An exception in the block still lifts its faults."""
    with ProxyFixture.start(threaded_upstream) as proxy:
        with pytest.raises(RuntimeError), proxy.faults("default", [error(503)]):
            raise RuntimeError("the test failed here")

        assert status_of(proxy.url) == 200


def test_fault_block_puts_back_the_configurations_own_faults(
    threaded_upstream: str,
) -> None:
    """A route with faults in its file gets them back, not an empty list."""
    config = ROOT / "configs" / "flaky-payments.yaml"
    with ProxyFixture.start(threaded_upstream, config) as proxy:
        before = proxy.proxy.state.router
        with proxy.faults("refunds", []):
            assert proxy.proxy.state.router is not before
        assert proxy.proxy.route_fault_overrides() == {}


@pytest.mark.parametrize(
    ("route", "faults", "message"),
    [
        ("nope", [error(503)], "no route named 'nope'; the routes are: default"),
        ("default", [{"fault_type": "latency"}], "[0].duration_ms: required"),
        ("default", [{"fault_type": "boom"}], "[0].fault_type: Input should be"),
        ("default", [error(200)], "[0].error_code: expected 400 to 599, got 200"),
    ],
    ids=["unknown-route", "latency-without-duration", "unknown-type", "ok-status"],
)
def test_bad_fault_requests_are_refused_with_what_was_wrong(
    threaded_upstream: str, route: str, faults: list[dict[str, object]], message: str
) -> None:
    """Unknown routes and invalid faults raise ValueError and change nothing."""
    with ProxyFixture.start(threaded_upstream) as proxy:
        with pytest.raises(ValueError, match=re.escape(message)):
            proxy.set_faults(route, faults)

        assert status_of(proxy.url) == 200


def test_waits_measure_the_gap_between_an_answer_and_the_next_attempt(
    threaded_upstream: str,
) -> None:
    """waits() is the client's pause between attempts, not the attempts' length."""
    with ProxyFixture.start(threaded_upstream) as proxy:
        latency = {"fault_type": "latency", "probability": 1.0, "duration_ms": 200}
        with proxy.faults("default", [latency]):
            status_of(proxy.url)
            threading.Event().wait(0.1)
            status_of(proxy.url)

        (wait,) = proxy.waits()
        assert 0.1 <= wait < 0.2
        assert proxy.retried()


def test_marker_and_ini_options_configure_the_fixture(
    pytester: pytest.Pytester, threaded_upstream: str
) -> None:
    """The ini option names the upstream; the marker's config adds routes."""
    pytester.makeini(f"{QUIET_INI}chaosproxy_upstream = {threaded_upstream}\n")
    config = (ROOT / "configs" / "slow-search.yaml").read_text("utf-8")
    pytester.makefile(".yaml", search=config)
    pytester.makepyfile(
        """
        import urllib.request

        import pytest


        def test_default_route(chaosproxy):
            with urllib.request.urlopen(chaosproxy.url + "/x") as reply:
                assert reply.status == 200
            assert chaosproxy.calls("default") == 1


        @pytest.mark.chaosproxy(config="search.yaml")
        def test_routes_from_the_marker(chaosproxy):
            with chaosproxy.faults("suggest", []):
                pass
        """
    )

    result = pytester.runpytest("--strict-markers", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=2)


MISUSES = """
import pytest


def test_no_upstream(chaosproxy):
    pass


@pytest.mark.chaosproxy(upstream="http://127.0.0.1:9", port=1)
def test_unknown_marker_keyword(chaosproxy):
    pass


@pytest.mark.chaosproxy(upstream="http://127.0.0.1:9", config="x.yaml")
def test_missing_config_file(chaosproxy):
    pass
"""


def test_fixture_misuse_is_reported_in_one_clear_error(
    pytester: pytest.Pytester,
) -> None:
    """A test that cannot get a proxy errors with how to fix it, not a traceback."""
    pytester.makeini(QUIET_INI)
    pytester.makepyfile(MISUSES)

    result = pytester.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(errors=3)
    output = result.stdout.str()
    assert "Traceback" not in output
    for expected in (
        "the chaosproxy fixture needs an upstream: override the chaosproxy_upstream "
        "fixture",
        "@pytest.mark.chaosproxy takes only the keywords upstream, config and seed, "
        "got ['port']",
        "x.yaml: cannot read: No such file or directory",
    ):
        assert expected in output
