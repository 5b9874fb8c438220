"""The Dockerfile, the docker-compose example and the Kubernetes example.

No container engine runs here, so these files are never built or started. What can
be checked without one is checked: each file parses; every file, command and flag it
names exists; the ports, addresses and paths that must agree across files do agree;
every configuration in them validates; and the commands the containers would run
are run here on loopback, with only their ports changed.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from chaosproxy.cli import build_parser
from chaosproxy.config import ProxyConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """Split a Dockerfile into (INSTRUCTION, arguments), continuations joined.

    As Docker does: a backslash at the end of a line joins the next one, and comment
    lines are dropped, also inside a continued instruction.
    """
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        whole, pending = (pending + line).strip(), ""
        if whole:
            keyword, _, arguments = whole.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))

    return instructions


def command_words(arguments: str) -> list[str]:
    """Read a CMD/ENTRYPOINT argument: JSON (exec form) or a shell line."""
    if arguments.startswith("["):
        words = json.loads(arguments)
        assert isinstance(words, list)
        return [str(word) for word in words]

    return shlex.split(arguments)


def flag_value(words: list[str], flag: str) -> str:
    """The word after ``flag`` in a command line."""
    return words[words.index(flag) + 1]


def port_of(address: str) -> int:
    """The port of ``host:port``."""
    return int(address.rpartition(":")[2])


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[str]]:
    """The Dockerfile's instructions, by keyword, in order."""
    found: dict[str, list[str]] = {}
    for keyword, arguments in parse_dockerfile((ROOT / "Dockerfile").read_text()):
        found.setdefault(keyword, []).append(arguments)
    return found


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """examples/docker-compose.yml, parsed."""
    data = yaml.safe_load((EXAMPLES / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def kubernetes() -> dict[str, dict[str, Any]]:
    """Every object under examples/kubernetes/, by kind."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted((EXAMPLES / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            objects[document["kind"]] = document
    return objects


def healthcheck_url(dockerfile: dict[str, list[str]]) -> str:
    """The URL the image's healthcheck asks, from its ENV default."""
    (env,) = dockerfile["ENV"]
    return dict(shlex.split(word)[0].split("=", 1) for word in env.split())[
        "CHAOSPROXY_HEALTHZ"
    ]


# The Dockerfile.


def test_image_is_a_slim_python_that_runs_as_a_numeric_non_root_user(
    dockerfile: dict[str, list[str]],
) -> None:
    """A slim Python base, and a USER that is neither root nor a name."""
    (base,) = dockerfile["FROM"]
    assert base.startswith("python:")
    assert base.endswith("-slim")
    (user,) = dockerfile["USER"]
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0


def test_image_copies_only_files_that_exist(dockerfile: dict[str, list[str]]) -> None:
    """Every COPY source is in the repository, README.md (the build needs it) too."""
    sources = [s for copy in dockerfile["COPY"] for s in copy.split()[:-1]]
    assert "README.md" in sources
    for source in sources:
        assert (ROOT / source).exists(), source


def test_image_command_is_a_valid_chaosproxy_run(
    dockerfile: dict[str, list[str]],
) -> None:
    """ENTRYPOINT + CMD is a run command line chaosproxy accepts, with --watch."""
    (entrypoint,) = dockerfile["ENTRYPOINT"]
    (cmd,) = dockerfile["CMD"]
    assert command_words(entrypoint) == ["chaosproxy"]
    args = build_parser().parse_args(command_words(cmd))
    assert (args.command, args.config, args.watch) == (
        "run",
        "/etc/chaosproxy/proxy.yaml",
        True,
    )


def test_image_healthcheck_asks_the_admin_api_healthz_and_fails_otherwise(
    dockerfile: dict[str, list[str]],
) -> None:
    """The healthcheck's command exits 0 on a 200 from /healthz, non-zero on refusal."""
    (check,) = dockerfile["HEALTHCHECK"]
    words = shlex.split(check.partition(" CMD ")[2])
    url = healthcheck_url(dockerfile)
    assert words[:2] == ["python", "-c"]
    assert urlsplit(url).path == "/healthz"
    assert str(port_of(urlsplit(url).netloc)) in dockerfile["EXPOSE"][0].split()

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{unused.getsockname()[1]}/healthz"
        failed = subprocess.run(
            [sys.executable, "-c", words[2]],
            env={"CHAOSPROXY_HEALTHZ": dead},
            capture_output=True,
            timeout=30,
        )
    assert failed.returncode != 0


# docker-compose.


def test_compose_proxy_mounts_an_existing_valid_config_where_its_command_reads(
    compose: dict[str, Any],
) -> None:
    """The mounted file exists, validates, and is the file ``run -c`` names."""
    proxy = compose["services"]["chaosproxy"]
    (volume,) = proxy["volumes"]
    source, target, mode = volume.split(":")
    args = build_parser().parse_args(proxy["command"])

    assert mode == "ro"
    assert args.config == target
    assert args.watch
    load_config(EXAMPLES / source)


def test_compose_ports_and_addresses_agree_with_the_config(
    compose: dict[str, Any], dockerfile: dict[str, list[str]]
) -> None:
    """Published ports are the config's listen and admin; its upstream is the shop."""
    services = compose["services"]
    shop, proxy, client = services["shop"], services["chaosproxy"], services["client"]
    config = load_config(EXAMPLES / proxy["volumes"][0].split(":")[0])
    published = {int(mapping.rsplit(":", 1)[1]) for mapping in shop["ports"]}

    assert proxy["network_mode"] == "service:shop"
    assert config.admin is not None
    assert published == {port_of(config.listen), port_of(config.admin)}
    assert config.listen.startswith("0.0.0.0:")
    assert config.admin_token  # non-loopback admin needs one
    assert config.upstream == "http://" + flag_value(shop["command"], "--listen")
    assert port_of(config.admin) == port_of(
        urlsplit(healthcheck_url(dockerfile)).netloc
    )
    assert f"http://shop:{port_of(config.listen)}/" in client["command"][0]
    assert client["depends_on"]["chaosproxy"]["condition"] == "service_healthy"


def test_compose_builds_from_the_repository_dockerfile(compose: dict[str, Any]) -> None:
    """The shop's build context is the repository root, where the Dockerfile is."""
    context = (EXAMPLES / compose["services"]["shop"]["build"]).resolve()
    assert context == ROOT
    assert compose["services"]["shop"]["entrypoint"][-1] == "chaosproxy.demo_upstream"


# Kubernetes.


def _containers(kubernetes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Deployment's containers, by name."""
    spec = kubernetes["Deployment"]["spec"]["template"]["spec"]
    return {container["name"]: container for container in spec["containers"]}


def _configmap_config(kubernetes: dict[str, dict[str, Any]]) -> ProxyConfig:
    """The proxy configuration held in the ConfigMap, validated."""
    text = kubernetes["ConfigMap"]["data"]["proxy.yaml"]
    return parse_config(text, source="configmap.yaml:proxy.yaml")


def test_kubernetes_sidecar_reads_the_configmap_it_mounts(
    kubernetes: dict[str, dict[str, Any]],
) -> None:
    """The ConfigMap validates and is mounted, as a directory, where -c points."""
    _configmap_config(kubernetes)
    pod = kubernetes["Deployment"]["spec"]["template"]["spec"]
    sidecar = _containers(kubernetes)["chaosproxy"]
    (mount,) = sidecar["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    args = build_parser().parse_args(sidecar["args"])

    assert volume["configMap"]["name"] == kubernetes["ConfigMap"]["metadata"]["name"]
    assert "subPath" not in mount  # a subPath mount never sees ConfigMap updates
    assert args.config == f"{mount['mountPath']}/proxy.yaml"
    assert args.watch


def test_kubernetes_ports_probes_and_service_agree_with_the_config(
    kubernetes: dict[str, dict[str, Any]],
) -> None:
    """containerPort is listen, probes ask admin's /healthz, the Service targets it."""
    config = _configmap_config(kubernetes)
    containers = _containers(kubernetes)
    sidecar, app = containers["chaosproxy"], containers["shop"]
    (port,) = sidecar["ports"]
    (service_port,) = kubernetes["Service"]["spec"]["ports"]
    labels = kubernetes["Deployment"]["spec"]["template"]["metadata"]["labels"]

    assert port["containerPort"] == port_of(config.listen)
    assert service_port["targetPort"] == port["name"]
    assert kubernetes["Service"]["spec"]["selector"].items() <= labels.items()
    assert config.upstream == "http://" + flag_value(app["args"], "--listen")
    assert config.admin == "127.0.0.1:8081"
    for probe in ("readinessProbe", "livenessProbe"):
        code = sidecar[probe]["exec"]["command"][-1]
        assert f"'http://{config.admin}/healthz'" in code
        compile(code, probe, "exec")


def test_kubernetes_pod_runs_as_the_images_user(
    kubernetes: dict[str, dict[str, Any]], dockerfile: dict[str, list[str]]
) -> None:
    """runAsUser is the Dockerfile's numeric USER, so runAsNonRoot holds."""
    security = kubernetes["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    (user,) = dockerfile["USER"]
    assert security["runAsNonRoot"] is True
    assert str(security["runAsUser"]) == user.split(":")[0]


# The containers' commands, run here.


def _free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def compose_stack_on_loopback(compose: dict[str, Any]) -> Iterator[str]:
    """Run the compose services' commands as processes, on free loopback ports."""
    services = compose["services"]
    shop_address = f"127.0.0.1:{_free_port()}"
    shop_argv = [sys.executable, "-m", services["shop"]["entrypoint"][-1]]
    shop_argv += [*services["shop"]["command"][:-1], shop_address]
    proxy_address = f"127.0.0.1:{_free_port()}"
    proxy_args = [*services["chaosproxy"]["command"]]
    proxy_args[proxy_args.index("-c") + 1] = str(
        EXAMPLES / services["chaosproxy"]["volumes"][0].split(":")[0]
    )
    proxy_argv = [sys.executable, "-m", "chaosproxy", *proxy_args]
    proxy_argv += ["--listen", proxy_address, "--upstream", f"http://{shop_address}"]
    proxy_argv += ["--admin", f"127.0.0.1:{_free_port()}"]
    processes = [
        subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for argv in (shop_argv, proxy_argv)
    ]
    try:
        yield f"http://{proxy_address}"
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)


def test_compose_commands_serve_the_shop_through_the_proxy(
    compose_stack_on_loopback: str,
) -> None:
    """The shop's and the proxy's container commands work together as composed."""
    url = f"{compose_stack_on_loopback}/orders/42"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                order = json.loads(reply.read())
                break
        except OSError:
            # Not up yet, or an injected 503 (urllib's HTTPError is an OSError).
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

    assert order["id"] == 42
