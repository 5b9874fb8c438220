"""Every code block in README.md and docs/*.md is run or validated.

What each kind of block gets (see tests/docblocks.py for the extraction):

    python   a file whose first line is "# test_*.py" is run with pytest; any other
             block is run as a script, and each print() whose line ends in a comment
             must print what the comment starts with
    bash     each command is checked: chaosproxy commands are parsed, and validate,
             schema and run are really run; curl commands are run against a live
             demo stack; files, modules and extras they name must exist
    yaml     proxy configurations must validate; other YAML (compose, Kubernetes
             excerpts) must be an excerpt of a file in examples/
    json     the admin API error sample must be what the API really answers
    toml     pytest options must be the plugin's, naming files that exist
    text     sample output must have the shape the program really prints

Blocks that talk to 127.0.0.1:8080 (proxy), 8081 (admin) or 9000 (upstream) run
against a real demo stack (the shop and ``chaosproxy run -c configs/demo.yaml``) on
free ports, with those addresses rewritten; the stack's faults are reset after each.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaosproxy.config import parse_config
from chaosproxy.demo import COLUMNS
from tests.aumai_chaos.test_quickstart import QUICKSTART
from tests.docblocks import (
    DOCUMENTS,
    ROOT,
    Block,
    DemoStack,
    check_command,
    contains,
    expected_prints,
    extract_blocks,
    shell_commands,
    start_demo_stack,
)

BLOCKS = [block for document in DOCUMENTS for block in extract_blocks(document)]
LANGUAGES = {"python", "bash", "yaml", "json", "toml", "text"}


def blocks(*languages: str) -> list[Any]:
    """The blocks in ``languages``, as parameters named file:line."""
    return [
        pytest.param(block, id=block.name)
        for block in BLOCKS
        if block.language in languages
    ]


@pytest.fixture(scope="module")
def stack() -> Iterator[DemoStack]:
    """The demo shop and a chaosproxy in front of it, as separate processes."""
    with start_demo_stack() as running:
        yield running


@pytest.fixture
def live(stack: DemoStack) -> Iterator[DemoStack]:
    """The stack, with every run-time fault and experiment reset afterwards."""
    yield stack
    stack.reset()


# The documents as a whole.


def test_every_block_has_a_language_this_test_knows() -> None:
    """No block escapes checking by having no language or an unknown one."""
    assert BLOCKS
    unknown = [b.name for b in BLOCKS if b.language not in LANGUAGES]
    assert unknown == []


def test_readme_gives_the_two_setup_commands_exactly() -> None:
    """The two commands a newcomer types are there, word for word, as bash."""
    commands = [c for b in BLOCKS if b.language == "bash" for c in b.text.splitlines()]
    assert "pip install . && chaosproxy demo" in commands
    assert "pip install '.[test]' && pytest" in commands


def test_readme_library_quick_start_is_the_tested_one() -> None:
    """The README's library example is the quick start its own test pins."""
    assert f"```python\n{QUICKSTART}```" in (ROOT / "README.md").read_text("utf-8")


@pytest.mark.parametrize(
    "document", DOCUMENTS, ids=[str(d.relative_to(ROOT)) for d in DOCUMENTS]
)
def test_relative_links_point_at_files_that_exist(document: Path) -> None:
    """Every relative link in the documents leads somewhere."""
    text = document.read_text("utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (document.parent / target).exists(), f"{document.name}: {target}"


# Blocks by language.


@pytest.mark.parametrize("block", blocks("python"))
def test_python_block_runs(block: Block, live: DemoStack, tmp_path: Path) -> None:
    """Python blocks run: test files under pytest, the rest as scripts."""
    code = live.rewrite(block.text)
    first_line = code.splitlines()[0]
    if re.fullmatch(r"# (test_\w+\.py)", first_line):
        result = _run_as_pytest_file(first_line[2:], code, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        return

    script = tmp_path / "example.py"
    script.write_text(code, "utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    expected = expected_prints(block.text)
    assert len(printed) == len(expected), result.stdout
    for line, comment in zip(printed, expected, strict=True):
        if comment is not None:
            assert comment.startswith(line), f"printed {line!r}, says {comment!r}"


def _run_as_pytest_file(
    name: str, code: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as the test file ``name`` in a project of its own."""
    (tmp_path / name).write_text(code, "utf-8")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n", "utf-8"
    )
    # Examples name configs/ relative to the rootdir, as in this repository.
    (tmp_path / "configs").symlink_to(ROOT / "configs")

    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("block", blocks("bash"))
def test_shell_block_commands_exist_and_work(block: Block, live: DemoStack) -> None:
    """Each command is one a reader can type: checked, and run where it can be."""
    commands = shell_commands(block.text)
    assert commands
    for words in commands:
        check_command([live.rewrite(word) for word in words], live)


@pytest.mark.parametrize("block", blocks("yaml"))
def test_yaml_block_is_a_valid_config_or_an_excerpt_of_an_example(
    block: Block,
) -> None:
    """Configurations validate; other YAML is found as written in examples/."""
    data = yaml.safe_load(block.text)
    if isinstance(data, dict) and "version" in data:
        parse_config(block.text, source=block.name)
        return

    examples = [
        document
        for path in sorted((ROOT / "examples").rglob("*.y*ml"))
        for document in yaml.safe_load_all(path.read_text("utf-8"))
    ]
    assert any(contains(example, data) for example in examples), block.text


@pytest.mark.parametrize("block", blocks("json"))
def test_json_block_is_what_the_admin_api_answers(
    block: Block, live: DemoStack
) -> None:
    """The documented refusal is the real answer to the documented request."""
    documented = json.loads(block.text)
    request = urllib.request.Request(
        f"{live.admin_url}/routes/payments/faults",
        data=b'[{"fault_type": "latency"}]',
        method="PUT",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    with caught.value as answer:
        assert answer.code == 422
        assert json.loads(answer.read()) == documented


@pytest.mark.parametrize("block", blocks("toml"))
def test_toml_block_sets_only_the_plugins_options(block: Block) -> None:
    """pytest settings in the docs are options the plugin declares, with real files."""
    options = tomllib.loads(block.text)["tool"]["pytest"]["ini_options"]
    assert set(options) <= {"chaosproxy_upstream", "chaosproxy_config"}
    if "chaosproxy_config" in options:
        assert (ROOT / options["chaosproxy_config"]).is_file()


PROBLEM = re.compile(r"[\w./-]+\.yaml:\d+: [\w\[\].]+: .+")


@pytest.mark.parametrize("block", blocks("text"))
def test_text_block_has_the_shape_of_real_output(block: Block) -> None:
    """Sample output is the demo's table or validate's problem lines."""
    lines = block.text.splitlines()
    if lines[0].startswith("Per-route summary"):
        assert re.split(r"\s{2,}", lines[1].strip()) == list(COLUMNS)
        assert lines[-2].startswith("What the clients saw:")
        return

    assert all(PROBLEM.fullmatch(line) for line in lines), block.text


def test_documented_config_problems_are_what_validate_prints(tmp_path: Path) -> None:
    """The problem lines shown in docs/configuration.md come from the real loader."""
    bad = tmp_path / "proxy.yaml"
    bad.write_text(
        "version: 1\nupstream: http://127.0.0.1:9000\nroutes:\n"
        "  - name: pay\n    component: payments\n"
        "faults:\n  - fault_type: error\n    error_code: 503\n"
        "    affected_components: [payment]\n",
        "utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "chaosproxy", "validate", "proxy.yaml"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
    )
    documented = (ROOT / "docs" / "configuration.md").read_text("utf-8")

    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.replace("proxy.yaml:9:", "proxy.yaml:31:") in documented
