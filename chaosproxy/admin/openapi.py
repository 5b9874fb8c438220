"""``GET /openapi.json``: the admin API described in OpenAPI 3.1.

The operations are written here by hand, next to one another, so the document reads
as the API's reference; the bodies that are library or configuration models take
their JSON Schemas from pydantic, so they cannot drift from what is validated. A
test checks that every route of the application appears here, and no other.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from aumai_chaos import ChaosExperiment, ExperimentResult, FaultConfig, ObservationPoint
from chaosproxy.admin.inputs import FaultsBody
from chaosproxy.config import ProxyConfig

__all__ = ["openapi_document"]

Json = dict[str, Any]

_REF = "#/components/schemas/{model}"
_STRING: Json = {"type": "string"}
_ANY_OBJECT: Json = {"type": "object", "additionalProperties": True}
_COUNTS: Json = {"type": "object", "additionalProperties": {"type": "integer"}}
_PATH: Json = {"type": "string", "pattern": "^/"}
# The library's model allows an experiment without faults; the proxy does not.
_EXPERIMENT_BODY: Json = {
    "$ref": "#/components/schemas/ChaosExperiment",
    "required": ["faults"],
    "properties": {"faults": {"minItems": 1}},
}


def _ref(name: str) -> Json:
    """A reference to a schema of the document's components."""
    return {"$ref": _REF.format(model=name)}


def _array(items: Json) -> Json:
    return {"type": "array", "items": items}


def _object(**properties: Json) -> Json:
    return {"type": "object", "properties": properties}


def _json(schema: Json | str, description: str) -> Json:
    """A response or body of JSON; a string names a component schema."""
    if isinstance(schema, str):
        schema = _ref(schema)
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def _error(description: str) -> Json:
    return _json("Error", description)


def _param(name: str, where: str, schema: Json, text: str = "") -> Json:
    """A parameter; those in the path are required."""
    param: Json = {"name": name, "in": where, "schema": schema}
    if where == "path":
        param["required"] = True
    if text:
        param["description"] = text
    return param


_ROUTE_NAME = _param("name", "path", _STRING, "A route, or `default` (no match).")
_EXPERIMENT_ID = _param("experiment_id", "path", _STRING)
_INVALID = _error("The input breaks a rule; `errors` lists every field at fault.")
_MALFORMED = _error("The body is not JSON.")
_NO_ROUTE = _error("No route has that name.")
_NO_EXPERIMENT = _error("No experiment has that id (or its result was dropped).")


def _operation(
    summary: str,
    responses: dict[str, Json],
    *parameters: Json,
    body: Json | None = None,
    public: bool = False,
) -> Json:
    """One operation; all but the public ones may answer 401."""
    operation: Json = {"summary": summary, "responses": responses}
    if parameters:
        operation["parameters"] = list(parameters)
    if body is not None:
        operation["requestBody"] = {"required": True, **body}
    if public:
        operation["security"] = []
    else:
        responses["401"] = _error("A token is set and the request lacks it.")

    return operation


def _response_schemas() -> dict[str, Json]:
    """Schemas of the admin API's own answers."""
    origin = _object(origin={**_STRING, "description": "route, global or an id"})
    return {
        "Error": {
            **_object(
                error={**_STRING, "description": "A stable code."},
                message=_STRING,
                errors=_array(_object(path=_STRING, message=_STRING)),
            ),
            "required": ["error", "message"],
        },
        "RouteView": _object(
            name=_STRING,
            component=_STRING,
            overridden={"type": "boolean"},
            expires_in_seconds={"type": ["number", "null"]},
            faults=_array({"allOf": [_ref("FaultConfig"), origin]}),
        ),
        "FaultsBody": {
            "description": "A list of faults, or an object with a time to live.",
            "oneOf": [_array(_ref("FaultConfig")), _ref("FaultsObject")],
        },
        "Reloaded": _object(
            status={"const": "reloaded"}, file=_STRING, restart_required=_array(_STRING)
        ),
        "Summary": _object(
            since={**_STRING, "format": "date-time"},
            requests={"type": "integer"},
            by_status=_COUNTS,
            faults_by_type=_COUNTS,
            upstream_errors=_COUNTS,
            components=_ANY_OBJECT,
        ),
        "Explanation": _object(
            request=_ANY_OBJECT,
            route=_STRING,
            component=_STRING,
            matched={"type": "boolean"},
            chance_of_any_fault={"type": "number"},
            faults=_array(_ANY_OBJECT),
        ),
    }


def _proxy_paths() -> dict[str, Json]:
    """The proxy as a whole: health, configuration, reload, reset, this document."""
    bad_file = _error("The file is bad and was not loaded; `problems` holds the lines")
    bad_file["description"] += " `chaosproxy validate` prints."
    reset = _object(reset=_array(_STRING), aborted_experiments=_array(_STRING))
    return {
        "/healthz": {
            "get": _operation(
                "Liveness; never needs a token.",
                {"200": _json(_object(status={"const": "ok"}), "Alive.")},
                public=True,
            )
        },
        "/config": {
            "get": _operation(
                "The configuration in force, admin_token redacted.",
                {"200": _json("ProxyConfig", "The configuration.")},
            )
        },
        "/reload": {
            "post": _operation(
                "Re-read the configuration file, as SIGHUP does.",
                {
                    "200": _json("Reloaded", "In force."),
                    "409": _error("The proxy was not started from a file."),
                    "422": bad_file,
                },
            )
        },
        "/reset": {
            "post": _operation(
                "Back to the file's faults: run-time route faults are dropped and "
                "running experiments aborted; with `route`, that route's only.",
                {"200": _json(reset, "Reset."), "404": _NO_ROUTE},
                _param("route", "query", _STRING, "Reset this route only."),
            )
        },
        "/openapi.json": {
            "get": _operation("This document.", {"200": _json(_ANY_OBJECT, "It.")})
        },
    }


def _route_paths() -> dict[str, Json]:
    """Routes and the faults in force on them."""
    view = _json("RouteView", "The route and the faults in force on it.")
    ttl = {"type": "number", "exclusiveMinimum": 0}
    return {
        "/routes": {
            "get": _operation(
                "Every route with the faults in force on it.",
                {"200": _json(_object(routes=_array(_ref("RouteView"))), "Routes.")},
            )
        },
        "/routes/{name}": {
            "get": _operation(
                "One route with the faults in force on it.",
                {"200": view, "404": _NO_ROUTE},
                _ROUTE_NAME,
            )
        },
        "/routes/{name}/faults": {
            "put": _operation(
                "Replace the route's own faults; with ttl_seconds they revert after.",
                {"200": view, "400": _MALFORMED, "404": _NO_ROUTE, "422": _INVALID},
                _ROUTE_NAME,
                body=_json("FaultsBody", "[FaultConfig] or {faults, ttl_seconds}."),
            ),
            "delete": _operation(
                "Remove every own fault of the route (for ttl_seconds, if given).",
                {"200": view, "404": _NO_ROUTE, "422": _INVALID},
                _ROUTE_NAME,
                _param("ttl_seconds", "query", ttl, "Revert after this long."),
            ),
        },
    }


def _observation_paths() -> dict[str, Json]:
    """What happened, and what would happen."""
    limit = {"type": "integer", "minimum": 1, "default": 100}
    points = _object(observations=_array(_ref("ObservationPoint")))
    text = {"text/plain": {"schema": _STRING}}
    return {
        "/observations": {
            "get": _operation(
                "The newest observation points, oldest first.",
                {"200": _json(points, "Points."), "422": _INVALID},
                _param("limit", "query", limit, "At most this many."),
                _param("component", "query", _STRING, "This component's only."),
            )
        },
        "/summary": {
            "get": _operation(
                "Counts since start: requests, statuses, faults, per component.",
                {"200": _json("Summary", "Counts.")},
            )
        },
        "/metrics": {
            "get": _operation(
                "Prometheus metrics.",
                {"200": {"description": "Text format.", "content": text}},
            )
        },
        "/explain": {
            "get": _operation(
                "Which route a request would match; each fault that could act.",
                {"200": _json("Explanation", "The explanation."), "422": _INVALID},
                _param("method", "query", {**_STRING, "default": "GET"}),
                {**_param("path", "query", _PATH), "required": True},
                _param("header", "query", _array(_STRING), "'Name: value'; repeat."),
            )
        },
    }


def _experiment_paths() -> dict[str, Json]:
    """Experiments on live traffic."""
    result = _json("ExperimentResult", "The result so far, or at its end.")
    started = _object(experiment_id=_STRING, status=_STRING)
    busy = _error("Its id, or a component it acts on, is a running experiment's.")
    return {
        "/experiments": {
            "get": _operation(
                "Every kept result, observations left out.",
                {"200": _json(_object(experiments=_array(_ANY_OBJECT)), "Results.")},
            ),
            "post": _operation(
                "Start an experiment; experiment_id may be left out. Experiments on "
                "different components run together; one on a busy component is 409.",
                {
                    "201": _json(started, "Started."),
                    "400": _MALFORMED,
                    "409": busy,
                    "422": _INVALID,
                },
                body=_json(_EXPERIMENT_BODY, "The experiment."),
            ),
        },
        "/experiments/{experiment_id}": {
            "get": _operation(
                "The experiment's result.",
                {"200": result, "404": _NO_EXPERIMENT},
                _EXPERIMENT_ID,
            )
        },
        "/experiments/{experiment_id}/abort": {
            "post": _operation(
                "Stop the experiment now; its status becomes aborted.",
                {"200": result, "404": _NO_EXPERIMENT},
                _EXPERIMENT_ID,
            )
        },
    }


@cache
def openapi_document() -> Json:
    """Return the admin API's OpenAPI 3.1 document (built once; do not mutate)."""
    _, models = models_json_schema(
        [
            (FaultConfig, "validation"),
            (ChaosExperiment, "validation"),
            (ExperimentResult, "serialization"),
            (ObservationPoint, "serialization"),
            (ProxyConfig, "serialization"),
        ],
        ref_template=_REF,
    )
    faults_object = FaultsBody.model_json_schema(ref_template=_REF)
    faults_object.pop("$defs", None)

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chaosproxy admin API",
            "version": "1",
            "description": "Steer a running chaosproxy: faults, experiments, "
            "reload, observations and metrics.",
        },
        "paths": {
            **_proxy_paths(),
            **_route_paths(),
            **_observation_paths(),
            **_experiment_paths(),
        },
        "components": {
            "schemas": {
                **models["$defs"],
                "FaultsObject": faults_object,
                **_response_schemas(),
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
