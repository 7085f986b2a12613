"""The docker-compose demo, built and run on a real Docker engine, and checked from the host.

`make compose-check` (or `python3 deploy/compose_check.py`), as root or with sudo. It needs only
the host's Python standard library, Debian's packages and PyPI:

1. installs Debian's `docker.io`, `docker-compose` (1.29.2) and `debootstrap` when missing, and
   starts `dockerd` when no engine answers;
2. builds a Debian bookworm base image with debootstrap once (`agent-server-base:bookworm`,
   kept by the engine), for machines that reach no image registry;
3. builds the project's image from it (`agent-server:demo`), timing the build;
4. the demo: `up -d`, waits for healthy, then through the published port asks a Calculator
   question, uploads a note and asks about it (Retrieve must cite it), loads the UI's page,
   `restart`s, and checks that the conversation and the document are still there; `down -v`;
5. the `scale` profile (`--scale`): PostgreSQL and nginx images built from the same base (their
   registry images cannot be fetched here), two replicas behind the balancer, and a conversation
   started through one replica continued through the other.

Every step and figure goes to stdout and to build/compose-check/log.txt; the figures also to
build/compose-check/figures.json. Exit status 0 only if every check held.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "compose-check"
# deploy/nginx.conf as Debian's nginx reads it; deploy/check/compose.yml mounts it.
NGINX_CONF = OUT / "nginx.conf"
BASE_IMAGE = "agent-server-base:bookworm"
IMAGE = "agent-server:demo"
PROJECT = "agent-server-check"
DEMO_URL = "http://127.0.0.1:8000"
SCALE_URL = "http://127.0.0.1:8001"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What the base image needs beyond debootstrap's minimal system, as the official python image
# has it: the Makefile runs `python3 -m venv`; packages without a wheel (pycosat) compile against
# Python's headers; pip reaches PyPI over TLS.
BASE_PACKAGES = "python3,python3-venv,python3-dev,ca-certificates"
LOG: list[str] = []
FIGURES: dict[str, Any] = {}


class CheckFailed(Exception):
    """A check that did not hold: the message says which and what was seen."""


def say(message: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    print(line, flush=True)
    LOG.append(line)


def figure(name: str, value: Any) -> None:
    FIGURES[name] = value
    say(f"figure: {name} = {value}")


def check(condition: bool, what: str, seen: Any = None) -> None:
    if not condition:
        raise CheckFailed(f"{what}: {seen!r}"[:2000])
    say(f"ok: {what}")


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    quiet: bool = False,
    polling: bool = False,
    **kw: Any,
) -> subprocess.CompletedProcess[str]:
    """Run a command; it and its output go to the log (the output not to stdout when quiet,
    neither when polling). Raise on failure."""
    if not polling:
        say("$ " + " ".join(argv))
    done = subprocess.run(
        list(argv),
        env={**os.environ, **(env or {})},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kw,
    )
    output = done.stdout.rstrip()
    if output and not polling:
        LOG.append(output)
        if not quiet:
            print(output, flush=True)
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-30:])
        raise CheckFailed(f"`{' '.join(argv)}` exited with {done.returncode}:\n{tail}")
    return done


def succeeds(argv: Sequence[str]) -> bool:
    return subprocess.run(list(argv), capture_output=True).returncode == 0


# --- the engine -----------------------------------------------------------------------------


def sudo() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo"]


def install_packages() -> None:
    """Debian's engine, Compose 1.29.2 and debootstrap, when any is missing."""
    wanted = {
        "dockerd": "docker.io",
        "docker-compose": "docker-compose",
        "debootstrap": "debootstrap",
    }
    # /usr/sbin is not on a user's PATH, and sudo finds dockerd and debootstrap there.
    missing = [
        package
        for command, package in wanted.items()
        if not (shutil.which(command) or Path("/usr/sbin", command).exists())
    ]
    if not missing:
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run([*sudo(), "apt-get", "update", "-qq"], env=env, quiet=True)
    run([*sudo(), "apt-get", "install", "-y", "-qq", *missing], env=env, quiet=True)


def docker_cli() -> str:
    """A client that builds with BuildKit (the Dockerfile's cache mount needs it).

    Debian's client (20.10, beside its engine) has BuildKit built in; a newer client without
    the buildx plugin has only the legacy builder, which cannot read `RUN --mount`."""
    if succeeds(["docker", "buildx", "version"]):
        return "docker"
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker"
    return "docker"


def start_engine(docker: str) -> None:
    if succeeds([docker, "info"]):
        return
    OUT.mkdir(parents=True, exist_ok=True)
    say(f"no Docker engine answers: starting dockerd (log: {OUT / 'dockerd.log'})")
    with (OUT / "dockerd.log").open("ab") as log:
        subprocess.Popen(
            [*sudo(), "dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while not succeeds([docker, "info"]):
        if time.monotonic() > deadline:
            raise CheckFailed("dockerd did not answer within 60 s: see dockerd.log")
        time.sleep(1)


def host_cas() -> list[Path]:
    """Certificate authorities added to this host (a TLS-inspecting proxy's, a company's)."""
    return sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))


def build_base_image(docker: str) -> None:
    """A bookworm root file system from Debian's mirror, imported as an image (once).

    It trusts what the host trusts (the host's added CAs), so that pip inside a build reaches
    PyPI wherever the host does, and pip's own bundle gives way to the system's."""
    if succeeds([docker, "image", "inspect", BASE_IMAGE]):
        say(f"base image {BASE_IMAGE} is there already")
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bookworm-", dir=OUT) as folder:
        rootfs = Path(folder) / "rootfs"
        run(
            [*sudo(), "debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}",
             "bookworm", str(rootfs), DEBIAN_MIRROR],
            quiet=True,
        )  # fmt: skip
        cas = host_cas()
        if cas:
            target = rootfs / "usr/local/share/ca-certificates"
            run([*sudo(), "cp", *map(str, cas), str(target)])
            run([*sudo(), "chroot", str(rootfs), "update-ca-certificates"], quiet=True)
        bundle = "/etc/ssl/certs/ca-certificates.crt"
        changes = [f"ENV {name}={bundle}" for name in ("PIP_CERT", "SSL_CERT_FILE")]
        changes += ["ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]']
        tar = subprocess.Popen(
            [*sudo(), "tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
            stdout=subprocess.PIPE,
        )
        flags = [arg for change in changes for arg in ("--change", change)]
        run([docker, "import", *flags, "-", BASE_IMAGE], stdin=tar.stdout)
        if tar.wait() != 0:
            raise CheckFailed("tar of the bookworm root file system failed")
        run([*sudo(), "rm", "-rf", str(rootfs)])
    figure("base_image_build_s", round(time.monotonic() - started, 1))


# --- torch's CPU wheel ------------------------------------------------------------------------


def torch_pin() -> str:
    found = re.search(r"'torch==([^']+)'", (ROOT / "Makefile").read_text())
    if found is None:
        raise CheckFailed("the Makefile pins no torch version")
    return found.group(1)


def reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=10).close()
        return True
    except (OSError, urllib.error.URLError):
        return False


def bridge_address(docker: str) -> str:
    """The host's address on Docker's default bridge, where build containers reach it."""
    bridge = run(
        [docker, "network", "inspect", "bridge", "-f",
         '{{index .Options "com.docker.network.bridge.name"}}'],
        quiet=True,
    ).stdout.strip()  # fmt: skip
    shown = run(["ip", "-4", "-o", "addr", "show", bridge or "docker0"], quiet=True).stdout
    found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", shown)
    if found is None:
        raise CheckFailed(f"no IPv4 address on Docker's bridge: {shown!r}")
    return found.group(1)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """The build's requests for the wheel are not news."""


@contextmanager
def local_torch_wheel(docker: str) -> Iterator[str | None]:
    """Serve this machine's torch CPU wheel to the build when torch's CPU index is unreachable.

    The Dockerfile takes torch from download.pytorch.org/whl/cpu; PyPI's torch is the CUDA
    build (GBs of nvidia-* wheels). Yields the find-links URL, or None to leave the build as
    users get it."""
    if reachable("https://download.pytorch.org/whl/cpu/torch/"):
        yield None
        return
    wheels = OUT / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.11", "-d", str(wheels), f"torch=={torch_pin()}"],
    )  # fmt: skip
    found = [w.name for w in wheels.glob("torch-*.whl")]
    if not any("+cpu" in name for name in found):
        raise CheckFailed(f"torch's CPU index is unreachable and no local CPU build: {found}")
    address = bridge_address(docker)
    server = ThreadingHTTPServer((address, 0), partial(QuietHandler, directory=str(wheels)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    say(f"serving {found} to the build at http://{address}:{server.server_port}/")
    try:
        yield f"http://{address}:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def build_image(docker: str) -> None:
    with local_torch_wheel(docker) as links:
        args = ["--build-arg", f"BASE_IMAGE={BASE_IMAGE}"]
        if links:
            # ... and not torch's unreachable index: pip would wait out its retries.
            host = urllib.parse.urlsplit(links).hostname
            for arg in (
                f"PIP_FIND_LINKS={links}",
                f"PIP_TRUSTED_HOST={host}",
                "PIP_EXTRA_INDEX_URL=",
            ):
                args += ["--build-arg", arg]
        started = time.monotonic()
        run(
            [docker, "build", "--progress=plain", *args, "-t", IMAGE, str(ROOT)],
            env={"DOCKER_BUILDKIT": "1"},
            quiet=True,
        )
        figure("image_build_s", round(time.monotonic() - started, 1))
    size = run([docker, "image", "inspect", IMAGE, "-f", "{{.Size}}"], quiet=True).stdout
    figure("image_size_gb", round(int(size) / 1e9, 2))


# --- HTTP from the host -----------------------------------------------------------------------


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 600) -> tuple[int, bytes]:  # fmt: skip
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def get_json(url: str, polling: bool = False) -> Any:
    """GET a JSON body, which must come with a 200 (logged as a check unless polling)."""
    status, body = http("GET", url)
    if status != 200:
        raise CheckFailed(f"GET {url} answered {status}: {body[:300]!r}")
    if not polling:
        say(f"ok: GET {url} answers 200")
    return json.loads(body)


def ask(base: str, question: str, figure_name: str = "", **extra: Any) -> dict[str, Any]:
    """POST /v1/ask; its seconds become the figure `figure_name`, if given."""
    started = time.monotonic()
    payload = json.dumps({"question": question, **extra}).encode()
    status, body = http("POST", f"{base}/v1/ask", payload, {"content-type": "application/json"})
    check(status == 200, f"POST /v1/ask {question!r} answers 200", (status, body[:500]))
    answer: dict[str, Any] = json.loads(body)
    calls = [(t["tool"], (t.get("result") or "")[:80]) for t in answer["trace"]]
    took = time.monotonic() - started
    say(f"answer in {took:.1f} s: {answer['answer']!r}; calls {calls}")
    if figure_name:
        figure(figure_name, round(took, 1))
    return answer


def upload(base: str, name: str, text: str) -> None:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: text/markdown\r\n\r\n{text}\r\n--{boundary}--\r\n"
    ).encode()
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    status, reply = http("POST", f"{base}/v1/documents", body, headers)
    check(status == 201, f"upload {name} answers 201", (status, reply[:300]))


def wait_for(what: str, ready: Callable[[], bool], timeout_s: float) -> float:
    started = time.monotonic()
    while not ready():
        if time.monotonic() - started > timeout_s:
            raise CheckFailed(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(1)
    waited = time.monotonic() - started
    say(f"{what} after {waited:.1f} s")
    return waited


def readyz(base: str) -> bool:
    try:
        return http("GET", f"{base}/readyz", timeout=5)[0] == 200
    except OSError:
        return False


def document_ready(base: str, name: str) -> bool:
    listed = {d["id"]: d for d in get_json(f"{base}/v1/documents", polling=True)}
    if name in listed and listed[name].get("status") == "unreadable":
        raise CheckFailed(f"{name} could not be indexed: {listed[name]}")
    return name in listed and listed[name].get("status") == "ready"


# --- Compose ------------------------------------------------------------------------------------


def compose(*args: str, polling: bool = False) -> subprocess.CompletedProcess[str]:
    return run(
        ["docker-compose", "--project-name", PROJECT, *COMPOSE_FILES, *args],
        cwd=ROOT,
        quiet=True,
        polling=polling,
    )


DEMO_FILES = ["-f", "docker-compose.yml"]
COMPOSE_FILES: list[str] = list(DEMO_FILES)


@contextmanager
def project(files: list[str], keep: bool) -> Iterator[None]:
    """The compose project from `files`, from a clean start; on a failure the services' last
    log lines go to the log; then `down -v`, unless `keep` (to look inside)."""
    COMPOSE_FILES[:] = files
    compose("down", "-v", "--remove-orphans")
    try:
        yield
    except BaseException:
        LOG.append(compose("logs", "--no-color", "--tail", "60", polling=True).stdout)
        raise
    finally:
        if not keep:
            compose("down", "-v")


def health(docker: str, service: str) -> list[str]:
    ids = compose("ps", "-q", service, polling=True).stdout.split()
    status = "{{.State.Health.Status}}"
    return [run([docker, "inspect", "-f", status, i], polling=True).stdout.strip() for i in ids]


def healthy(docker: str, service: str, containers: int = 1) -> Callable[[], bool]:
    return lambda: health(docker, service) == ["healthy"] * containers


NOTE_NAME = "boiler.md"
NOTE = (
    "# Quillfeather boiler\n\n"
    "The Quillfeather boiler in the basement was installed by Harlow & Sons. "
    "Its warranty runs until March 2031 and covers parts and labour.\n"
)
NOTE_QUESTION = "Until when is the Quillfeather boiler under warranty, according to my documents?"


def check_answers(base: str) -> str:
    """A Calculator answer, an upload and a Retrieve answer about it, the UI: returns the
    conversation the first answer started."""
    arithmetic = ask(base, "What is 1234 * 5678?", "demo_first_answer_s")
    check("7006652" in arithmetic["answer"].replace(",", ""), "1234 * 5678 = 7006652", arithmetic)
    check(bool(arithmetic["trace"]), "the answer used a tool", arithmetic["trace"])
    conversation = arithmetic["conversation_id"]
    upload(base, NOTE_NAME, NOTE)
    waited = wait_for(f"{NOTE_NAME} indexed", lambda: document_ready(base, NOTE_NAME), 300)
    figure("upload_to_ready_s", round(waited, 1))
    about = ask(base, NOTE_QUESTION, "demo_document_answer_s")
    cited = [
        t for t in about["trace"] if t["tool"] == "Retrieve" and NOTE_NAME in (t["result"] or "")
    ]
    check(bool(cited), f"Retrieve found doc://{NOTE_NAME}", about["trace"])
    check("2031" in about["answer"], "the answer says 2031", about["answer"])
    status, page = http("GET", f"{base}/")
    check(status == 200 and b"<html" in page.lower(), "the UI's page loads", (status, page[:200]))
    return str(conversation)


def check_demo(docker: str) -> None:
    say("--- the demo: docker-compose up")
    started = time.monotonic()
    compose("up", "-d", "--no-build", "agent")
    wait_for("the service ready (GET /readyz)", lambda: readyz(DEMO_URL), 600)
    figure("demo_up_to_ready_s", round(time.monotonic() - started, 1))
    # Docker runs the first health check one interval (30 s) after the start.
    wait_for("the agent service healthy", healthy(docker, "agent"), 600)
    figure("demo_up_to_healthy_s", round(time.monotonic() - started, 1))
    conversation = check_answers(DEMO_URL)
    say("--- docker-compose restart")
    started = time.monotonic()
    compose("restart", "agent")
    wait_for("ready again", lambda: readyz(DEMO_URL), 300)
    figure("demo_restart_to_ready_s", round(time.monotonic() - started, 1))
    kept = get_json(f"{DEMO_URL}/v1/conversations/{conversation}")
    check(len(kept["turns"]) == 1, "the conversation survived the restart", kept)
    names = [d["id"] for d in get_json(f"{DEMO_URL}/v1/documents")]
    check(NOTE_NAME in names, "the uploaded document survived the restart", names)
    check(document_ready(DEMO_URL, NOTE_NAME), "and is searchable", names)
    follow = ask(DEMO_URL, "And what is that divided by 2?", conversation_id=conversation)
    check(follow["conversation_id"] == conversation, "the conversation goes on", follow)
    turns = get_json(f"{DEMO_URL}/v1/conversations/{conversation}")["turns"]
    check(len(turns) == 2, "it has both turns", turns)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-build", action="store_true", help="use the image already built")
    parser.add_argument("--scale", action="store_true", help="also check the scale profile")
    parser.add_argument("--skip-demo", action="store_true", help="check the scale profile only")
    parser.add_argument("--keep", action="store_true", help="leave the services running")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        install_packages()
        docker = docker_cli()
        start_engine(docker)
        run([docker, "version", "-f", "engine {{.Server.Version}}, client {{.Client.Version}}"])
        run(["docker-compose", "version", "--short"])
        build_base_image(docker)
        if not args.skip_build:
            build_image(docker)
        if not args.skip_demo:
            with project(DEMO_FILES, args.keep):
                check_demo(docker)
        if args.scale:
            build_check_images(docker)
            with project(SCALE_FILES, args.keep):
                check_scale(docker)
        ok = True
    except CheckFailed as failure:
        say(f"FAILED: {failure}")
        ok = False
    except Exception:  # a bug here, or an answer not shaped as expected: still logged
        say(f"FAILED:\n{traceback.format_exc()}")
        ok = False
    figure("total_s", round(time.monotonic() - started, 1))
    (OUT / "log.txt").write_text("\n".join(LOG) + "\n")
    (OUT / "figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")
    say("compose check " + ("passed" if ok else "FAILED") + f"; log in {OUT / 'log.txt'}")
    return 0 if ok else 1


CHECK_IMAGES = {
    "postgres": "agent-server-check/postgres:15",
    "nginx": "agent-server-check/nginx:1.22",
}
SCALE_FILES = ["-f", "docker-compose.yml", "-f", "deploy/check/compose.yml", "--profile", "scale"]
# Asked inside a replica's container, of the replica itself: which replica answers is then a fact,
# not the balancer's choice.
ASK_INSIDE = """
import os, sys, urllib.error, urllib.request as u
r = u.Request("http://127.0.0.1:8000/v1/ask", data=os.environb[b"ASK"],
              headers={"content-type": "application/json"})
try:
    print(u.urlopen(r, timeout=600).read().decode())
except urllib.error.HTTPError as e:
    sys.exit(f"{e.code}: {e.read().decode()}")
"""


def build_check_images(docker: str) -> None:
    """PostgreSQL and nginx from Debian's packages, and nginx.conf as Debian's nginx reads it."""
    for name, tag in CHECK_IMAGES.items():
        run(
            [docker, "build", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", tag,
             "-f", str(ROOT / f"deploy/check/{name}.Dockerfile"), str(ROOT / "deploy/check")],
            env={"DOCKER_BUILDKIT": "1"},
            quiet=True,
        )  # fmt: skip
    conf = (ROOT / "deploy/nginx.conf").read_text()
    NGINX_CONF.write_text(conf.replace(" resolve;", ";"))


def ask_replica(docker: str, container: str, question: str, **extra: Any) -> dict[str, Any]:
    payload = json.dumps({"question": question, **extra})
    done = run(
        [docker, "exec", "-e", f"ASK={payload}", container, "python", "-c", ASK_INSIDE],
        quiet=True,
    )
    answer: dict[str, Any] = json.loads(done.stdout)
    say(f"replica {container[:12]} answered {answer['answer']!r}")
    return answer


def check_scale(docker: str) -> None:
    say("--- the scale profile: PostgreSQL, the inference server, 2 replicas, nginx")
    started = time.monotonic()
    # --no-deps: Compose would start Qdrant, which the check leaves out (deploy/check/compose.yml);
    # the order depends_on gives is kept by hand.
    compose("up", "-d", "--no-deps", "postgres", "inference")
    for service in ("postgres", "inference"):
        wait_for(f"{service} healthy", healthy(docker, service), 600)
    compose("up", "-d", "--no-deps", "--scale", "replica=2", "replica")
    wait_for("both replicas healthy", healthy(docker, "replica", 2), 600)
    compose("up", "-d", "--no-deps", "balancer")
    wait_for("the balancer ready", lambda: readyz(SCALE_URL), 120)
    figure("scale_up_to_ready_s", round(time.monotonic() - started, 1))
    through = ask(SCALE_URL, "What is 17*23?", "scale_first_answer_s")
    check("391" in through["answer"], "17*23 = 391 through the balancer", through["answer"])
    # The conversation in the one-call style: what is checked is that the second replica reads
    # the first one's turn from PostgreSQL, and each answer must stay within the service's
    # request limit, which a reasoning answer through the inference server nearly reaches here.
    short = {"strategy": "toolformer"}
    first, second = compose("ps", "-q", "replica").stdout.split()
    started_here = ask_replica(docker, first, "What is 1234 * 5678?", **short)
    conversation = started_here["conversation_id"]
    continued = ask_replica(
        docker, second, "And what is that divided by 2?", conversation_id=conversation, **short
    )
    check(
        continued["conversation_id"] == conversation, "replica 2 continued replica 1's", continued
    )
    turns = get_json(f"{SCALE_URL}/v1/conversations/{conversation}")["turns"]
    check(len(turns) == 2, "the conversation has both turns, through the balancer", turns)
    check("3503326" in continued["answer"].replace(",", ""), "the follow-up used turn 1", continued)


if __name__ == "__main__":
    sys.exit(main())
