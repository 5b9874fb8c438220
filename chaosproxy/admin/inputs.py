"""What the admin API accepts, and how it says no.

Every refusal is one JSON shape, whatever the status::

    {"error": "invalid", "message": "...", "errors": [{"path": "[0].duration_ms",
                                                        "message": "..."}]}

``error`` is a stable code (``malformed_json`` 400, ``unauthorized`` 401,
``not_found`` 404, ``method_not_allowed`` 405, ``conflict`` 409, ``invalid`` 422,
...); ``errors`` lists field-level problems, with paths written as in the
configuration file's messages. A body is checked whole before anything is applied,
and every problem in it is reported at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence

from aiohttp import web
from pydantic import BaseModel, ValidationError

from aumai_chaos import ChaosExperiment, FaultConfig
from chaosproxy.config import check_proxy_fault
from chaosproxy.yamlmarks import describe_validation_error, format_path, show_value

__all__ = [
    "FaultsBody",
    "RequestProblem",
    "error_middleware",
    "invalid",
    "json_response",
    "parse_experiment",
    "parse_faults_body",
    "parse_ttl",
    "query_int",
    "read_json",
]

Loc = tuple[Hashable, ...]
Problems = list[tuple[str, str]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Lax validation would read "0.5" or true as a number; an API client that sends
# them has a bug worth hearing about.
_NUMERIC_FAULT_FIELDS = ("probability", "duration_ms", "error_code")


class RequestProblem(Exception):
    """A request the admin API refuses; becomes a JSON error response."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        errors: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        **extra: object,
    ) -> None:
        """Describe the refusal: HTTP ``status``, stable ``code``, a sentence."""
        super().__init__(message)
        self.status = status
        self.body: dict[str, object] = {"error": code, "message": message, **extra}
        if errors:
            self.body["errors"] = [{"path": p, "message": m} for p, m in errors]
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        """The JSON response that tells the client what was wrong."""
        return json_response(self.body, status=self.status, headers=self.headers)


def invalid(problems: Problems, what: str = "the request body") -> RequestProblem:
    """A 422 listing field-level ``problems`` of ``what``."""
    count = len(problems)
    noun = "problem" if count == 1 else "problems"
    return RequestProblem(
        422,
        "invalid",
        f"{what} has {count} {noun}; nothing was changed",
        errors=problems,
    )


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response, indented for people reading it with curl."""
    return web.Response(
        text=json.dumps(body, indent=2) + "\n",
        status=status,
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Answer every refusal, aiohttp's own 404 and 405 included, as JSON."""
    try:
        return await handler(request)
    except RequestProblem as problem:
        return problem.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "refused")
        message = f"{request.method} {request.path}: {exc.reason.lower()}"
        return json_response({"error": code, "message": message}, status=exc.status)


async def read_json(request: web.Request) -> object:
    """Read the request body as JSON; 400 when absent or malformed."""
    if not request.body_exists:
        raise RequestProblem(400, "malformed_json", "expected a JSON body, got none")
    raw = await request.read()
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise RequestProblem(
            400, "malformed_json", "expected a JSON body in UTF-8"
        ) from None
    except json.JSONDecodeError as exc:
        raise RequestProblem(
            400,
            "malformed_json",
            f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
        ) from None


def query_int(request: web.Request, name: str, default: int, minimum: int = 1) -> int:
    """Read an integer query parameter; 422 when it is not one, or too small."""
    text = request.query.get(name)
    if text is None:
        return default
    # isdigit() alone takes '²', which int() rejects, and int() refuses more than
    # 4300 digits (CVE-2020-10735); either would have been a 500.
    digits = text.isascii() and text.isdigit() and len(text) <= 4000
    value = int(text) if digits else None
    if value is None or value < minimum:
        raise invalid(
            [(name, f"expected a whole number of at least {minimum}, got {text!r}")],
            "the query string",
        )

    return value


def _pydantic_problems(
    exc: ValidationError, root: type[BaseModel], prefix: Loc
) -> Problems:
    """Word pydantic's errors in the configuration file's style."""
    return [
        (format_path((*prefix, *error["loc"])), describe_validation_error(error, root))
        for error in exc.errors(include_url=False)
    ]


def _number_problems(raw: object, prefix: Loc) -> Problems:
    """Report numeric fault fields given as strings or booleans."""
    fields = raw if isinstance(raw, dict) else {}
    return [
        (format_path((*prefix, key)), f"expected a number, got {show_value(value)}")
        for key in _NUMERIC_FAULT_FIELDS
        if isinstance(value := fields.get(key), bool | str)
    ]


def _merge(first: Problems, then: Problems) -> Problems:
    """``first``, then each of ``then`` at a path ``first`` does not mention."""
    seen = {path for path, _ in first}
    return first + [(path, text) for path, text in then if path not in seen]


def parse_fault(raw: object, prefix: Loc) -> tuple[FaultConfig | None, Problems]:
    """Validate one fault and the proxy's rules on it; the fault, and problems."""
    problems = _number_problems(raw, prefix)
    try:
        fault = FaultConfig.model_validate(raw)
    except ValidationError as exc:
        return None, _merge(problems, _pydantic_problems(exc, FaultConfig, prefix))
    problems += [
        (format_path((*prefix, name)), message)
        for name, message in check_proxy_fault(fault)
    ]

    return fault, problems


class FaultsBody(BaseModel):
    """The object form of ``PUT /routes/{name}/faults``.

    The body may also be a bare list of faults, meaning ``{"faults": [...]}``.
    ``ttl_seconds``, when given, is how long the faults stay before the route
    reverts to the faults of the file by itself.
    """

    faults: list[FaultConfig]
    ttl_seconds: float | None = None


def parse_faults_body(doc: object) -> tuple[list[FaultConfig], float | None]:
    """Validate a ``PUT /routes/{name}/faults`` body; 422 lists every problem."""
    items: object
    prefix: Loc
    problems: Problems = []
    ttl: float | None = None
    if isinstance(doc, list):
        items, prefix = doc, ()
    elif isinstance(doc, dict):
        items, prefix = doc.get("faults"), ("faults",)
        problems += [
            (str(key), f"unknown key {str(key)!r}; expected faults and ttl_seconds")
            for key in doc
            if key not in FaultsBody.model_fields
        ]
        ttl, ttl_problems = _ttl(doc.get("ttl_seconds"))
        problems += ttl_problems
    else:
        problems.append(
            ("", f"expected a list of faults or an object, got {show_value(doc)}")
        )
        items, prefix = [], ()

    if not isinstance(items, list):
        problems.append(
            ("faults", f"expected a list of faults, got {show_value(items)}")
        )
        items = []
    faults: list[FaultConfig] = []
    for index, raw in enumerate(items):
        fault, found = parse_fault(raw, (*prefix, index))
        problems += found
        if fault is not None:
            faults.append(fault)
    if problems:
        raise invalid(problems)

    return faults, ttl


def _ttl(value: object) -> tuple[float | None, Problems]:
    """Validate ``ttl_seconds``: absent, null, or a positive finite number."""
    if value is None:
        return None, []
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, [("ttl_seconds", f"expected seconds, got {show_value(value)}")]
    if not (value > 0 and math.isfinite(value)):
        return None, [("ttl_seconds", f"expected more than 0, got {value!r}")]

    return float(value), []


def parse_ttl(value: object) -> float | None:
    """Validate a time to live given on its own (a query parameter); 422 if bad."""
    ttl, problems = _ttl(value)
    if problems:
        raise invalid(problems, "the query string")

    return ttl


def parse_experiment(doc: object) -> ChaosExperiment:
    """Validate a ``POST /experiments`` body as a ChaosExperiment; 422 if it is not.

    ``experiment_id`` may be left out: like an empty one, the proxy then assigns a
    UUID4. The proxy's own rules (known components, clashes) are checked later.
    """
    if isinstance(doc, dict):
        doc = {"experiment_id": "", **doc}
    problems: Problems = []
    faults = doc.get("faults") if isinstance(doc, dict) else None
    for index, raw in enumerate(faults if isinstance(faults, list) else ()):
        problems += _number_problems(raw, ("faults", index))
    try:
        experiment = ChaosExperiment.model_validate(doc)
    except ValidationError as exc:
        found = _pydantic_problems(exc, ChaosExperiment, ())
        raise invalid(_merge(problems, found)) from None
    if problems:
        raise invalid(problems)

    return experiment
