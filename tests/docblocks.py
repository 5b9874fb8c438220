"""Helpers for tests/test_readme.py: find code blocks, read commands, check them.

A block is a fenced code block (three backticks and a language). Shell blocks are
read as a reader would type them: comments dropped, backslash continuations
joined, ``&&`` chains split, a trailing ``&`` or ``> file`` ignored.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from chaosproxy.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
# The image tag the documents build and run.
_IMAGE = "aumai-chaos:0.1.0"


@dataclass(frozen=True)
class Block:
    """One fenced code block of a document."""

    document: Path
    line: int
    language: str
    text: str

    @property
    def name(self) -> str:
        """``file:line``, for test ids and messages."""
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def extract_blocks(document: Path) -> list[Block]:
    """Return the fenced code blocks of ``document``, in order."""
    text = document.read_text("utf-8")
    return [
        Block(document, text.count("\n", 0, match.start()) + 1, match[1], match[2])
        for match in _FENCE.finditer(text)
    ]


def shell_commands(text: str) -> list[list[str]]:
    """Split a shell block into commands, each a list of words."""
    joined = re.sub(r"\\\n\s*", " ", text)
    commands: list[list[str]] = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        while words:
            if "&&" in words:
                cut = words.index("&&")
                part, words = words[:cut], words[cut + 1 :]
            else:
                part, words = words, []
            if ">" in part:
                part = part[: part.index(">")]
            if part and part[-1] == "&":
                part = part[:-1]
            commands.append(part)

    return commands


def expected_prints(code: str) -> list[str | None]:
    """For each print() line of ``code``, its trailing comment (or None)."""
    found: list[str | None] = []
    for line in code.splitlines():
        if re.match(r"\s*print\(", line):
            _, hash_mark, comment = line.partition("  # ")
            found.append(comment.strip() if hash_mark else None)

    return found


def contains(whole: object, part: object) -> bool:
    """Whether ``part`` appears in ``whole`` as written, at any depth."""
    if _matches(part, whole):
        return True
    children = (
        whole.values()
        if isinstance(whole, dict)
        else whole
        if isinstance(whole, list)
        else ()
    )
    return any(contains(child, part) for child in children)


def _matches(part: object, whole: object) -> bool:
    """Whether ``part`` is ``whole`` with some keys or list items left out."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            key in whole and _matches(value, whole[key]) for key, value in part.items()
        )
    if isinstance(part, list):
        return isinstance(whole, list) and all(
            any(_matches(item, candidate) for candidate in whole) for item in part
        )
    return part == whole


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DemoStack:
    """The demo shop and a ``chaosproxy run`` in front of it, on free ports."""

    proxy: str
    admin: str
    shop: str

    @property
    def admin_url(self) -> str:
        """The admin API's base URL."""
        return f"http://{self.admin}"

    def rewrite(self, text: str) -> str:
        """Point the documents' fixed addresses at this stack."""
        for fixed, real in (
            ("127.0.0.1:8080", self.proxy),
            ("127.0.0.1:8081", self.admin),
            ("127.0.0.1:9000", self.shop),
        ):
            text = text.replace(fixed, real)
        return text

    def reset(self) -> None:
        """Put the configuration's faults back and abort experiments."""
        request = urllib.request.Request(f"{self.admin_url}/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


@contextlib.contextmanager
def start_demo_stack() -> Iterator[DemoStack]:
    """Run the shop and ``chaosproxy run -c configs/demo.yaml`` until the end."""
    stack = DemoStack(*(f"127.0.0.1:{free_port()}" for _ in range(3)))
    shop = [sys.executable, "-m", "chaosproxy.demo_upstream", "--listen", stack.shop]
    proxy = [sys.executable, "-m", "chaosproxy", "run", "-c", "configs/demo.yaml"]
    proxy += ["--listen", stack.proxy, "--admin", stack.admin]
    proxy += ["--upstream", f"http://{stack.shop}", "--no-access-log"]
    processes = [
        subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for argv in (shop, proxy)
    ]
    try:
        _wait_until_up(f"{stack.admin_url}/healthz")
        yield stack
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)


def _wait_until_up(url: str, timeout: float = 20) -> None:
    """Poll ``url`` until it answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# Commands.


def check_command(words: list[str], stack: DemoStack) -> None:
    """Check one command of a shell block; run it where that is possible here."""
    program, args = words[0], words[1:]
    checks = {
        "chaosproxy": _check_chaosproxy,
        "curl": _check_curl,
        "pip": _check_pip,
        "python": _check_python,
        "docker": _check_docker,
        "kubectl": _check_kubectl,
    }
    if program == "pytest":
        return  # this very suite
    if program == "scripts/check":
        assert (ROOT / program).is_file()
        return
    assert program in checks, f"no check for the command {shlex.join(words)!r}"
    checks[program](args, stack)


def _check_chaosproxy(args: list[str], stack: DemoStack) -> None:
    """Parse the command line; run validate, schema and (briefly) run."""
    parsed = build_parser().parse_args(args)
    argv = [sys.executable, "-m", "chaosproxy", *args]
    if parsed.command == "validate":
        result = subprocess.run(
            argv, capture_output=True, text=True, cwd=ROOT, timeout=30
        )
        assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    elif parsed.command == "schema":
        result = subprocess.run(
            argv, capture_output=True, text=True, cwd=ROOT, timeout=30
        )
        assert json.loads(result.stdout)["title"] == "chaosproxy configuration"
    elif parsed.command == "run":
        _run_briefly([*argv, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
    else:
        # The demo takes ten seconds; tests/chaosproxy/test_demo.py runs it.
        assert parsed.command == "demo"


def _run_briefly(argv: list[str]) -> None:
    """Start ``chaosproxy run``, wait for its ready line, stop it with SIGTERM."""
    process = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    try:
        line = ""
        while "ready" not in line:
            line = process.stderr.readline()
            assert line, f"{shlex.join(argv)} ended before it was ready"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


def _check_curl(args: list[str], stack: DemoStack) -> None:
    """Run curl against the demo stack; admin calls must succeed (2xx)."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    urls = [word for word in args if word.startswith("http")]
    assert urls, f"curl without a URL: {args}"
    hosts = {urlsplit(url).netloc for url in urls}
    assert hosts <= {stack.proxy, stack.admin}, f"not the documented addresses: {urls}"
    fail_on_error = ["--fail"] if stack.admin in hosts else []
    result = subprocess.run(
        [curl, *fail_on_error, "--max-time", "10", *args],
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def _check_pip(args: list[str], stack: DemoStack) -> None:
    """pip installs this checkout, with extras that pyproject.toml declares."""
    assert args[0] == "install"
    targets = [word for word in args[1:] if not word.startswith("-")]
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    extras = set(declared["project"]["optional-dependencies"])
    for target in targets:
        match = re.fullmatch(r"\.(?:\[(\w+)\])?", target)
        assert match is not None, (
            f"installs something other than this checkout: {target}"
        )
        assert match[1] is None or match[1] in extras


def _check_python(args: list[str], stack: DemoStack) -> None:
    """``python -m MODULE``: the module exists."""
    assert args[0] == "-m"
    assert importlib.util.find_spec(args[1]) is not None, args[1]


def _check_docker(args: list[str], stack: DemoStack) -> None:
    """Docker commands name the repository's files and the image they build."""
    if args[0] == "build":
        assert flag_after(args, "-t") == _IMAGE
        assert (ROOT / args[-1] / "Dockerfile").is_file()
    elif args[0] == "compose":
        compose_file = ROOT / flag_after(args, "-f")
        assert "services" in yaml.safe_load(compose_file.read_text("utf-8"))
    else:
        assert args[0] == "run"
        assert args[-1] == _IMAGE
        source = flag_after(args, "-v").split(":")[0].replace("$PWD", str(ROOT))
        assert Path(source).is_file()


def _check_kubectl(args: list[str], stack: DemoStack) -> None:
    """kubectl commands name the example's files and objects."""
    if args[0] == "apply":
        assert (ROOT / flag_after(args, "-f")).exists()
        return
    assert args[0] == "port-forward"
    kind, _, name = args[1].partition("/")
    deployment = yaml.safe_load(
        (ROOT / "examples" / "kubernetes" / "deployment.yaml").read_text("utf-8")
    )
    assert (kind, name) == ("deployment", deployment["metadata"]["name"])


def flag_after(args: list[str], flag: str) -> str:
    """The word after ``flag``."""
    return args[args.index(flag) + 1]
