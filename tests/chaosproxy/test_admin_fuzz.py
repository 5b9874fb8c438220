"""The admin API under schemathesis, driven by its own ``/openapi.json``: never a 5xx.

Each operation gets generated requests that fit the document (positive) and that do
not (negative), with the right bearer token. Every answer must be below 500, and
a positive request's answer must be one the document lists, in its documented shape
and content type; a request without the token must be refused.

Left out on purpose: schemathesis's check that every request fitting the document is
accepted. The API has rules across fields that JSON Schema does not carry (a latency
fault needs ``duration_ms``, an experiment's components must exist), stated in the
document's words and answered 422.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from chaosproxy.admin.openapi import openapi_document
from chaosproxy.config import parse_config
from chaosproxy.server import ChaosProxy
from tests.chaosproxy.adminkit import ROUTES
from tests.conftest import Upstream, make_upstream_app, proxy_yaml

TOKEN = "fuzz-token"
EXAMPLES = 40

SCHEMA = schemathesis.openapi.from_dict(openapi_document())
OPERATIONS = {
    f"{method.upper()} {path}": operation
    for path, methods in openapi_document()["paths"].items()
    for method, operation in methods.items()
}
# Only an operation that takes some input can be sent input that does not fit.
TAKES_INPUT = {
    label
    for label, operation in OPERATIONS.items()
    if operation.get("parameters") or operation.get("requestBody")
}
CASES = [
    pytest.param(label, mode, id=f"{label}-{mode.value}")
    for label in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or label in TAKES_INPUT
]
POSITIVE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,
]


@pytest.fixture(scope="module")
def admin_url() -> Iterator[str]:
    """A proxy with its admin API and a token, served from a thread of its own.

    schemathesis calls are blocking, so the proxy gets an event loop the test's
    thread never blocks.
    """
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        upstream = Upstream(url="")
        server = TestServer(make_upstream_app(upstream), host="127.0.0.1")
        await server.start_server()
        upstream.url = str(server.make_url("")).rstrip("/")
        text = proxy_yaml(upstream.url, ROUTES, admin="127.0.0.1:0", admin_token=TOKEN)
        proxy = ChaosProxy(parse_config(text))
        await proxy.start()
        state.update(
            url=proxy.admin_url, stop=asyncio.Event(), loop=asyncio.get_running_loop()
        )
        ready.set()
        try:
            await state["stop"].wait()
        finally:
            await proxy.stop()
            await server.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="admin-fuzz")
    thread.start()
    assert ready.wait(10), "the admin API did not start"
    yield str(state["url"])
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(10)


def test_served_document_is_the_one_fuzzed(admin_url: str) -> None:
    """The operations fuzzed here are those the running API serves."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    served = requests.get(admin_url + "/openapi.json", headers=headers, timeout=10)

    assert served.json() == openapi_document()


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_admin_operation_never_answers_a_server_error(
    label: str, mode: GenerationMode, admin_url: str
) -> None:
    """Generated requests, fitting the document or not, never get a 5xx."""
    operation = SCHEMA.find_operation_by_label(label)
    assert operation is not None
    checks = (
        POSITIVE_CHECKS if mode is GenerationMode.POSITIVE else [not_a_server_error]
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answer(case: Any) -> None:
        response = case.call(base_url=admin_url, headers=auth, timeout=10)
        case.validate_response(response, checks=checks, headers=auth)

    answer()


@pytest.mark.parametrize(
    "limit",
    ["²", "٣", "9" * 5000],
    ids=["superscript-digit", "arabic-indic-digit", "five-thousand-digits"],
)
def test_observation_limit_that_is_not_plain_digits_is_422(
    limit: str, admin_url: str
) -> None:
    """Found by the fuzzing above: once 500s (int() refused them), or read as 3."""
    response = requests.get(
        admin_url + "/observations",
        params={"limit": limit},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "limit"
