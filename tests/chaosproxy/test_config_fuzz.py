"""The config loader under generated input raises ConfigError and nothing else."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaosproxy.config import ConfigError, ProxyConfig, parse_config

FIELD_NAMES = [
    "version", "listen", "upstream", "admin", "admin_token", "seed",
    "upstream_timeout_ms", "observations_window", "routes", "faults", "name",
    "match", "path", "path_regex", "methods", "headers", "component",
    "fault_type", "probability", "duration_ms", "error_code", "error_message",
    "affected_components", "limits", "max_request_line_bytes",
    "max_header_line_bytes", "max_headers", "header_read_timeout_ms",
    "keepalive_timeout_ms", "bogus",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        ["latency", "error", "timeout", "1", "http://127.0.0.1:9000", "/**",
         "127.0.0.1:8080", "[::1]:1", "(", "GET", "default"]
    ),
)  # fmt: skip

documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8)),
            children,
            max_size=6,
        ),
    ),
    max_leaves=25,
)

fault_docs = st.fixed_dictionaries(
    {"fault_type": st.sampled_from(
        ["latency", "error", "timeout", "partial_failure", "resource_exhaustion",
         "data_corruption", "nope"])},
    optional={
        "probability": scalars,
        "duration_ms": scalars,
        "error_code": scalars,
        "error_message": scalars,
        "affected_components": st.lists(st.text(max_size=5), max_size=3),
    },
)  # fmt: skip

config_docs = st.fixed_dictionaries(
    {"version": st.sampled_from([1, 2, "1", True]), "upstream": scalars},
    optional={
        "listen": scalars,
        "routes": st.lists(
            st.fixed_dictionaries(
                {"name": st.text(max_size=6)},
                optional={
                    "faults": st.lists(fault_docs, max_size=3),
                    "component": scalars,
                    "match": st.dictionaries(
                        st.sampled_from(["path", "path_regex", "methods", "x"]),
                        scalars,
                    ),
                },
            ),
            max_size=3,
        ),
        "faults": st.lists(fault_docs, max_size=3),
        "seed": scalars,
        "limits": st.one_of(
            scalars,
            st.dictionaries(
                st.sampled_from(
                    ["max_request_line_bytes", "max_header_line_bytes", "max_headers",
                     "header_read_timeout_ms", "keepalive_timeout_ms", "x"]
                ),
                scalars,
            ),
        ),
    },
)  # fmt: skip


def _load(text: str) -> ProxyConfig | None:
    """Parse ``text``; a ConfigError with at least one problem is the only failure."""
    try:
        return parse_config(text, "fuzz.yaml")
    except ConfigError as exc:
        problems = exc.problems
    assert problems
    assert all(str(p).startswith("fuzz.yaml") for p in problems)
    return None


@settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(documents)
def test_arbitrary_yaml_documents_raise_only_config_error(doc: Any) -> None:
    """Any YAML document (nested lists, maps, odd scalars) loads or is a ConfigError."""
    _load(yaml.safe_dump(doc))


@settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(config_docs)
def test_config_shaped_documents_raise_only_config_error(doc: Any) -> None:
    """Config-shaped documents with wrong values anywhere load or fail cleanly."""
    config = _load(yaml.safe_dump(doc))
    if config is not None:
        assert config.version == 1


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_config_error(text: str) -> None:
    """Any text at all, YAML or not, loads or is a ConfigError."""
    _load(text)
