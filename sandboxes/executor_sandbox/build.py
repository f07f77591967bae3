"""Building the sandbox image: choose a base, build the definition, check the result.

The tag is the definition's hash (``image.image_tag``), so an unchanged
definition is reused and a changed one is built anew. The build runs untagged;
the tag is set only after a smoke container, hardened like a sandbox, has shown
that the image works, so a killed or failed build never leaves a tag that a
later run would take for current.

Bases: ``debian:bookworm-slim`` from a registry, or, where no registry is
reachable, one debootstrapped from the host's apt sources by
``image/offline-base.sh`` and tagged after a hash of that script.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from executor.errors import InfrastructureError
from executor_sandbox import engine, labels
from executor_sandbox.image import IMAGE_DIR, REPOSITORY, definition_hash, find_image, image_tag

if TYPE_CHECKING:
    import docker
    from docker.models.images import Image

BaseMode = Literal["auto", "pull", "offline"]
Progress = Callable[[str], None]

STOCK_BASE = "debian:bookworm-slim"
BASE_REPOSITORY = "proposal-executor/base"
OFFLINE_SCRIPT = IMAGE_DIR / "offline-base.sh"
PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
BUILD_TIMEOUT = 600  # seconds the daemon may stay silent during a build step
OFFLINE_TIMEOUT = 900  # seconds for the whole offline base
CHECK_TIMEOUT = 60
TAIL_LINES = 25
STEP = re.compile(r"^Step \d+/\d+ : ")
OFFLINE_HINT = "build on a base made from the host's apt sources: executor sandbox build --base offline"
CHECK_SCRIPT = "python3 -c 'import psycopg2' && node --version && initdb --version"


class BuildError(InfrastructureError):
    """A build step failed; ``log_tail`` holds its last output lines for the CLI to show."""

    def __init__(self, message: str, *, hint: str, log_tail: Iterable[str] = ()) -> None:
        super().__init__(message, hint=hint)
        self.log_tail = list(log_tail)


def _quiet(line: str) -> None:
    pass


def offline_base_tag() -> str:
    """The base ``offline-base.sh`` makes: a changed script makes a new one."""
    return f"{BASE_REPOSITORY}:bookworm-{hashlib.sha256(OFFLINE_SCRIPT.read_bytes()).hexdigest()[:12]}"


def can_debootstrap() -> str | None:
    """Why this host cannot make an offline base, or None if it can."""
    if os.geteuid() != 0:
        return "it needs root (debootstrap mounts and chroots)"
    if not any(p.is_file() and p.stat().st_size for p in _apt_source_files()):
        return "the host has no apt sources"
    if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
        return "neither debootstrap nor apt-get is installed"
    if shutil.which("docker") is None:
        return "the docker command-line client is not installed"
    return None


def _apt_source_files() -> list[Path]:
    listed, folder = APT_SOURCES
    files = [listed]
    if folder.is_dir():
        files += [*folder.glob("*.list"), *folder.glob("*.sources")]
    return files


def build_image(
    client: docker.DockerClient,
    *,
    base: BaseMode = "auto",
    force: bool = False,
    progress: Progress = _quiet,
    tag: str | None = None,
) -> Image:
    """The image of the current definition, built unless present (or ``force``).

    ``tag`` replaces ``image_tag()`` (tests build into throw-away tags).
    ``force`` rebuilds without the build cache (and, with ``base="pull"``, pulls
    the base again); an offline base is reused while its script is unchanged.
    """
    tag = tag or image_tag()
    if not force and (existing := find_image(client, tag)) is not None:
        progress(f"{tag} is current (definition unchanged); reusing it")
        return existing
    base_ref = choose_base(client, base, progress)
    image_id = _docker_build(client, base_ref, progress, nocache=force, pull=force and base == "pull")
    check_image(client, image_id, progress)
    repository, _, version = tag.rpartition(":")
    engine.call("tag the sandbox image", lambda: client.api.tag(image_id, repository, version, force=True))
    return engine.call("look up the sandbox image", lambda: client.images.get(tag))


def choose_base(client: docker.DockerClient, mode: BaseMode, progress: Progress) -> str:
    if mode == "pull":
        progress(f"base: {STOCK_BASE} (pulled by the engine if missing)")
        return STOCK_BASE
    if mode == "auto":
        if find_image(client, STOCK_BASE) is not None:
            progress(f"base: {STOCK_BASE} (present in the engine)")
            return STOCK_BASE
        reason = can_debootstrap()
        if reason is not None:
            progress(
                f"base: {STOCK_BASE}, to be pulled ({STOCK_BASE} is not present and no offline base: {reason})"
            )
            return STOCK_BASE
    return make_offline_base(client, progress)


def make_offline_base(
    client: docker.DockerClient, progress: Progress = _quiet, *, tag: str | None = None
) -> str:
    """The offline base (reused if present), made by ``offline-base.sh`` otherwise."""
    tag = tag or offline_base_tag()
    if find_image(client, tag) is not None:
        progress(f"base: {tag} (made earlier from the host's apt sources)")
        return tag
    reason = can_debootstrap()
    if reason is not None:
        raise InfrastructureError(
            f"cannot make an offline base image on this host: {reason}",
            hint=f"run executor sandbox build as root, or on a host with a registry: executor sandbox build --base pull (or docker load {STOCK_BASE})",
        )
    progress(f"base: making {tag} with debootstrap from the host's apt sources")
    env = {**os.environ, "DOCKER_HOST": engine.address()}
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    started = time.monotonic()
    with subprocess.Popen(
        ["bash", str(OFFLINE_SCRIPT), tag],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        errors="replace",
        start_new_session=True,  # so an interrupted build stops debootstrap too, not only bash
    ) as proc:
        # Our own deadline: debootstrap's wget retries a stalled mirror for a long time.
        deadline = threading.Timer(OFFLINE_TIMEOUT, _stop, (proc,))
        deadline.start()
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip()
                tail.append(line)
                progress(line)
            status = proc.wait()
        except BaseException:
            _stop(proc)
            raise
        finally:
            deadline.cancel()
    if status != 0:
        why = (
            f"timed out after {OFFLINE_TIMEOUT} s"
            if time.monotonic() - started >= OFFLINE_TIMEOUT
            else f"exit {status}"
        )
        raise BuildError(
            f"making the offline base {tag} failed (offline-base.sh {why}): {_last(tail)}",
            hint="check the host's apt sources and proxy (apt-get update must work), then retry: executor sandbox build --base offline",
            log_tail=tail,
        )
    return tag


def _last(tail: deque[str]) -> str:
    return tail[-1].removeprefix("offline-base: ERROR: ") if tail else "no output"


def _stop(proc: subprocess.Popen[str]) -> None:
    """Stop the script's whole process group and let its cleanup trap run."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        proc.kill()


def build_network(client: docker.DockerClient) -> str | None:
    """``host`` when the engine has no default bridge (its RUN steps would have no network)."""
    import docker.errors

    try:
        engine.call("look up the bridge network", lambda: client.api.inspect_network("bridge"))
    except docker.errors.NotFound:
        return "host"
    return None


def _docker_build(
    client: docker.DockerClient, base_ref: str, progress: Progress, *, nocache: bool, pull: bool
) -> str:
    """Build the definition on ``base_ref``, untagged; return the image id."""
    import docker.errors
    import requests.exceptions

    network = build_network(client)
    if network:
        progress("no default bridge network in the engine: building with network host")
    buildargs = {"BASE_IMAGE": base_ref, **{v: os.environ[v] for v in PROXY_VARS if os.environ.get(v)}}
    options: dict[str, Any] = {
        "path": str(IMAGE_DIR),
        "buildargs": buildargs,
        "labels": {labels.DEFINITION: definition_hash(), labels.APP: labels.APP_VALUE},
        "decode": True,
        "rm": True,
        "forcerm": True,
        "nocache": nocache,
        "pull": pull,
        "network_mode": network,
        "timeout": BUILD_TIMEOUT,
    }
    log: deque[str] = deque(maxlen=TAIL_LINES)
    step, image_id, partial = "", None, ""
    try:
        stream = engine.call("start the image build", lambda: client.api.build(**options))
        for chunk in stream:
            if "errorDetail" in chunk or "error" in chunk:
                detail = chunk.get("errorDetail") or {}
                _build_failed(base_ref, step, str(detail.get("message") or chunk.get("error")), log)
            if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                image_id = str(chunk["aux"]["ID"])
            if "status" in chunk:  # pulling the base
                log.append(f"{chunk['status']} {chunk.get('progress', '')}".rstrip())
                if "id" not in chunk:
                    progress(str(chunk["status"]))
            lines = (partial + str(chunk.get("stream", ""))).split("\n")
            partial = lines.pop()
            for line in lines:
                log.append(line)
                if STEP.match(line):
                    step = line
                    progress(line)
    except (requests.exceptions.RequestException, docker.errors.APIError) as exc:
        raise BuildError(
            f"the engine at {engine.address()} broke off the image build{_where(step)}: {exc}",
            hint="check the engine (docker info; its log), then retry: executor sandbox build",
            log_tail=log,
        ) from exc
    if image_id is None:
        _build_failed(base_ref, step, "the engine reported no image id", log)
    return image_id


def _where(step: str) -> str:
    """`` in Step 4/10 (RUN)`` for a ``Step N/M : INSTRUCTION ...`` line."""
    number, _, instruction = step.partition(" : ")
    return f" in {number} ({instruction.split(maxsplit=1)[0].upper()})" if instruction else ""


def _build_failed(base_ref: str, step: str, message: str, log: Iterable[str]) -> NoReturn:
    instruction = [word.upper() for word in step.partition(" : ")[2].split(maxsplit=1)[:1]]
    if instruction in ([], ["ARG"], ["FROM"]):  # the base itself is the problem
        hint = (
            OFFLINE_HINT
            if base_ref == STOCK_BASE
            else f"the base {base_ref} is missing or broken; remake it: executor sandbox build --base offline"
        )
    else:
        hint = "apt in the build needs the network: check the host's apt sources and proxy (http_proxy/https_proxy are passed on), then retry: executor sandbox build"
    raise BuildError(
        f"building the sandbox image failed{_where(step)}: {message.strip()}", hint=hint, log_tail=log
    )


def check_image(client: docker.DockerClient, image_id: str, progress: Progress = _quiet) -> str:
    """Run the smoke checks in a container hardened like a sandbox; return their output."""
    import docker.errors
    import requests.exceptions

    from executor.config import SandboxSettings
    from executor_sandbox.sandbox import container_options

    progress("checking the image in a sandbox-hardened container (no network, read-only root)")
    container = engine.call(
        "create the image check container",
        # The same hardening as every sandbox (one place: sandbox.container_options),
        # with the check script instead of the harness.
        lambda: client.containers.create(
            **{
                **container_options(image_id, SandboxSettings(), _check_labels(), name=None, postgres=False),
                "command": ["sh", "-c", CHECK_SCRIPT],
                "stdin_open": False,
            }
        ),
    )
    try:
        engine.call("start the image check", container.start)
        try:
            status = int(container.wait(timeout=CHECK_TIMEOUT)["StatusCode"])
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            # Our deadline passed (over a unix socket a read timeout surfaces as a ConnectionError).
            engine.call("stop the image check", container.kill)
            status = -1
        output = engine.call("read the image check", lambda: container.logs()).decode(errors="replace")
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            engine.call("remove the image check container", lambda: container.remove(force=True))
    if status != 0 or "initdb (PostgreSQL) 15" not in output:
        lines = [line for line in output.splitlines() if line.strip()]
        why = "timed out" if status == -1 else f"exit {status}"
        raise BuildError(
            f"the built image {image_id[:19]} failed its check ({why}): {lines[-1] if lines else 'no output'}",
            hint="the definition in sandboxes/executor_sandbox/image/ is broken; fix it and rebuild: executor sandbox build --force",
            log_tail=lines[-TAIL_LINES:],
        )
    progress("check passed: " + ", ".join(line.strip() for line in output.splitlines() if line.strip()))
    return output


def _check_labels() -> dict[str, str]:
    """Labels of the check container: a one-shot sandbox, reaped as an orphan if we are killed."""
    return {
        labels.APP: labels.APP_VALUE,
        labels.PURPOSE: labels.COLD,
        labels.RUN_ID: f"image-check-{uuid.uuid4().hex[:12]}",
        labels.DEFINITION: definition_hash(),
        labels.OWNER: labels.owner(),
    }


def stale_images(client: docker.DockerClient) -> list[Image]:
    """Sandbox images of other definitions, untagged leftovers, and bases of older scripts."""
    current = find_image(client, image_tag())
    base = offline_base_tag()
    queries: list[dict[str, Any]] = [
        {"name": REPOSITORY},
        {"name": BASE_REPOSITORY},
        {"filters": {"label": f"{labels.APP}={labels.APP_VALUE}"}},
    ]
    found: dict[str, Image] = {}
    for query in queries:
        for img in engine.call("list images", functools.partial(client.images.list, **query)):
            found[str(img.id)] = img
    keep = {str(current.id)} if current else set()
    return [img for key, img in found.items() if key not in keep and base not in img.tags]
