"""The proxy's configuration file: its models, its rules, and how it is loaded.

A file is YAML, version 1 (SPEC section 3). Loading goes in three steps, and every
problem found in any of them is reported together, so one run of
``chaosproxy validate`` shows everything that needs fixing:

1. YAML: syntax, a single document that is a mapping, no key given twice;
2. fields: pydantic validates types, bounds, unknown keys, addresses and patterns;
3. rules across fields: latency faults need ``duration_ms``, error faults an
   ``error_code`` from 400 to 599, route names are unique, and every component a
   top-level fault names is carried by some route.

The last rule is strict on purpose: a top-level fault aimed at a misspelt component
would load fine and then inject nothing, which looks exactly like a resilient
service. ``"default"``, the component of requests that match no route, is a valid
target.

Errors: :func:`parse_config` and :func:`load_config` raise only :class:`ConfigError`,
which holds a list of :class:`ConfigProblem`, each naming the file, the line, the
field's path and what was expected, as in ``proxy.yaml:14:
routes[2].faults[0].probability: expected 0 to 1, got 1.5``. A ``ProxyConfig`` built
in code raises pydantic's ``ValidationError`` instead, rules included.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aumai_chaos.models import FaultConfig
from chaosproxy.addresses import UpstreamURL, parse_host_port, parse_upstream
from chaosproxy.config_rules import (
    DEFAULT_COMPONENT,
    check_proxy_fault,
    find_rule_problems,
)
from chaosproxy.limits import Limits
from chaosproxy.yamlmarks import (
    Loc,
    MarkedDocument,
    describe_validation_error,
    describe_yaml_error,
    format_path,
    load_marked,
    show_value,
)

__all__ = [
    "DEFAULT_COMPONENT",
    "ConfigError",
    "ConfigProblem",
    "Limits",
    "MatchConfig",
    "ProxyConfig",
    "RouteConfig",
    "UpstreamURL",
    "check_proxy_fault",
    "config_schema",
    "load_config",
    "parse_config",
    "parse_host_port",
    "parse_upstream",
]

# RFC 9110 section 5.6.2: methods and header names are tokens.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Route names appear in admin URLs (PUT /routes/{name}/faults), so no slashes.
_ROUTE_NAME = re.compile(r"[A-Za-z0-9._-]+")
# Set by parse_config, which checks the cross-field rules itself, with lines.
_RULES_CHECKED_BY_CALLER = "chaosproxy.rules_checked_by_caller"


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a configuration file, and where it is."""

    source: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        path = f" {self.path}:" if self.path else ""
        return f"{where}:{path} {self.message}"


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` lists everything wrong.

    Problems are sorted by line, those without a line (the file as a whole) first;
    ``str()`` gives one problem per line.
    """

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = sorted(
            problems, key=lambda p: (p.line is not None, p.line or 0, p.path)
        )
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


def _check_address(text: str) -> str:
    """Validate a ``host:port`` setting, keeping it as written."""
    parse_host_port(text)
    return text


def _check_method(method: str) -> str:
    """Validate an HTTP method and bring it to upper case."""
    if _TOKEN.fullmatch(method) is None:
        raise ValueError(f"expected an HTTP method such as GET or POST, got {method!r}")
    return method.upper()


def _check_header_name(name: str) -> str:
    """Validate a header name and bring it to lower case."""
    if _TOKEN.fullmatch(name) is None:
        raise ValueError(f"expected a header name, got {name!r}")
    return name.lower()


class MatchConfig(BaseModel):
    """The conditions a request must meet for a route; each given one must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(
        None, description="Path glob: * stays within one segment, ** crosses them."
    )
    path_regex: str | None = Field(
        None, description="Python regular expression, searched in the path."
    )
    methods: list[Annotated[str, AfterValidator(_check_method)]] = Field(
        default_factory=list, description="HTTP methods, any case; empty means any."
    )
    headers: dict[Annotated[str, AfterValidator(_check_header_name)], str] = Field(
        default_factory=dict, description="Exact header values; names in any case."
    )

    @field_validator("path")
    @classmethod
    def _check_path(cls, path: str | None) -> str | None:
        if path is not None and not path.startswith("/"):
            raise ValueError(f"expected a path glob starting with '/', got {path!r}")
        return path

    @field_validator("path_regex")
    @classmethod
    def _check_path_regex(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"expected a regular expression, got {pattern!r} ({exc})"
            ) from None
        return pattern


class RouteConfig(BaseModel):
    """A named class of requests, the component it belongs to, and its faults.

    A name is letters, digits, ``.``, ``_`` and ``-`` (it appears in admin URLs),
    and is never ``default``, which the admin API uses for unmatched requests.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Unique; used in admin URLs and observations.")
    match: MatchConfig = Field(default_factory=MatchConfig)
    component: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="Component label; defaults to the route's name."
    )
    faults: list[FaultConfig] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if _ROUTE_NAME.fullmatch(name) is None:
            raise ValueError(
                "expected letters, digits, '.', '_' or '-' (the name appears in "
                f"admin URLs), got {name!r}"
            )
        if name == DEFAULT_COMPONENT:
            raise ValueError("'default' is reserved for requests that match no route")
        return name

    @property
    def effective_component(self) -> str:
        """The component this route's requests are observed and targeted under."""
        return self.component or self.name


class ProxyConfig(BaseModel):
    """A whole configuration file, validated.

    Built directly (not through :func:`parse_config`), a model that breaks a
    cross-field rule raises a pydantic ``ValidationError`` naming every broken rule.
    """

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = Field(description="File format version; always 1.")
    listen: Annotated[str, AfterValidator(_check_address)] = Field(
        "127.0.0.1:8080", description="host:port the proxy serves."
    )
    upstream: str = Field(description="http(s)://host:port[/base-path] to forward to.")
    admin: Annotated[str, AfterValidator(_check_address)] | None = Field(
        None, description="host:port of the admin API; absent means no admin API."
    )
    admin_token: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="Bearer token the admin API demands."
    )
    seed: int | None = Field(
        None, strict=True, description="Makes every fault decision reproducible."
    )
    upstream_timeout_ms: int = Field(
        30000, gt=0, strict=True, description="A slower upstream answer becomes 504."
    )
    observations_window: int = Field(
        10000, gt=0, strict=True, description="How many observations are kept."
    )
    limits: Limits = Field(
        default_factory=Limits,
        description="Bounds on client request heads and idle connections.",
    )
    routes: list[RouteConfig] = Field(
        default_factory=list, description="Tried in order; the first match wins."
    )
    faults: list[FaultConfig] = Field(
        default_factory=list,
        description="Faults for every route whose component is listed in the "
        "fault's affected_components.",
    )

    @field_validator("version", mode="before")
    @classmethod
    def _check_version(cls, version: object) -> object:
        # Literal[1] alone would also take true and 1.0.
        if type(version) is not int or version != 1:
            raise ValueError(f"expected 1, got {show_value(version)}")
        return version

    @field_validator("upstream")
    @classmethod
    def _check_upstream(cls, upstream: str) -> str:
        parse_upstream(upstream)
        return upstream

    @model_validator(mode="after")
    def _check_rules(self, info: ValidationInfo) -> ProxyConfig:
        if info.context and info.context.get(_RULES_CHECKED_BY_CALLER):
            return self
        findings = find_rule_problems(self.model_dump(mode="json"))
        if findings:
            raise ValueError(
                "; ".join(
                    f"{format_path(f.loc)}: {f.text(format_path)}" for f in findings
                )
            )
        return self

    @property
    def listen_address(self) -> tuple[str, int]:
        """The host and port the proxy listens on."""
        return parse_host_port(self.listen)

    @property
    def admin_address(self) -> tuple[str, int] | None:
        """The host and port of the admin API, or None when it is off."""
        return None if self.admin is None else parse_host_port(self.admin)

    @property
    def upstream_url(self) -> UpstreamURL:
        """The upstream's scheme, host, port and base path."""
        return parse_upstream(self.upstream)


def parse_config(text: str, source: str = "<string>") -> ProxyConfig:
    """Parse and validate a configuration held in ``text``.

    ``source`` names the text in problems (a file name, say). Raises
    :class:`ConfigError` listing every problem found; nothing is returned unless
    the whole configuration is valid.
    """
    try:
        document = load_marked(text)
    except yaml.YAMLError as exc:
        line, message = describe_yaml_error(exc)
        raise ConfigError([ConfigProblem(source, line, "", message)]) from None
    if document is None or not isinstance(document.data, dict):
        got = "an empty document" if document is None else show_value(document.data)
        message = f"expected a mapping of settings (version, upstream, ...), got {got}"
        line = None if document is None else document.line_of(())
        raise ConfigError([ConfigProblem(source, line, "", message)])

    problems = [
        ConfigProblem(
            source,
            duplicate.line,
            format_path(duplicate.loc),
            f"duplicate key {str(duplicate.loc[-1])!r} (first at line "
            f"{duplicate.first_line})",
        )
        for duplicate in document.duplicates
    ]
    config = _validate(document, source, problems)
    if config is None or problems:
        raise ConfigError(problems)

    return config


def _validate(
    document: MarkedDocument, source: str, problems: list[ConfigProblem]
) -> ProxyConfig | None:
    """Check the fields and the cross-field rules of a loaded document.

    Every problem found is added to ``problems``; the model is returned when the
    fields are valid, even if a rule is broken.
    """
    config = None
    try:
        config = ProxyConfig.model_validate(
            document.data, context={_RULES_CHECKED_BY_CALLER: True}
        )
    except ValidationError as exc:
        problems.extend(
            ConfigProblem(
                source,
                document.line_of(error["loc"]),
                format_path(error["loc"]),
                describe_validation_error(error, ProxyConfig),
            )
            for error in exc.errors(include_url=False)
        )

    def where(loc: Loc) -> str:
        return f"line {document.line_of(loc)}"

    problems.extend(
        ConfigProblem(
            source, document.line_of(f.loc), format_path(f.loc), f.text(where)
        )
        for f in find_rule_problems(document.data)
    )

    return config


def load_config(path: str | os.PathLike[str]) -> ProxyConfig:
    """Read and validate the configuration file at ``path``.

    Raises :class:`ConfigError` for an unreadable file as for an invalid one; the
    problems name the file as ``path`` was given.
    """
    source = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        problem = ConfigProblem(source, None, "", f"cannot read: {reason}")
        raise ConfigError([problem]) from None
    except UnicodeDecodeError as exc:
        message = f"expected UTF-8 text, got byte {exc.object[exc.start]:#04x}"
        raise ConfigError([ConfigProblem(source, None, "", message)]) from None

    return parse_config(text, source)


# Editors show these; the library's FaultConfig carries no descriptions of its own.
_FAULT_FIELD_HELP = {
    "fault_type": "What the fault does to a request (SPEC section 4).",
    "probability": "Chance from 0 to 1 that the fault fires on a request.",
    "duration_ms": "How long latency holds a request, or a timeout waits.",
    "error_code": "HTTP status of an error fault, 400 to 599.",
    "error_message": "Message in the JSON body of an error fault.",
    "affected_components": "Components a top-level fault applies to.",
}


def config_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of a configuration file.

    It covers the fields and the per-fault rules; the rules that relate routes to
    each other (unique names, known components) are only checked by the loader.
    """
    schema = ProxyConfig.model_json_schema()
    fault = schema["$defs"]["FaultConfig"]
    for name, text in _FAULT_FIELD_HELP.items():
        fault["properties"][name].setdefault("description", text)
    fault["allOf"] = [
        _required_when("latency", "duration_ms", {"type": "integer", "minimum": 0}),
        _required_when(
            "error", "error_code", {"type": "integer", "minimum": 400, "maximum": 599}
        ),
    ]

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "chaosproxy configuration",
        "description": "A chaosproxy configuration file, version 1.",
    }


def _required_when(
    fault_type: str, field: str, shape: dict[str, Any]
) -> dict[str, Any]:
    """A schema clause: faults of ``fault_type`` must give ``field`` as ``shape``."""
    return {
        "if": {
            "properties": {"fault_type": {"const": fault_type}},
            "required": ["fault_type"],
        },
        "then": {"required": [field], "properties": {field: shape}},
    }
