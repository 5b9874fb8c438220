"""The configuration loader: its messages, their lines, the examples and the schema."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from aumai_chaos.models import FaultConfig, FaultType
from chaosproxy.config import (
    ConfigError,
    ConfigProblem,
    ProxyConfig,
    check_proxy_fault,
    config_schema,
    load_config,
    parse_config,
)
from chaosproxy.yamlmarks import load_marked

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXAMPLES = sorted(CONFIGS.glob("*.yaml"))

HEAD = 'version: 1\nupstream: "http://127.0.0.1:9000"\n'


def problems_in(text: str) -> list[str]:
    """Parse ``text`` as proxy.yaml and return its problems as strings."""
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), "proxy.yaml")
    return [str(problem) for problem in caught.value.problems]


ROUTE = HEAD + "routes:\n  - name: checkout\n"
FAULT = ROUTE + "    faults:\n      - fault_type: "

ERROR_CASES = [
    pytest.param(
        FAULT + "error\n        error_code: 503\n        probability: 1.5\n",
        "proxy.yaml:8: routes[0].faults[0].probability: expected 0 to 1, got 1.5",
        id="probability-above-one",
    ),
    pytest.param(
        FAULT + "latency\n        duration_ms: 10\n        probability: yes\n",
        "proxy.yaml:8: routes[0].faults[0].probability: expected a number, got true",
        id="probability-yaml-boolean",
    ),
    pytest.param(
        HEAD + "retires: 3\n",
        "proxy.yaml:3: retires: unknown key 'retires'; did you mean 'routes'?",
        id="unknown-top-level-key",
    ),
    pytest.param(
        ROUTE + "    match:\n      hedaers: {x-a: b}\n",
        "proxy.yaml:6: routes[0].match.hedaers: unknown key 'hedaers'; "
        "did you mean 'headers'?",
        id="unknown-key-in-match",
    ),
    pytest.param(
        FAULT + "timeout\n        probabilty: 0.5\n",
        "proxy.yaml:7: routes[0].faults[0].probabilty: unknown key 'probabilty'; "
        "did you mean 'probability'?",
        id="unknown-key-in-fault",
    ),
    pytest.param(
        "version: 1\n",
        "proxy.yaml:1: upstream: required field missing",
        id="missing-upstream",
    ),
    pytest.param(
        HEAD + "routes:\n  - match: {path: /x}\n",
        "proxy.yaml:4: routes[0].name: required field missing",
        id="route-without-name",
    ),
    pytest.param(
        "version: 1\nupstream: 127.0.0.1:9000\n",
        "proxy.yaml:2: upstream: expected an http:// or https:// URL with a host, "
        "got '127.0.0.1:9000'",
        id="upstream-without-scheme",
    ),
    pytest.param(
        "version: 1\nupstream: http://h:99999\n",
        "proxy.yaml:2: upstream: expected a port 1 to 65535 in the URL, "
        "got 'http://h:99999'",
        id="upstream-bad-port",
    ),
    pytest.param(
        "version: 1\nupstream: http://h:80/api?x=1\n",
        "proxy.yaml:2: upstream: expected no query or fragment in the URL, "
        "got 'http://h:80/api?x=1'",
        id="upstream-with-query",
    ),
    pytest.param(
        "version: 1\nupstream: http://me:secret@h:80\n",
        "proxy.yaml:2: upstream: expected no user:password in the upstream URL",
        id="upstream-credentials-not-echoed",
    ),
    pytest.param(
        HEAD + "listen: localhost\n",
        "proxy.yaml:3: listen: expected host:port (an IPv6 host in brackets, as "
        "[::1]:8080), got 'localhost'",
        id="listen-without-port",
    ),
    pytest.param(
        HEAD + "listen: '::1:8080'\n",
        "proxy.yaml:3: listen: expected host:port (an IPv6 host in brackets, as "
        "[::1]:8080), got '::1:8080'",
        id="listen-ipv6-without-brackets",
    ),
    pytest.param(
        HEAD + "admin: 127.0.0.1:70000\n",
        "proxy.yaml:3: admin: expected host:port with a port 0 to 65535, "
        "got '127.0.0.1:70000'",
        id="admin-port-too-large",
    ),
    pytest.param(
        FAULT + "latency\n        probability: 0.5\n",
        "proxy.yaml:6: routes[0].faults[0].duration_ms: required when fault_type "
        "is latency",
        id="latency-without-duration",
    ),
    pytest.param(
        FAULT + "error\n        error_code: 600\n",
        "proxy.yaml:7: routes[0].faults[0].error_code: expected 400 to 599, got 600",
        id="error-code-600",
    ),
    pytest.param(
        FAULT + "error\n        error_code: 200\n",
        "proxy.yaml:7: routes[0].faults[0].error_code: expected 400 to 599, got 200",
        id="error-code-200",
    ),
    pytest.param(
        FAULT + "error\n",
        "proxy.yaml:6: routes[0].faults[0].error_code: required when fault_type "
        "is error",
        id="error-without-code",
    ),
    pytest.param(
        FAULT + "latncy\n",
        "proxy.yaml:6: routes[0].faults[0].fault_type: expected one of latency, "
        "error, timeout, partial_failure, resource_exhaustion, data_corruption, "
        "got 'latncy'",
        id="bad-fault-type",
    ),
    pytest.param(
        ROUTE + "  - name: checkout\n",
        "proxy.yaml:5: routes[1].name: duplicate route name 'checkout' "
        "(first at line 4)",
        id="duplicate-route-names",
    ),
    pytest.param(
        HEAD + "routes:\n  - name: default\n",
        "proxy.yaml:4: routes[0].name: 'default' is reserved for requests that "
        "match no route",
        id="route-named-default",
    ),
    pytest.param(
        HEAD + "routes:\n  - name: a/b\n",
        "proxy.yaml:4: routes[0].name: expected letters, digits, '.', '_' or '-' "
        "(the name appears in admin URLs), got 'a/b'",
        id="route-name-with-slash",
    ),
    pytest.param(
        ROUTE + "    match:\n      path_regex: '(unclosed'\n",
        "proxy.yaml:6: routes[0].match.path_regex: expected a regular expression, "
        "got '(unclosed' (missing ), unterminated subpattern at position 0)",
        id="bad-regex",
    ),
    pytest.param(
        ROUTE + "    match:\n      path: api/*\n",
        "proxy.yaml:6: routes[0].match.path: expected a path glob starting with "
        "'/', got 'api/*'",
        id="glob-without-slash",
    ),
    pytest.param(
        ROUTE + "    match:\n      methods: [GET, 'GE T']\n",
        "proxy.yaml:6: routes[0].match.methods[1]: expected an HTTP method such as "
        "GET or POST, got 'GE T'",
        id="method-not-a-token",
    ),
    pytest.param(
        ROUTE + "    component: ''\n",
        "proxy.yaml:5: routes[0].component: expected a non-empty string, got ''",
        id="empty-component",
    ),
    pytest.param(
        HEAD + "routes:\n  - name: pay\nfaults:\n  - fault_type: timeout\n"
        "    affected_components: [pya]\n",
        "proxy.yaml:7: faults[0].affected_components[0]: no route has the "
        "component 'pya'; did you mean 'pay'?",
        id="unknown-affected-component",
    ),
    pytest.param(
        HEAD + "faults:\n  - fault_type: timeout\n    affected_components: [x]\n",
        "proxy.yaml:5: faults[0].affected_components[0]: no route has the "
        "component 'x'; known: default",
        id="unknown-component-lists-known",
    ),
    pytest.param(
        HEAD + "faults:\n  - fault_type: timeout\n",
        "proxy.yaml:4: faults[0].affected_components: top-level faults need "
        "affected_components; put route-specific faults under the route",
        id="top-level-fault-without-components",
    ),
    pytest.param(
        HEAD + "seed: '42'\n",
        "proxy.yaml:3: seed: expected an integer, got '42'",
        id="seed-as-string",
    ),
    pytest.param(
        HEAD + "upstream_timeout_ms: 0\n",
        "proxy.yaml:3: upstream_timeout_ms: expected more than 0, got 0",
        id="zero-upstream-timeout",
    ),
    pytest.param(
        HEAD + "admin_token: ''\n",
        "proxy.yaml:3: admin_token: expected a non-empty string, got ''",
        id="empty-admin-token",
    ),
    pytest.param(
        'version: 1\nupstream: "http://127.0.0.1:9000\n',
        "proxy.yaml:3: invalid YAML: found unexpected end of stream (while "
        "scanning a quoted scalar on line 2)",
        id="yaml-syntax-error",
    ),
    pytest.param(
        HEAD + "routes: []\nversion: 1\n",
        "proxy.yaml:4: version: duplicate key 'version' (first at line 1)",
        id="duplicate-yaml-key",
    ),
    pytest.param(
        "",
        "proxy.yaml: expected a mapping of settings (version, upstream, ...), "
        "got an empty document",
        id="empty-file",
    ),
    pytest.param(
        "# nothing but a comment\n",
        "proxy.yaml: expected a mapping of settings (version, upstream, ...), "
        "got an empty document",
        id="comments-only",
    ),
    pytest.param(
        "- version: 1\n",
        "proxy.yaml:1: expected a mapping of settings (version, upstream, ...), "
        "got a list",
        id="document-is-a-list",
    ),
    pytest.param(
        'version: 2\nupstream: "http://127.0.0.1:9000"\n',
        "proxy.yaml:1: version: expected 1, got 2",
        id="version-2",
    ),
    pytest.param(
        'version: true\nupstream: "http://127.0.0.1:9000"\n',
        "proxy.yaml:1: version: expected 1, got true",
        id="version-boolean",
    ),
]


@pytest.mark.parametrize(("text", "expected"), ERROR_CASES)
def test_each_mistake_is_reported_with_file_line_path_and_message(
    text: str, expected: str
) -> None:
    """A file with one mistake gets exactly one problem, worded as documented."""
    assert problems_in(text) == [expected]


def test_every_problem_in_a_file_is_reported_in_line_order() -> None:
    """Field errors and cross-field rules are reported together, sorted by line."""
    text = """\
        version: 1
        upstream: "http://127.0.0.1:9000"
        listen: "nowhere"
        routes:
          - name: a
            faults:
              - fault_type: error
                error_code: 700
              - fault_type: latency
                probability: -1
                duration_ms: 5
          - name: a
        faults:
          - fault_type: error
            error_code: 503
            affected_components: [b]
        extra: 1
        """
    problems = problems_in(text)

    assert [p.split(": ")[0:2] for p in problems] == [
        ["proxy.yaml:3", "listen"],
        ["proxy.yaml:8", "routes[0].faults[0].error_code"],
        ["proxy.yaml:10", "routes[0].faults[1].probability"],
        ["proxy.yaml:12", "routes[1].name"],
        ["proxy.yaml:16", "faults[0].affected_components[0]"],
        ["proxy.yaml:17", "extra"],
    ]
    assert problems[2].endswith("expected 0 to 1, got -1")


def test_error_in_repeated_key_points_at_the_value_that_was_loaded() -> None:
    """With a key given twice, errors inside it point at the second, loaded copy."""
    text = HEAD + "routes:\n  - name: a\nroutes:\n  - name: b\n    bad: 1\n"

    assert problems_in(text) == [
        "proxy.yaml:5: routes: duplicate key 'routes' (first at line 3)",
        "proxy.yaml:7: routes[0].bad: unknown key 'bad'",
    ]


def test_merge_key_overridden_explicitly_is_not_a_duplicate() -> None:
    """A key that overrides one brought in by ``<<`` is the point of merging."""
    text = HEAD + textwrap.dedent(
        """\
        x-base: &base {path: /a, methods: [GET]}
        routes:
          - name: a
            match: {<<: *base, path: /b}
        """
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "proxy.yaml")

    # Only the stray x-base key is wrong; the merge itself is fine.
    assert [p.path for p in caught.value.problems] == ["x-base"]


def test_default_component_is_a_valid_fault_target() -> None:
    """``default``, the component of unmatched requests, is a valid target."""
    text = HEAD + "faults:\n  - fault_type: timeout\n    affected_components: [default]"

    config = parse_config(text)

    assert config.faults[0].affected_components == ["default"]


def test_valid_file_is_normalised_and_defaulted() -> None:
    """Methods become upper case, header names lower case, defaults fill the rest."""
    text = HEAD + textwrap.dedent(
        """\
        routes:
          - name: checkout
            match: {path: /api/*, methods: [post], headers: {X-Tenant: beta}}
        """
    )

    config = parse_config(text)
    route = config.routes[0]

    assert route.match.methods == ["POST"]
    assert route.match.headers == {"x-tenant": "beta"}
    assert route.effective_component == "checkout"
    assert (config.listen, config.admin, config.seed) == ("127.0.0.1:8080", None, None)
    assert (config.upstream_timeout_ms, config.observations_window) == (30000, 10000)


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        pytest.param("127.0.0.1:8080", ("127.0.0.1", 8080), id="ipv4"),
        pytest.param("[::1]:0", ("::1", 0), id="ipv6-any-port"),
        pytest.param("proxy.internal:80", ("proxy.internal", 80), id="hostname"),
    ],
)
def test_listen_address_splits_host_and_port(
    listen: str, address: tuple[str, int]
) -> None:
    """``listen_address`` gives the host (IPv6 unbracketed) and the port."""
    config = parse_config(HEAD + f"listen: '{listen}'\nadmin: '{listen}'\n")

    assert config.listen_address == address
    assert config.admin_address == address


@pytest.mark.parametrize(
    ("upstream", "parts", "origin"),
    [
        pytest.param(
            "http://127.0.0.1:9000",
            ("http", "127.0.0.1", 9000, ""),
            "http://127.0.0.1:9000",
            id="host-and-port",
        ),
        pytest.param(
            "https://api.example/v2/",
            ("https", "api.example", 443, "/v2"),
            "https://api.example:443",
            id="default-port-and-base-path",
        ),
        pytest.param(
            "http://[::1]:9000/base",
            ("http", "::1", 9000, "/base"),
            "http://[::1]:9000",
            id="ipv6",
        ),
    ],
)
def test_upstream_url_gives_scheme_host_port_and_base_path(
    upstream: str, parts: tuple[str, str, int, str], origin: str
) -> None:
    """``upstream_url`` splits the URL; the base path loses its trailing slash."""
    config = parse_config(f"version: 1\nupstream: '{upstream}'\n")

    assert tuple(config.upstream_url) == parts
    assert config.upstream_url.origin == origin


def test_unreadable_file_is_a_problem_without_a_line(tmp_path: Path) -> None:
    """A missing file is reported through ConfigError, naming the path as given."""
    missing = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError) as caught:
        load_config(missing)

    assert str(caught.value) == f"{missing}: cannot read: No such file or directory"


def test_file_that_is_not_utf8_is_a_problem(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported, not raised as UnicodeDecodeError."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\nupstream: '\xe9'\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert str(caught.value) == f"{path}: expected UTF-8 text, got byte 0xe9"


def test_problems_are_sorted_and_printed_one_per_line() -> None:
    """ConfigError orders by line, whole-file problems first, one per line."""
    error = ConfigError(
        [
            ConfigProblem("p.yaml", 9, "seed", "expected an integer, got 'x'"),
            ConfigProblem("p.yaml", None, "", "cannot read: denied"),
            ConfigProblem("p.yaml", 2, "", "invalid YAML: oops"),
        ]
    )

    assert str(error).splitlines() == [
        "p.yaml: cannot read: denied",
        "p.yaml:2: invalid YAML: oops",
        "p.yaml:9: seed: expected an integer, got 'x'",
    ]


def test_model_built_in_code_enforces_the_cross_field_rules() -> None:
    """Validating a ProxyConfig directly (as the CLI's overrides do) checks rules."""
    data: dict[str, Any] = {
        "version": 1,
        "upstream": "http://127.0.0.1:9000",
        "routes": [{"name": "a"}, {"name": "a"}],
    }

    with pytest.raises(ValidationError, match=r"routes\[1\]\.name: duplicate route"):
        ProxyConfig.model_validate(data)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        pytest.param(
            FaultConfig(fault_type=FaultType.latency, duration_ms=0), [], id="latency"
        ),
        pytest.param(
            FaultConfig(fault_type=FaultType.latency),
            [("duration_ms", "required when fault_type is latency")],
            id="latency-without-duration",
        ),
        pytest.param(FaultConfig(fault_type=FaultType.timeout), [], id="timeout"),
        pytest.param(
            FaultConfig(fault_type=FaultType.error, error_code=599), [], id="error-599"
        ),
        pytest.param(
            FaultConfig(fault_type=FaultType.error, error_code=399),
            [("error_code", "expected 400 to 599, got 399")],
            id="error-399",
        ),
        pytest.param(
            FaultConfig(fault_type=FaultType.error),
            [("error_code", "required when fault_type is error")],
            id="error-without-code",
        ),
    ],
)
def test_check_proxy_fault_lists_broken_rules_by_field(
    fault: FaultConfig, expected: list[tuple[str, str]]
) -> None:
    """The per-fault rules, as the admin API applies them to a PUT body."""
    assert check_proxy_fault(fault) == expected


def test_line_of_a_missing_path_is_its_nearest_ancestor() -> None:
    """A path that is not in the document falls back to the closest existing one."""
    document = load_marked("a:\n  b:\n    - x\n    - y\n")

    assert document is not None
    assert document.line_of(("a", "b", 1)) == 4
    assert document.line_of(("a", "b", 1, "missing")) == 4
    assert document.line_of(("nowhere",)) == 1


def test_the_required_examples_exist() -> None:
    """The examples the README points to are all in configs/."""
    names = {path.name for path in EXAMPLES}

    assert names >= {
        "demo.yaml",
        "flaky-payments.yaml",
        "rate-limited-api.yaml",
        "slow-search.yaml",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_config_loads(path: Path) -> None:
    """Every file in configs/ is a valid configuration with routes and faults."""
    config = load_config(path)

    assert config.routes
    assert any(route.faults for route in config.routes) or config.faults


def test_demo_config_uses_every_fault_type_reproducibly() -> None:
    """The demo's file exercises each fault type, seeded, on the documented ports."""
    config = load_config(CONFIGS / "demo.yaml")
    faults = [f for route in config.routes for f in route.faults] + config.faults

    assert {f.fault_type for f in faults} == set(FaultType)
    assert config.seed == 7
    assert (config.listen, config.upstream, config.admin) == (
        "127.0.0.1:8080",
        "http://127.0.0.1:9000",
        "127.0.0.1:8081",
    )


def schema_errors(schema: dict[str, Any], value: Any, root: dict[str, Any]) -> int:
    """Count how ``value`` breaks ``schema``, for the keywords the schema uses.

    A small stand-in for a JSON Schema library, which this project does not need
    at run time: $ref, anyOf, allOf, if/then, type, enum, const, bounds, required,
    properties, additionalProperties and items.
    """
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    count = sum(schema_errors(part, value, root) for part in schema.get("allOf", []))
    if "anyOf" in schema:
        count += all(schema_errors(s, value, root) for s in schema["anyOf"])
    if "if" in schema and not schema_errors(schema["if"], value, root):
        count += schema_errors(schema["then"], value, root)
    if "type" in schema and not isinstance(value, JSON_TYPES[schema["type"]]):
        return count + 1
    if isinstance(value, bool) and schema.get("type") in ("integer", "number"):
        return count + 1
    count += "enum" in schema and value not in schema["enum"]
    count += "const" in schema and value != schema["const"]
    count += "minimum" in schema and value < schema["minimum"]
    count += "maximum" in schema and value > schema["maximum"]
    count += "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]
    if isinstance(value, dict):
        count += len(set(schema.get("required", [])) - set(value))
        for key, item in value.items():
            extra = schema.get("additionalProperties", {})
            inner = schema.get("properties", {}).get(key, extra)
            count += 1 if inner is False else schema_errors(inner, item, root)
    if isinstance(value, list):
        count += sum(schema_errors(schema.get("items", {}), v, root) for v in value)

    return count


JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def test_schema_describes_the_file_format() -> None:
    """The schema is draft 2020-12, titled, closed to unknown keys, and complete."""
    schema = config_schema()

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "chaosproxy configuration"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"version", "upstream"}
    assert set(schema["properties"]) == set(ProxyConfig.model_fields)
    assert schema["$defs"]["FaultType"]["enum"] == [t.value for t in FaultType]


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_schema_accepts_example_config(path: Path) -> None:
    """Each example in configs/ validates against the published schema."""
    schema = config_schema()

    assert schema_errors(schema, yaml.safe_load(path.read_text()), schema) == 0


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"fault_type": "latency"}, id="latency-without-duration"),
        pytest.param({"fault_type": "error", "error_code": 302}, id="error-code-302"),
        pytest.param({"fault_type": "timeout", "probabilty": 1}, id="unknown-key"),
        pytest.param({"fault_type": "latncy"}, id="bad-fault-type"),
    ],
)
def test_schema_rejects_what_the_loader_rejects(fault: dict[str, Any]) -> None:
    """Editors using the schema flag the same per-fault mistakes as the loader."""
    schema = config_schema()
    document = {
        "version": 1,
        "upstream": "http://127.0.0.1:9000",
        "routes": [{"name": "a", "faults": [fault]}],
    }

    assert schema_errors(schema, document, schema) > 0


def test_nested_aliases_are_walked_once() -> None:
    """A file of aliases of aliases loads without walking every expanded path."""
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 8)]

    document = load_marked("\n".join(levels) + "\n")

    # Ten million paths if expanded; one line each for the keys and items written.
    assert document is not None
    assert len(document.lines) < 100
    # An aliased list item stands for its anchor: l6, defined on line 7.
    assert document.line_of(("l7", 3, 2, 1)) == 7


def test_bad_admin_token_value_is_never_echoed() -> None:
    """A token of the wrong type is reported without showing its value."""
    text = 'version: 1\nupstream: "http://127.0.0.1:9000"\nadmin_token: 918273645\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "p.yaml")
    message = str(caught.value)
    assert message.startswith("p.yaml:3: admin_token: expected a string")
    assert "918273645" not in message
