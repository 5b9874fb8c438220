"""A small client for the admin API, for test suites and scripts.

It is synchronous and uses only the standard library, so any test runner can use
it; from async code, call it through ``asyncio.to_thread``. ::

    from chaosproxy.client import AdminClient

    admin = AdminClient("http://127.0.0.1:8081", token=None)
    pay_errors = [{"fault_type": "error", "probability": 0.3, "error_code": 503}]
    with admin.set_faults("pay", pay_errors, ttl_seconds=60):
        run_checkout_tests()       # 30% of the "pay" route fails, in this block only
    print(admin.summary()["by_status"])

Leaving the block puts the route back as it was; ``ttl_seconds`` is the safety net
if the process dies inside it. Every refusal of the API raises :class:`AdminError`
with its status, code and field errors; an admin API that cannot be reached raises
:class:`OSError`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from aumai_chaos import (
    ChaosExperiment,
    ExperimentResult,
    ExperimentStatus,
    FaultConfig,
    ObservationPoint,
)

__all__ = ["AdminClient", "AdminError", "FaultChange"]

FaultLike = FaultConfig | Mapping[str, Any]


class AdminError(Exception):
    """The admin API refused a request.

    Attributes: ``status`` (HTTP status), ``code`` (the API's stable error code,
    such as ``invalid`` or ``not_found``), ``errors`` (field-level problems, each
    ``{"path": ..., "message": ...}``) and ``body`` (the whole JSON answer).
    """

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        """Build the error from the response's status and JSON body."""
        self.status = status
        self.body = dict(body)
        self.code = str(body.get("error", "unknown"))
        self.errors: list[dict[str, str]] = list(body.get("errors", []))
        message = str(body.get("message", f"HTTP {status}"))
        details = "; ".join(f"{e['path']}: {e['message']}" for e in self.errors)
        super().__init__(f"{status} {message}" + (f" ({details})" if details else ""))


class FaultChange:
    """A change of one route's faults, and the way back.

    Returned by :meth:`AdminClient.set_faults` and :meth:`AdminClient.clear_faults`,
    after the change is in force. As a context manager it undoes the change on
    exit; :meth:`restore` does the same at any time.
    """

    def __init__(
        self, client: AdminClient, route: str, before: Mapping[str, Any], view: Any
    ) -> None:
        """Remember the route as it was (``before``) and as it is (``view``)."""
        self.client = client
        self.route = route
        self.before = dict(before)
        self.view: dict[str, Any] = dict(view)

    def restore(self) -> None:
        """Put the route back as it was before the change.

        A route that had run-time faults gets them back, with what was left of
        their time to live; otherwise it reverts to the faults of the file.
        """
        if not self.before["overridden"]:
            self.client.reset(self.route)
            return
        own = [
            {k: v for k, v in fault.items() if k != "origin"}
            for fault in self.before["faults"]
            if fault["origin"] == "route"
        ]
        self.client.set_faults(self.route, own, self.before["expires_in_seconds"])

    def __enter__(self) -> FaultChange:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.restore()


class AdminClient:
    """Calls one proxy's admin API.

    Args:
        url: The admin API's base URL, as ``http://127.0.0.1:8081``.
        token: The ``admin_token``, if the proxy sets one.
        timeout: Seconds to wait for each answer.
    """

    def __init__(
        self, url: str, token: str | None = None, timeout: float = 10.0
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._token = token

    def __repr__(self) -> str:
        # The token stays out of reprs, and so out of test reports and logs.
        return f"AdminClient({self.url!r})"

    # -- the proxy --------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /healthz``: ``{"status": "ok"}`` when the proxy is up."""
        return self._call("GET", "/healthz")

    def config(self) -> dict[str, Any]:
        """The configuration in force (``admin_token`` redacted)."""
        return self._call("GET", "/config")

    def reload(self) -> dict[str, Any]:
        """Re-read the proxy's file; raises AdminError (422) if it is bad."""
        return self._call("POST", "/reload")

    def openapi(self) -> dict[str, Any]:
        """The admin API's OpenAPI document."""
        return self._call("GET", "/openapi.json")

    # -- route faults -----------------------------------------------------------

    def routes(self) -> list[dict[str, Any]]:
        """Every route with the faults in force on it."""
        return list(self._call("GET", "/routes")["routes"])

    def route(self, name: str) -> dict[str, Any]:
        """One route with the faults in force on it, and whether they expire."""
        return self._call("GET", f"/routes/{_segment(name)}")

    def set_faults(
        self,
        route: str,
        faults: Sequence[FaultLike],
        ttl_seconds: float | None = None,
    ) -> FaultChange:
        """Replace ``route``'s own faults; after ``ttl_seconds`` they revert.

        ``faults`` are FaultConfig objects or plain dicts with its fields. Use the
        result as a context manager to put the route back on exit.
        """
        before = self.route(route)
        body = {"faults": [_fault_json(f) for f in faults], "ttl_seconds": ttl_seconds}
        view = self._call("PUT", f"/routes/{_segment(route)}/faults", body)

        return FaultChange(self, route, before, view)

    def clear_faults(self, route: str, ttl_seconds: float | None = None) -> FaultChange:
        """Remove ``route``'s own faults (until ``ttl_seconds`` pass, if given)."""
        before = self.route(route)
        query = {} if ttl_seconds is None else {"ttl_seconds": ttl_seconds}
        view = self._call("DELETE", f"/routes/{_segment(route)}/faults", query=query)

        return FaultChange(self, route, before, view)

    def reset(self, route: str | None = None) -> dict[str, Any]:
        """Back to the file's faults: one route's, or everywhere.

        Everywhere also aborts every running experiment.
        """
        query = {} if route is None else {"route": route}
        return self._call("POST", "/reset", query=query)

    def explain(
        self,
        path: str,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Which route a request would match, and the faults that could act on it."""
        query: dict[str, Any] = {"path": path, "method": method}
        if headers:
            query["header"] = [f"{name}: {value}" for name, value in headers.items()]
        return self._call("GET", "/explain", query=query)

    # -- what happened ----------------------------------------------------------

    def observations(
        self, limit: int | None = None, component: str | None = None
    ) -> list[ObservationPoint]:
        """The newest observation points (100 unless ``limit``), oldest first."""
        query: dict[str, Any] = {}
        if limit is not None:
            query["limit"] = limit
        if component is not None:
            query["component"] = component
        doc = self._call("GET", "/observations", query=query)

        return [ObservationPoint.model_validate(p) for p in doc["observations"]]

    def summary(self) -> dict[str, Any]:
        """Counts since the proxy started: requests, by status, faults by type."""
        return self._call("GET", "/summary")

    def metrics(self) -> str:
        """The Prometheus metrics, in text format."""
        return self._request("GET", "/metrics").decode("utf-8")

    # -- experiments ------------------------------------------------------------

    def start_experiment(self, experiment: ChaosExperiment | Mapping[str, Any]) -> str:
        """Start an experiment on live traffic; return its id."""
        if isinstance(experiment, ChaosExperiment):
            body: Any = experiment.model_dump(mode="json")
        else:
            body = dict(experiment)
        return str(self._call("POST", "/experiments", body)["experiment_id"])

    def experiment(self, experiment_id: str) -> ExperimentResult:
        """The experiment's result so far, or at its end."""
        doc = self._call("GET", f"/experiments/{_segment(experiment_id)}")
        return ExperimentResult.model_validate(doc)

    def abort_experiment(self, experiment_id: str) -> ExperimentResult:
        """Stop the experiment now; return its result (status ``aborted``)."""
        doc = self._call("POST", f"/experiments/{_segment(experiment_id)}/abort")
        return ExperimentResult.model_validate(doc)

    def wait_for_experiment(
        self, experiment_id: str, timeout: float | None = None, poll: float = 0.2
    ) -> ExperimentResult:
        """Poll until the experiment has ended; return its final result.

        Raises TimeoutError when ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = self.experiment(experiment_id)
            if result.status is not ExperimentStatus.running:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"experiment {experiment_id!r} is still running")
            time.sleep(poll)

    # -- the wire ---------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: object = None,
        query: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send a request and decode its answer, a JSON object."""
        raw = self._request(method, path, body, query)
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise AdminError(
                200, {"error": "unexpected", "message": raw[:200].decode()}
            )

        return doc

    def _request(
        self,
        method: str,
        path: str,
        body: object = None,
        query: Mapping[str, Any] | None = None,
    ) -> bytes:
        """Send a request; return the body of a 2xx answer, raise AdminError else."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(url, data, headers, method=method)

        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer: bytes = response.read()
                return answer
        except urllib.error.HTTPError as exc:
            with exc:
                raise AdminError(exc.code, _error_body(exc.code, exc.read())) from None


def _segment(text: str) -> str:
    """Quote ``text`` as one URL path segment."""
    return urllib.parse.quote(text, safe="")


def _fault_json(fault: FaultLike) -> dict[str, Any]:
    """A fault as JSON-ready data (unchecked: the API reports what is wrong)."""
    if isinstance(fault, FaultConfig):
        return fault.model_dump(mode="json", exclude_defaults=True)
    return dict(fault)


def _error_body(status: int, raw: bytes) -> dict[str, Any]:
    """The JSON body of an error answer; something sensible if it is not JSON."""
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        return doc

    return {"error": "unknown", "message": raw.decode("utf-8", "replace")[:200]}
