"""The docker-compose demo's files, checked without a Docker engine.

What can be checked from the files is: the compose file against the Compose Specification's
schema; its settings and the image's against `Settings`; the Dockerfile's install steps against
the README's set-up command and the Makefile (one recipe, one torch pin); the health probe
against the app's routes and the port; the user the image runs as; and every path the files
name. That the images build and the services answer inside them is `make compose-check`
(deploy/compose_check.py, on a real engine: too slow for every run, so `RUN_COMPOSE_CHECK=1`);
what it changes for a machine without a registry is checked here.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import re
import shlex
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from jsonschema import Draft201909Validator

from agent_server.http.app import create_app
from agent_server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "agent"
ROOT_USERS = {"root", "0"}


# --- Reading the files ----------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def service() -> dict[str, Any]:
    return compose()["services"][SERVICE]


def dockerfile() -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO((ROOT / "Dockerfile").read_bytes()))


def instructions() -> list[tuple[str, str]]:
    return [(i["instruction"], i["value"]) for i in dockerfile().structure if i["instruction"]]


def run_commands(value: str) -> list[list[str]]:
    """A RUN line's simple commands (split at &&, || and ;), without BuildKit's --options."""
    words = shlex.split(value)
    while words and words[0].startswith("--"):
        words.pop(0)
    commands: list[list[str]] = [[]]
    for word in words:
        if word in {"&&", "||", ";"}:
            commands.append([])
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def make_targets(value: str) -> list[str]:
    return [
        word
        for command in run_commands(value)
        if command[0] == "make"
        for word in command[1:]
        if not word.startswith("-") and "=" not in word
    ]


def interpolated(value: object) -> str:
    """A compose value as Compose would pass it when the shell sets none of its variables."""
    text = str(value)
    resolved = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m[2], text)
    assert "$" not in resolved, f"{text!r}: only ${{NAME:-default}} is understood here"
    return resolved


def deployed_environment() -> dict[str, str]:
    """The AGENT_* variables the container runs with: the image's, then the compose file's."""
    image = {k: v for k, v in dockerfile().envs.items() if k.startswith("AGENT_")}
    given = {k: interpolated(v) for k, v in service()["environment"].items()}
    return image | given


def deployed_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [n for n in os.environ if n.startswith("AGENT_")]:
        monkeypatch.delenv(name)
    for name, value in deployed_environment().items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def mounts() -> list[dict[str, Any]]:
    return service()["volumes"]


@dataclass
class Rule:
    prerequisites: list[str]
    recipe: list[str] = field(default_factory=list)


def compose_check() -> ModuleType:
    """deploy/compose_check.py (the standard library's only), as a module."""
    spec = importlib.util.spec_from_file_location("compose_check", ROOT / "deploy/compose_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def makefile() -> dict[str, Rule]:
    """The Makefile's rules with $(VARIABLES) expanded; enough make for this Makefile."""
    variables: dict[str, str] = {}

    def expand(text: str) -> str:
        # As in make, a variable the Makefile leaves unset comes from the environment.
        return re.sub(
            r"\$\((\w+)\)",
            lambda m: variables[m[1]] if m[1] in variables else os.environ[m[1]],
            text,
        )

    rules: dict[str, Rule] = {}
    current: Rule | None = None
    for line in logical_lines((ROOT / "Makefile").read_text()):
        if line.startswith("\t"):
            assert current is not None, f"a recipe line outside a rule: {line!r}"
            current.recipe.append(expand(line.strip()))
            continue
        current = None
        if not line.strip() or line.startswith("#"):
            continue
        if assignment := re.match(r"(?:export\s+)?(\w+)\s*[:?]?=\s*(.*)$", line):
            variables[assignment[1]] = expand(assignment[2].strip())
        elif rule := re.match(r"([^:=]+?)\s*:(?!=)\s*(.*)$", line):
            current = Rule(expand(rule[2]).split())
            for target in expand(rule[1]).split():
                rules[target] = current
    return rules


def logical_lines(text: str) -> Iterator[str]:
    """Lines as make reads them outside recipes: a trailing backslash joins the next line
    (a variable set over several lines). Recipe lines stay as they are, one command line each."""
    pending = ""
    for line in text.splitlines():
        if pending:
            pending += " " + line.strip()
        elif line.startswith("\t"):
            yield line
            continue
        else:
            pending = line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        yield pending
        pending = ""


def run_by(rules: dict[str, Rule], targets: list[str]) -> set[str]:
    """Every rule `make TARGETS` runs: the targets and, transitively, their prerequisites."""
    done: set[str] = set()
    pending = list(targets)
    while pending:
        target = pending.pop()
        if target in rules and target not in done:
            done.add(target)
            pending.extend(rules[target].prerequisites)
    return done


def readme_setup_commands() -> list[str]:
    """The commands of the README's "Set-up" section, comments stripped."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Set-up.*?$(.*?)^## ", text, re.M | re.S)
    assert section, "the README has no '## Set-up' section"
    block = re.search(r"```bash\n(.*?)```", section[1], re.S)
    assert block, "the README's set-up section has no bash block"
    return [c for line in block[1].splitlines() if (c := line.split("#")[0].strip())]


def healthcheck_command() -> list[str]:
    """The Dockerfile HEALTHCHECK's command, in exec form."""
    (value,) = [v for i, v in instructions() if i == "HEALTHCHECK"]
    _, command = re.split(r"\bCMD\s+", value, maxsplit=1)
    return json.loads(command)


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _glob(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def in_build_context(path: str) -> bool:
    """Docker's rule: the last pattern that matches the path, or a folder above it, decides."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for pattern in dockerignore():
        negated = pattern.startswith("!")
        matcher = _glob(pattern.removeprefix("!").strip("/"))
        if any(matcher.fullmatch(p) for p in prefixes):
            excluded = not negated
    return not excluded


def copies() -> list[tuple[list[str], str]]:
    """Each COPY's sources and destination."""
    found = []
    for instruction, value in instructions():
        if instruction == "COPY":
            *sources, destination = [w for w in shlex.split(value) if not w.startswith("--")]
            found.append((sources, destination))
    return found


# --- The compose file is valid Compose ------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests/data/compose-spec.json").read_text())
    # Its $schema is written "http://json-schema.org/draft/2019-09/schema#", a spelling that
    # jsonschema's `validator_for` does not recognise (it warns and takes the latest draft).
    assert "/draft/2019-09/" in schema["$schema"]
    Draft201909Validator.check_schema(schema)
    validator = Draft201909Validator(schema)
    document = compose()
    assert [e.message for e in validator.iter_errors(document)] == []
    # The schema is strict (no unknown keys), so passing it means something.
    misspelt = copy.deepcopy(document)
    misspelt["services"][SERVICE]["healthchek"] = misspelt["services"][SERVICE].pop("healthcheck")
    assert not validator.is_valid(misspelt)


# --- The settings: real, valid, and consistent with the mounts ------------------------------------


def test_every_agent_variable_is_a_setting_and_takes_effect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment = deployed_environment()
    assert environment, "neither file sets any AGENT_* variable"
    unknown = [
        n for n in environment if n.removeprefix("AGENT_").lower() not in Settings.model_fields
    ]
    assert unknown == [], f"not settings: {unknown}"
    settings = deployed_settings(monkeypatch)  # raises if a value does not validate
    for name, value in environment.items():
        assert str(getattr(settings, name.removeprefix("AGENT_").lower())) == value, name


def test_the_compose_files_default_model_is_the_one_the_image_prepares() -> None:
    # The image converts the service's default model at build time (`make model`); a compose file
    # defaulting to another would convert at every new container, or fail for want of packages.
    model = interpolated(service()["environment"]["AGENT_MODEL"])
    assert model == Settings.model_fields["model"].default


def test_data_lives_on_the_volume_and_the_model_in_the_image(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = deployed_settings(monkeypatch)
    volumes = [m for m in mounts() if m["type"] == "volume"]
    assert [m["target"] for m in volumes] == [str(settings.data_dir)]
    assert volumes[0]["source"] in compose()["volumes"]
    assert settings.documents is not None
    assert settings.documents.is_relative_to(settings.data_dir)
    # A new volume is seeded from the image's folder: the demo documents must be copied there.
    assert (["tests/data/documents"], str(settings.documents)) in copies()
    # The converted model stays in the image, where a rebuilt image's model is not hidden.
    assert not settings.cache_dir.is_relative_to(settings.data_dir)
    # The document index is data too: a new container reloads it instead of re-embedding.
    assert settings.tool_options().index_dir.is_relative_to(settings.data_dir)


def test_the_search_corpus_is_mounted_read_only_from_the_repository(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = deployed_settings(monkeypatch)
    assert settings.search_backend == "local" and settings.search_corpus is not None
    (mount,) = [m for m in mounts() if settings.search_corpus.is_relative_to(m["target"])]
    assert mount["type"] == "bind" and mount["read_only"] is True
    on_host = ROOT / mount["source"] / settings.search_corpus.relative_to(mount["target"])
    assert on_host.is_file()


def test_torch_threads_match_the_cpu_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = service()["deploy"]["resources"]["limits"]
    assert deployed_settings(monkeypatch).threads == float(limits["cpus"])


# --- The image installs with the README's commands ------------------------------------------------


def test_the_image_runs_the_readme_setup_through_the_makefile() -> None:
    rules = makefile()
    commands = [shlex.split(c) for c in readme_setup_commands()]
    assert all(c[0] == "make" for c in commands), commands
    # The set-up command that serves: its own recipe starts the server.
    serving = [c[1] for c in commands if any(" serve" in r for r in rules[c[1]].recipe)]
    assert len(serving) == 1, serving
    target = serving[0]
    built = [t for i, v in instructions() if i == "RUN" for t in make_targets(v)]
    # The image's RUN steps run exactly the rules that command runs before serving ...
    assert run_by(rules, built) == run_by(rules, [target]) - {target}
    # ... and its CMD is the serving recipe itself.
    (recipe,) = rules[target].recipe
    assert json.loads(dockerfile().cmd) == shlex.split(recipe)
    assert not {"command", "entrypoint"} & set(service()), "the compose file overrides the CMD"


def test_nothing_is_installed_beside_the_makefile() -> None:
    for instruction, value in instructions():
        if instruction != "RUN":
            continue
        for command in run_commands(value):
            program = PurePosixPath(command[0]).name
            assert not program.startswith(("pip", "python", "uv")), command
            assert program != "make" or command[1:], "a bare `make` runs the default target"


def test_the_torch_pin_lives_in_the_makefile_only() -> None:
    install = [line for rule in makefile().values() for line in rule.recipe]
    assert any(re.search(r"'torch==[\d.]+'", line) for line in install)
    assert "torch==" not in (ROOT / "Dockerfile").read_text()
    # The same pin yields the CPU build because pip may also look at torch's CPU index.
    assert dockerfile().args["PIP_EXTRA_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"


def test_the_base_image_is_an_argument_with_the_official_image_as_its_default() -> None:
    # Users get python:3.11-slim-bookworm; the compose check passes a bookworm it built with
    # debootstrap. No `# syntax=` line: it would fetch a frontend image from Docker Hub.
    parser = dockerfile()
    assert parser.baseimage == "python:3.11-slim-bookworm"
    assert [v for i, v in instructions() if i == "FROM"] == ["${BASE_IMAGE}"]
    assert not parser.content.lstrip().startswith("# syntax")
    assert "PIP_FIND_LINKS" in parser.args  # a local torch wheel, where its index is unreachable


# --- The health probe and the port ----------------------------------------------------------------


def test_both_health_checks_probe_a_route_of_the_app_on_its_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probe = healthcheck_command()
    check = service()["healthcheck"]
    assert check["test"] == ["CMD", *probe]
    url = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[\w/]*)", " ".join(probe))
    assert url, probe
    settings = deployed_settings(monkeypatch)
    routes = {getattr(r, "path", None) for r in create_app(settings).routes}
    assert url[2] in routes
    assert int(url[1]) == settings.port
    durations = [check[k] for k in ("interval", "timeout", "start_period")]
    assert all(re.fullmatch(r"(\d+(ns|us|ms|s|m|h))+", d) for d in durations), durations


def test_the_port_is_the_same_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = deployed_settings(monkeypatch)
    assert settings.host == "0.0.0.0"  # inside a container, loopback is unreachable from outside
    (exposed,) = [v for i, v in instructions() if i == "EXPOSE"]
    assert int(exposed) == settings.port
    (published,) = service()["ports"]
    host_ip, _, container = published.rsplit(":", 2)
    assert int(container) == settings.port
    # No API keys in the demo: it is published on the host's loopback only.
    assert host_ip == "127.0.0.1" or settings.api_keys


# --- The user -------------------------------------------------------------------------------------


def test_the_service_runs_as_an_unprivileged_user_who_owns_the_model() -> None:
    steps = instructions()
    cmd = max(n for n, (i, _) in enumerate(steps) if i == "CMD")
    users = [(n, v) for n, (i, v) in enumerate(steps[:cmd]) if i == "USER"]
    assert users, "no USER before CMD: the service would run as root"
    user = users[-1][1].split(":")[0]
    assert user not in ROOT_USERS
    # `make install` and `make model` run as that user, so the venv and model are its own.
    for n, (instruction, value) in enumerate(steps):
        if instruction == "RUN" and make_targets(value):
            in_effect = [v for m, v in users if m < n]
            assert in_effect and in_effect[-1].split(":")[0] == user, value
    created = re.search(rf"useradd\b.*--uid (\d+)\b.*\b{user}\b", dockerfile().content)
    assert created, f"the image does not create {user!r} with a fixed uid"
    cache_mounts = re.findall(r"--mount=type=cache,[^ ]*\buid=(\d+)", dockerfile().content)
    assert cache_mounts and set(cache_mounts) == {created[1]}
    assert service().get("user") in (None, user), "the compose file changes the user"


# --- Paths ----------------------------------------------------------------------------------------


def test_every_host_path_the_compose_file_names_exists() -> None:
    build = service()["build"]
    context = ROOT / (build if isinstance(build, str) else build["context"])
    assert (context / "Dockerfile").is_file()
    binds = [m for m in mounts() if m["type"] == "bind"]
    assert binds
    for mount in binds:
        assert (ROOT / mount["source"]).exists(), mount


def test_every_file_the_image_copies_is_in_the_build_context() -> None:
    for sources, _ in copies():
        for source in sources:
            path = ROOT / source
            assert path.exists(), source
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            shipped = [
                f.relative_to(ROOT).as_posix() for f in files if "__pycache__" not in f.parts
            ]
            assert shipped, source
            assert [f for f in shipped if not in_build_context(f)] == [], source


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        ".env",
        "tests/test_deploy.py",
        "data/squad_passages.jsonl",  # mounted, not baked in
        "benchmarks/engine.py",
        "agent_server.egg-info/PKG-INFO",
        "agent_server/__pycache__/app.cpython-311.pyc",
        "model.gguf",
    ],
)
def test_the_build_context_leaves_out(path: str) -> None:
    assert not in_build_context(path)


# --- The `scale` profile: replicas, one inference server, PostgreSQL, a balancer ------------------


def scale_services() -> dict[str, dict[str, Any]]:
    services = compose()["services"]
    return {name: s for name, s in services.items() if "scale" in s.get("profiles", [])}


def test_the_scale_profile_leaves_the_demo_alone() -> None:
    assert "profiles" not in service(), "`docker compose up` must still start the demo"
    assert set(scale_services()) == {"postgres", "qdrant", "inference", "replica", "balancer"}


def test_replicas_are_valid_settings_pointing_at_the_profiles_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = scale_services()
    environment = {k: interpolated(v) for k, v in services["replica"]["environment"].items()}
    for name in [n for n in os.environ if n.startswith("AGENT_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # raises if a value does not validate

    database = urllib.parse.urlsplit(settings.database_url.get_secret_value())
    postgres = {k: interpolated(v) for k, v in services["postgres"]["environment"].items()}
    assert (database.scheme, database.hostname, database.port) == ("postgresql", "postgres", 5432)
    assert database.username == postgres["POSTGRES_USER"]
    assert database.password == postgres["POSTGRES_PASSWORD"]
    assert database.path == "/" + postgres["POSTGRES_DB"]

    remote = urllib.parse.urlsplit(settings.remote_url or "")
    command = services["inference"]["command"]
    assert command[:2] == [".venv/bin/agent-server", "model-server"]
    assert (remote.hostname, str(remote.port)) == (
        "inference",
        command[command.index("--port") + 1],
    )
    assert settings.backend == "remote"
    # The replica reads the vocabulary of the very model the inference server runs.
    assert environment["AGENT_MODEL"] == interpolated(
        services["inference"]["environment"]["AGENT_MODEL"]
    )
    # Qdrant's image has no HTTP client for a health check; a failed index build is retried at
    # the next search.
    qdrant = urllib.parse.urlsplit(settings.qdrant_url or "")
    assert (qdrant.hostname, qdrant.port) == ("qdrant", 6333)
    depends = services["replica"]["depends_on"]
    assert {k: v["condition"] for k, v in depends.items()} == {
        "postgres": "service_healthy",
        "inference": "service_healthy",
        "qdrant": "service_started",
    }


def test_the_balancer_spreads_over_the_replicas_and_streams() -> None:
    services = scale_services()
    (mount,) = services["balancer"]["volumes"]
    config = (ROOT / mount["source"]).read_text()
    port = Settings.model_fields["port"].default
    assert re.search(rf"server\s+replica:{port}\s+resolve;", config), "upstream: every replica"
    assert re.search(r"proxy_buffering\s+off;", config), "SSE needs unbuffered proxying"
    assert re.search(r"proxy_pass\s+http://replicas;", config)
    assert services["balancer"]["depends_on"] == {"replica": {"condition": "service_healthy"}}


def test_the_compose_check_changes_only_what_no_registry_can_give() -> None:
    """deploy/check/compose.yml, laid over the compose file by the check: stand-in images for
    PostgreSQL and nginx, nginx's configuration without `resolve`, no Qdrant URL. Nothing that
    the demo or a replica runs differs."""
    check = yaml.safe_load((ROOT / "deploy/check/compose.yml").read_text())["services"]
    assert set(check) == {"postgres", "balancer", "replica"}
    assert set(check["postgres"]) == {"image"}
    assert set(check["balancer"]) == {"image", "volumes"}
    assert check["replica"] == {"environment": {"AGENT_QDRANT_URL": ""}}
    assert Settings(_env_file=None, qdrant_url="").tool_options().qdrant_url == ""
    (mount,) = check["balancer"]["volumes"]
    (original,) = scale_services()["balancer"]["volumes"]
    assert mount["target"] == original["target"] and mount["read_only"]
    assert (ROOT / mount["source"]).resolve() == compose_check().NGINX_CONF
    for name in ("postgres", "nginx"):
        assert (ROOT / f"deploy/check/{name}.Dockerfile").is_file()
