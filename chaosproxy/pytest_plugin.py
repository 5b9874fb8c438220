"""The pytest plugin: a chaosproxy in front of your upstream, for one test.

Registered through the ``pytest11`` entry point, so installing aumai-chaos is
enough. Fixtures::

    chaosproxy            a running proxy (chaosproxy.testing.ProxyFixture):
                          .url, .faults(route, [...]), .calls(), .retried(),
                          .waits(), .observations()
    chaosproxy_upstream   the URL the proxy forwards to; override it in your
                          conftest.py to return your test server's URL
    chaosproxy_config     the configuration file whose routes and faults the proxy
                          starts with, or None for none (every request is on the
                          route "default")

Where a test's values come from, first found wins:

1. the marker, ``@pytest.mark.chaosproxy(upstream=..., config=..., seed=...)``;
2. the fixtures ``chaosproxy_upstream`` and ``chaosproxy_config``, which by default
   read the ini options of the same names (``[tool.pytest.ini_options]``).

Relative config paths are taken from pytest's rootdir. This module imports only
pytest; the proxy and its dependencies are imported when a test first asks for the
``chaosproxy`` fixture, so the plugin costs nothing in runs that never use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from chaosproxy.testing import ProxyFixture

__all__ = [
    "chaosproxy",
    "chaosproxy_config",
    "chaosproxy_upstream",
    "pytest_addoption",
    "pytest_configure",
]

_MARKER_ARGUMENTS = frozenset({"upstream", "config", "seed"})


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ini options the fixtures read by default."""
    parser.addini(
        "chaosproxy_upstream",
        "URL the chaosproxy fixture forwards to (http://host:port[/base])",
        default="",
    )
    parser.addini(
        "chaosproxy_config",
        "YAML configuration the chaosproxy fixture starts with (routes, faults)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``chaosproxy`` marker, so ``--strict-markers`` accepts it."""
    config.addinivalue_line(
        "markers",
        "chaosproxy(upstream=None, config=None, seed=None): settings of the "
        "chaosproxy fixture for this test",
    )


def _from_rootdir(config: pytest.Config, path: str | os.PathLike[str]) -> Path:
    """Resolve ``path`` against pytest's rootdir unless it is absolute."""
    return Path(config.rootpath, path)


@pytest.fixture
def chaosproxy_upstream(request: pytest.FixtureRequest) -> str:
    """The URL the proxy forwards to: the ``chaosproxy_upstream`` ini option.

    Override this fixture to use a server your tests start.
    """
    url = str(request.config.getini("chaosproxy_upstream"))
    if not url:
        pytest.fail(
            "the chaosproxy fixture needs an upstream: override the "
            "chaosproxy_upstream fixture, set the chaosproxy_upstream ini option, or "
            "mark the test with @pytest.mark.chaosproxy(upstream=...)",
            pytrace=False,
        )
    return url


@pytest.fixture
def chaosproxy_config(request: pytest.FixtureRequest) -> Path | None:
    """The configuration file to start with: the ``chaosproxy_config`` ini option."""
    path = str(request.config.getini("chaosproxy_config"))
    return _from_rootdir(request.config, path) if path else None


@pytest.fixture
def chaosproxy(request: pytest.FixtureRequest) -> Iterator[ProxyFixture]:
    """A chaosproxy on a free loopback port, in front of the test's upstream.

    Faults set through it last until the test ends at most; the proxy is stopped
    however the test ends.
    """
    marker = request.node.get_closest_marker("chaosproxy")
    settings = dict(marker.kwargs) if marker is not None else {}
    unknown = sorted(set(settings) - _MARKER_ARGUMENTS)
    if marker is not None and (marker.args or unknown):
        pytest.fail(
            "@pytest.mark.chaosproxy takes only the keywords upstream, config and "
            f"seed, got {list(marker.args) + unknown}",
            pytrace=False,
        )

    upstream = settings.get("upstream") or request.getfixturevalue(
        "chaosproxy_upstream"
    )
    if "config" in settings:
        given = settings["config"]
        config = None if given is None else _from_rootdir(request.config, given)
    else:
        config = request.getfixturevalue("chaosproxy_config")

    from chaosproxy.config import ConfigError
    from chaosproxy.testing import ProxyFixture

    problem = None
    try:
        proxy = ProxyFixture.start(str(upstream), config, seed=settings.get("seed"))
    except ConfigError as exc:
        problem = str(exc)
    if problem is not None:
        # Outside the except block, so the report is this line, not a chain.
        pytest.fail(f"chaosproxy fixture: bad configuration\n{problem}", pytrace=False)
    try:
        yield proxy
    finally:
        proxy.stop()
