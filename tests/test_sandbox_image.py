"""The sandbox image: its definition hash, ``executor sandbox build`` and ``executor doctor``.

Builds go into throw-away tags, removed afterwards; the offline base of the
current script is reused when present (made once, ~20 s, when not), and the
engine's build cache makes a rebuild of an unchanged step cheap. Nothing here
touches the real tag of the current definition.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import docker
import docker.errors
import pytest
from click.testing import CliRunner, Result
from executor_sandbox import build, image, labels
from executor_sandbox.build import BuildError, build_image

from executor.cli import ExecutorGroup, cli
from executor.cli_sandbox import doctor, sandbox_group

ENGINE_FIX = "sudo scripts/ensure-docker.sh"


def executor_cli() -> click.Group:
    """The real ``executor`` group once it registers these commands, else one wrapping them the same way."""
    if "doctor" in cli.commands and "sandbox" in cli.commands:
        return cli
    return ExecutorGroup(name="executor", commands={"doctor": doctor, "sandbox": sandbox_group})


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(executor_cli(), list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def client(docker_client: docker.DockerClient) -> docker.DockerClient:
    """The engine (tests.sandbox_fixtures); without one these tests skip, a failure in CI."""
    return docker_client


def throwaway_tag(purpose: str) -> str:
    return f"{image.REPOSITORY}:test-{purpose}-{uuid.uuid4().hex[:10]}"


def untag(client: docker.DockerClient, tag: str) -> None:
    """Remove a tag of ours; the image itself stays while another tag or a container uses it."""
    try:
        client.images.remove(tag)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError:  # only tag of an image a stopped container still uses
        client.images.remove(tag, force=True)


@dataclass
class Built:
    tag: str
    image_id: str
    lines: list[str]
    seconds: float


@pytest.fixture(scope="module")
def built(client: docker.DockerClient) -> Iterator[Built]:
    """The current definition built on the offline base into a throw-away tag."""
    reason = build.can_debootstrap()
    if reason is not None and image.find_image(client, build.offline_base_tag()) is None:
        pytest.skip(f"no offline base and this host cannot make one: {reason}")
    tag = throwaway_tag("offline")
    assert image.find_image(client, tag) is None
    lines: list[str] = []
    started = time.monotonic()
    try:
        result = build_image(client, base="offline", force=False, progress=lines.append, tag=tag)
        yield Built(tag, str(result.id), lines, time.monotonic() - started)
    finally:
        untag(client, tag)


# -- the definition ----------------------------------------------------------


@pytest.fixture
def image_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the image definition in use instead of the real one (hash cache cleared around it)."""
    copy = tmp_path / "image"
    shutil.copytree(image.IMAGE_DIR, copy)
    monkeypatch.setattr(image, "IMAGE_DIR", copy)
    monkeypatch.setattr(build, "OFFLINE_SCRIPT", copy / "offline-base.sh")
    image.definition_hash.cache_clear()
    yield copy
    image.definition_hash.cache_clear()


def test_definition_hash_follows_the_definition_files(image_copy: Path) -> None:
    original, tag = image.definition_hash(), image.image_tag()
    assert tag == f"{image.REPOSITORY}:{original[:12]}"

    base_tag = build.offline_base_tag()
    with (image_copy / "offline-base.sh").open("a") as script:
        script.write("# a changed script makes a new base, not a new definition\n")
    image.definition_hash.cache_clear()
    assert image.definition_hash() == original
    assert build.offline_base_tag() != base_tag

    for name in image.DEFINITION_FILES:
        path = image_copy / name
        saved = path.read_bytes()
        path.write_bytes(saved + b"\n# changed\n")
        image.definition_hash.cache_clear()
        assert image.definition_hash() != original, name
        assert image.image_tag() != tag, name
        path.write_bytes(saved)
        image.definition_hash.cache_clear()
        assert image.definition_hash() == original, name


# -- building ----------------------------------------------------------------


@pytest.mark.docker
def test_offline_build_makes_a_working_image(client: docker.DockerClient, built: Built) -> None:
    img = client.images.get(built.tag)
    assert img.id == built.image_id
    assert img.labels[labels.DEFINITION] == image.definition_hash()
    assert img.labels[labels.APP] == labels.APP_VALUE
    assert any(line.startswith("Step 1/") for line in built.lines), built.lines
    assert any(build.offline_base_tag() in line for line in built.lines), built.lines
    assert any(line.startswith("check passed:") for line in built.lines), built.lines
    # More than the build's own check: a server started and queried through
    # psycopg2, as the non-root user, with the sandbox's hardening.
    script = (
        "set -e; initdb -D /tmp/pg -A trust >/dev/null; "
        "pg_ctl -D /tmp/pg -w -o '-k /tmp -c listen_addresses=' -l /tmp/pg.log start >/dev/null; "
        'python3 -c \'import psycopg2; c = psycopg2.connect(host="/tmp", dbname="postgres"); '
        'cur = c.cursor(); cur.execute("select current_user, 6 * 7"); print(*cur.fetchone())\'; '
        "node -e 'console.log(\"node\", 1 + 1)'"
    )
    output = client.containers.run(
        built.image_id,
        ["bash", "-c", script],
        user="sandbox",
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        tmpfs={"/tmp": "rw,size=128m"},
        labels={labels.APP: labels.APP_VALUE, labels.PURPOSE: labels.COLD, labels.OWNER: labels.owner()},
        remove=True,
    )
    assert output.decode().split("\n")[-3:] == ["sandbox 42", "node 2", ""]


@pytest.mark.docker
def test_unchanged_definition_is_reused(
    client: docker.DockerClient, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_build(*args: object, **kwargs: object) -> str:
        raise AssertionError("rebuilt an image whose definition did not change")

    monkeypatch.setattr(build, "_docker_build", no_build)
    monkeypatch.setattr(build, "choose_base", no_build)
    lines: list[str] = []
    started = time.monotonic()
    again = build_image(client, base="offline", force=False, progress=lines.append, tag=built.tag)
    assert time.monotonic() - started < 2
    assert again.id == built.image_id
    assert lines == [f"{built.tag} is current (definition unchanged); reusing it"]
    with pytest.raises(AssertionError, match="rebuilt"):
        build_image(client, base="offline", force=True, tag=built.tag)


@pytest.mark.docker
def test_an_image_failing_its_check_is_never_tagged(
    client: docker.DockerClient, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = throwaway_tag("broken")
    monkeypatch.setattr(build, "CHECK_SCRIPT", "node --version; echo broken >&2; exit 7")
    try:
        with pytest.raises(BuildError, match="failed its check") as failure:
            build_image(client, base="offline", force=False, tag=tag)
        assert "broken" in failure.value.log_tail
        assert image.find_image(client, tag) is None
    finally:
        untag(client, tag)


@pytest.mark.docker
def test_sandbox_build_command_reports_a_current_image(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image, "image_tag", lambda: built.tag)
    monkeypatch.setattr(build, "image_tag", lambda: built.tag)
    result = invoke("sandbox", "build")
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"current {built.tag} (")
    assert last.endswith(" s")
    assert " MB) in " in last


# -- doctor ------------------------------------------------------------------


def test_doctor_without_an_engine_exits_3_naming_address_and_fix() -> None:
    address = "unix:///nonexistent.sock"
    result = invoke("doctor", env={"DOCKER_HOST": address})
    assert result.exit_code == 3, result.output
    assert f"FAIL engine          cannot reach the Docker engine at {address}" in result.stdout
    assert f"fix: {ENGINE_FIX}" in result.stdout
    assert f"executor: error: cannot reach the Docker engine at {address}" in result.stderr
    assert ENGINE_FIX in result.stderr

    as_json = invoke("doctor", "--json", env={"DOCKER_HOST": address})
    assert as_json.exit_code == 3
    report = json.loads(as_json.stdout)
    engine_check = next(c for c in report["checks"] if c["name"] == "engine")
    assert report["ok"] is False
    assert engine_check["status"] == "fail"
    assert address in engine_check["detail"]
    assert engine_check["fix"] == ENGINE_FIX


@pytest.mark.docker
def test_doctor_with_the_engine_passes_the_engine_check(client: docker.DockerClient) -> None:
    result = invoke("doctor", "--json")
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["engine"]["status"] == "ok"
    assert client.version()["Version"] in checks["engine"]["detail"]
    assert {"image", "stale images", "warm sandboxes", "orphans", "docker disk", "home disk"} <= set(checks)
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert report["ok"] is (not failed)
    assert result.exit_code == (1 if failed else 0)


@pytest.mark.docker
def test_doctor_fails_on_an_orphan_and_names_prune(client: docker.DockerClient, built: Built) -> None:
    dead_owner = f"{labels.owner().split(':')[0]}:4194305:1"  # above any pid_max: never alive
    # Any other executor process starting meanwhile (parallel tests) reaps the orphan, as it should:
    # try again until doctor ran while it was there.
    for _ in range(5):
        name = f"executor-test-orphan-{uuid.uuid4().hex[:10]}"
        container = client.containers.create(
            built.image_id,
            ["true"],
            name=name,
            network_mode="none",
            labels={labels.APP: labels.APP_VALUE, labels.PURPOSE: labels.COLD, labels.OWNER: dead_owner},
        )
        try:
            result = invoke("doctor")
            container.reload()  # NotFound: reaped by another process while doctor ran
        except docker.errors.NotFound:
            continue
        finally:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.remove(force=True)
        assert result.exit_code == 1, result.output
        line = next(line for line in result.stdout.splitlines() if line.startswith("FAIL orphans"))
        assert name in line or "more" in line
        assert "fix: executor sandbox prune" in result.stdout
        return
    pytest.fail("the orphan was reaped by other processes every time before doctor could see it")


# -- failures name the step and the fix --------------------------------------


@pytest.mark.docker
def test_a_failing_build_step_names_the_step_and_keeps_its_output(
    client: docker.DockerClient, built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {build.offline_base_tag()}\nRUN echo apt-went-wrong; exit 3\n", encoding="utf-8"
    )
    monkeypatch.setattr(build, "IMAGE_DIR", tmp_path)
    with pytest.raises(BuildError, match=r"failed in Step 2/\d+ \(RUN\): .*non-zero code: 3") as failure:
        build._docker_build(client, build.offline_base_tag(), lambda line: None, nocache=True, pull=False)
    assert "apt-went-wrong" in failure.value.log_tail
    assert failure.value.hint is not None
    assert "executor sandbox build" in failure.value.hint


@pytest.mark.docker
def test_an_unreachable_base_points_at_the_offline_build(client: docker.DockerClient) -> None:
    # A registry on a closed loopback port: the pull fails at once, and nothing leaves the host.
    with pytest.raises(BuildError, match=r"failed in Step 2/\d+ \(FROM\)") as failure:
        build._docker_build(client, "127.0.0.1:9/nothing:here", lambda line: None, nocache=False, pull=False)
    assert failure.value.hint is not None
    assert "executor sandbox build --base offline" in failure.value.hint


@pytest.mark.docker
def test_offline_base_failure_shows_debootstrap_output(
    client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = build.can_debootstrap()
    if reason is not None:
        pytest.skip(f"this host cannot make an offline base: {reason}")
    monkeypatch.setenv("MIRROR", "http://127.0.0.1:9/debian")  # closed loopback port
    tag = f"{build.BASE_REPOSITORY}:test-{uuid.uuid4().hex[:10]}"
    with pytest.raises(BuildError, match="debootstrap failed") as failure:
        build.make_offline_base(client, tag=tag)
    assert any("127.0.0.1:9" in line for line in failure.value.log_tail)
    assert image.find_image(client, tag) is None


class FakeApi:
    """Records what a build asks the engine for; the engine has no default bridge."""

    def __init__(self) -> None:
        self.build_options: dict[str, object] = {}

    def inspect_network(self, name: str) -> None:
        raise docker.errors.NotFound(f"network {name} not found")

    def build(self, **options: object) -> Iterator[dict[str, object]]:
        self.build_options = options
        yield {"stream": "Step 1/2 : ARG BASE_IMAGE\n"}
        yield {"stream": "Step 2/2 : FROM "}  # a line split across chunks
        yield {"stream": "some/base\n ---> 0123\n"}
        yield {"aux": {"ID": "sha256:feed"}}


class FakeClient:
    def __init__(self) -> None:
        self.api = FakeApi()


def test_build_options_without_a_bridge_and_behind_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in build.PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:3128")
    fake = FakeClient()
    lines: list[str] = []
    image_id = build._docker_build(fake, "some/base", lines.append, nocache=False, pull=False)  # type: ignore[arg-type]
    assert image_id == "sha256:feed"
    assert lines == [
        "no default bridge network in the engine: building with network host",
        "Step 1/2 : ARG BASE_IMAGE",
        "Step 2/2 : FROM some/base",
    ]
    options = fake.api.build_options
    assert options["network_mode"] == "host"
    assert options["buildargs"] == {"BASE_IMAGE": "some/base", "https_proxy": "http://127.0.0.1:3128"}
    assert options["labels"] == {labels.DEFINITION: image.definition_hash(), labels.APP: labels.APP_VALUE}
    assert options["path"] == str(image.IMAGE_DIR)
    assert options["rm"] is options["forcerm"] is True


@pytest.mark.docker
def test_a_hanging_image_check_is_killed_at_our_deadline(
    client: docker.DockerClient, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build, "CHECK_SCRIPT", "sleep 60")
    monkeypatch.setattr(build, "CHECK_TIMEOUT", 1)
    started = time.monotonic()
    with pytest.raises(BuildError, match="timed out"):
        build.check_image(client, built.image_id)
    assert time.monotonic() - started < 15
