"""The admin API's endpoints: each reads the request, calls the proxy, answers JSON.

Every change goes through :class:`~chaosproxy.server.ChaosProxy`, which compiles a
whole new router and swaps it in with one assignment: a request in flight keeps the
rules it started with, and the next one sees all of the change.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from aumai_chaos import ExperimentNotFoundError
from chaosproxy.admin.explain import explain, parse_header_params
from chaosproxy.admin.inputs import (
    RequestProblem,
    invalid,
    json_response,
    parse_experiment,
    parse_faults_body,
    parse_ttl,
    query_int,
    read_json,
)
from chaosproxy.admin.openapi import openapi_document
from chaosproxy.config import ConfigError
from chaosproxy.experiments import ExperimentConflict, ExperimentRejected
from chaosproxy.metrics import METRICS_CONTENT_TYPE
from chaosproxy.yamlmarks import did_you_mean

if TYPE_CHECKING:
    from chaosproxy.server import ChaosProxy

__all__ = ["DEFAULT_OBSERVATIONS", "AdminAPI"]

logger = logging.getLogger("chaosproxy.admin")

#: Observation points ``GET /observations`` returns when no limit is given.
DEFAULT_OBSERVATIONS = 100


class AdminAPI:
    """The handlers of the admin API for one proxy."""

    def __init__(self, proxy: ChaosProxy) -> None:
        """Serve the admin API of ``proxy``."""
        self.proxy = proxy

    def routes(self) -> list[web.RouteDef]:
        """Return every endpoint, for ``app.add_routes``."""
        return [
            web.get("/healthz", self.healthz, allow_head=False),
            web.get("/config", self.config, allow_head=False),
            web.get("/routes", self.list_routes, allow_head=False),
            web.get("/routes/{name}", self.get_route, allow_head=False),
            web.put("/routes/{name}/faults", self.put_faults),
            web.delete("/routes/{name}/faults", self.delete_faults),
            web.post("/reset", self.reset),
            web.post("/reload", self.reload),
            web.get("/observations", self.observations, allow_head=False),
            web.get("/summary", self.summary, allow_head=False),
            web.get("/metrics", self.metrics, allow_head=False),
            web.get("/explain", self.explain, allow_head=False),
            web.get("/experiments", self.list_experiments, allow_head=False),
            web.post("/experiments", self.start_experiment),
            web.get("/experiments/{experiment_id}", self.experiment, allow_head=False),
            web.post("/experiments/{experiment_id}/abort", self.abort_experiment),
            web.get("/openapi.json", self.openapi, allow_head=False),
        ]

    # -- the proxy as configured ----------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: alive."""
        return json_response({"status": "ok"})

    async def config(self, request: web.Request) -> web.Response:
        """``GET /config``: the configuration in force, admin_token redacted."""
        doc = self.proxy.config.model_dump(mode="json")
        if doc.get("admin_token") is not None:
            doc["admin_token"] = "<redacted>"

        return json_response(doc)

    async def reload(self, request: web.Request) -> web.Response:
        """``POST /reload``: re-read the file; 422 keeps the old configuration."""
        if self.proxy.config_path is None:
            raise RequestProblem(
                409,
                "no_config_file",
                "this proxy was not started from a configuration file",
            )
        try:
            restart_required = await self.proxy.reload()
        except ConfigError as exc:
            raise RequestProblem(
                422,
                "invalid_config",
                f"{self.proxy.config_path} was not loaded; the configuration in "
                "force is unchanged",
                errors=[(p.path, p.message) for p in exc.problems],
                problems=[str(p) for p in exc.problems],
            ) from None

        return json_response(
            {
                "status": "reloaded",
                "file": self.proxy.config_path,
                "restart_required": restart_required,
            }
        )

    # -- route faults ---------------------------------------------------------------

    def _route_name(self, name: str) -> str:
        """Return ``name``; 404 if the configuration has no route of that name."""
        names = self.proxy.route_names()
        if name not in names:
            raise RequestProblem(
                404,
                "not_found",
                f"no route named {name!r}"
                + (did_you_mean(name, names) or "; known: " + ", ".join(names)),
            )

        return name

    def _route_view(self, name: str) -> dict[str, object]:
        """A route as it stands: component, the faults in force and their origin."""
        route = self.proxy.state.router.by_name[name]
        return {
            "name": name,
            "component": route.component,
            "overridden": name in self.proxy.route_fault_overrides(),
            "expires_in_seconds": self.proxy.route_fault_expiry(name),
            "faults": [
                {**fault.config.model_dump(mode="json"), "origin": fault.origin}
                for fault in route.faults
            ],
        }

    async def list_routes(self, request: web.Request) -> web.Response:
        """``GET /routes``: every route with the faults in force on it."""
        routes = [self._route_view(name) for name in self.proxy.route_names()]
        return json_response({"routes": routes})

    async def get_route(self, request: web.Request) -> web.Response:
        """``GET /routes/{name}``: one route with the faults in force on it."""
        return json_response(
            self._route_view(self._route_name(request.match_info["name"]))
        )

    async def put_faults(self, request: web.Request) -> web.Response:
        """``PUT /routes/{name}/faults``: replace the route's own faults."""
        name = self._route_name(request.match_info["name"])
        faults, ttl = parse_faults_body(await read_json(request))
        self.proxy.set_route_faults(name, faults, ttl)
        logger.info("route faults set", extra={"route": name})

        return json_response(self._route_view(name))

    async def delete_faults(self, request: web.Request) -> web.Response:
        """``DELETE /routes/{name}/faults``: the route injects nothing of its own."""
        name = self._route_name(request.match_info["name"])
        ttl_text = request.query.get("ttl_seconds")
        ttl = None if ttl_text is None else parse_ttl(_number(ttl_text))
        self.proxy.clear_route_faults(name, ttl)
        logger.info("route faults cleared", extra={"route": name})

        return json_response(self._route_view(name))

    async def reset(self, request: web.Request) -> web.Response:
        """``POST /reset``: the file's faults only, everywhere or on ``?route=``."""
        if "route" in request.query:
            name = self._route_name(request.query["route"])
            self.proxy.reset_route_faults(name)
            logger.info("route faults reset", extra={"route": name})
            return json_response({"reset": [name], "aborted_experiments": []})

        names = sorted(self.proxy.route_fault_overrides())
        aborted = self.proxy.experiments.abort_all()
        self.proxy.reset_route_faults()
        logger.info("route faults reset", extra={"route": ",".join(names) or "-"})

        return json_response({"reset": names, "aborted_experiments": aborted})

    async def explain(self, request: web.Request) -> web.Response:
        """``GET /explain?method=&path=&header=``: what a request would meet."""
        path = request.query.get("path")
        headers, problems = parse_header_params(request.query.getall("header", []))
        found = [("header", problem) for problem in problems]
        if path is None or not path.startswith("/"):
            found.append(("path", f"expected a path starting with '/', got {path!r}"))
        if found:
            raise invalid(found, "the query string")
        assert path is not None
        method = request.query.get("method", "GET")

        return json_response(explain(self.proxy.state.router, method, path, headers))

    # -- what happened --------------------------------------------------------------

    async def observations(self, request: web.Request) -> web.Response:
        """``GET /observations?limit=N&component=C``: the newest points."""
        limit = query_int(request, "limit", DEFAULT_OBSERVATIONS)
        component = request.query.get("component")
        points = self.proxy.sink.observer.get_observations()
        if component is not None:
            points = [p for p in points if p.component == component]

        return json_response(
            {"observations": [p.model_dump(mode="json") for p in points[-limit:]]}
        )

    async def summary(self, request: web.Request) -> web.Response:
        """``GET /summary``: counts since the proxy started."""
        return json_response(self.proxy.summary.snapshot())

    async def metrics(self, request: web.Request) -> web.Response:
        """``GET /metrics``: Prometheus text format."""
        return web.Response(
            body=self.proxy.metrics.render(),
            headers={"Content-Type": METRICS_CONTENT_TYPE},
        )

    # -- experiments ----------------------------------------------------------------

    async def list_experiments(self, request: web.Request) -> web.Response:
        """``GET /experiments``: every kept result, without observations."""
        results = [
            result.model_dump(mode="json", exclude={"observations"})
            for result in self.proxy.experiments.results()
        ]
        return json_response({"experiments": results})

    async def start_experiment(self, request: web.Request) -> web.Response:
        """``POST /experiments``: start a ChaosExperiment on live traffic."""
        experiment = parse_experiment(await read_json(request))
        try:
            experiment_id = self.proxy.experiments.start(experiment)
        except ExperimentRejected as exc:
            raise invalid(exc.problems) from None
        except ExperimentConflict as exc:
            raise RequestProblem(409, "conflict", str(exc)) from None

        return json_response(
            {"experiment_id": experiment_id, "status": "running"},
            status=201,
            headers={"Location": f"/experiments/{experiment_id}"},
        )

    async def experiment(self, request: web.Request) -> web.Response:
        """``GET /experiments/{id}``: the result so far, or at its end."""
        experiment_id = request.match_info["experiment_id"]
        try:
            result = self.proxy.experiments.result(experiment_id)
        except ExperimentNotFoundError:
            raise _no_experiment(experiment_id) from None

        return json_response(result.model_dump(mode="json"))

    async def abort_experiment(self, request: web.Request) -> web.Response:
        """``POST /experiments/{id}/abort``: stop it now."""
        experiment_id = request.match_info["experiment_id"]
        try:
            result = self.proxy.experiments.abort(experiment_id)
        except ExperimentNotFoundError:
            raise _no_experiment(experiment_id) from None

        return json_response(result.model_dump(mode="json"))

    async def openapi(self, request: web.Request) -> web.Response:
        """``GET /openapi.json``: this API described in OpenAPI 3.1."""
        return json_response(openapi_document())


def _no_experiment(experiment_id: str) -> RequestProblem:
    """The 404 for an unknown experiment id."""
    return RequestProblem(
        404, "not_found", f"no experiment with the id {experiment_id!r}"
    )


def _number(text: str) -> object:
    """A query parameter as a number if it is one, else the text (for the error)."""
    try:
        return float(text)
    except ValueError:
        return text
