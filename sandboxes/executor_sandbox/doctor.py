"""``executor doctor``: whether sandboxes can run here, and the command that fixes what cannot.

Each check is ok, warn (works, but worth attention) or fail (something the
operator must fix before runs succeed), with the fixing command for the last two.
The checks only read: nothing here starts, stops or removes anything.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from executor.errors import InfrastructureError
from executor_sandbox import engine, labels
from executor_sandbox.image import definition_hash, find_image, image_tag

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

Status = Literal["ok", "warn", "fail"]
GIB = 1024**3
LOW_DISK_BYTES = 2 * GIB
PRUNE = "executor sandbox prune"
BUILD = "executor sandbox build"
ENGINE_FIX = "sudo scripts/ensure-docker.sh"
LISTED = 5  # names shown per check; the rest are counted


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def connect() -> tuple[Check, docker.DockerClient | None, InfrastructureError | None]:
    """The engine check, the client when it answered, and the error when it did not."""
    try:
        client = engine.connect()
        version = engine.call("read the engine version", client.version)
    except InfrastructureError as exc:
        return Check("engine", "fail", exc.message, ENGINE_FIX), None, exc
    detail = (
        f"{engine.address()}: Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"
    )
    return Check("engine", "ok", detail), client, None


def engine_checks(client: docker.DockerClient, *, home: Path, image_override: str | None) -> Iterator[Check]:
    """Every check after the engine answered, in the order they are shown."""
    from executor_sandbox.build import stale_images

    if image_override:
        if find_image(client, image_override) is None:
            yield Check(
                "image",
                "fail",
                f"{image_override} (sandbox.image in the config) is not present",
                "docker load it, or remove sandbox.image",
            )
        else:
            yield Check("image", "ok", f"{image_override} (sandbox.image in the config)")
    else:
        tag = image_tag()
        current = find_image(client, tag)
        if current is None:
            yield Check("image", "fail", f"{tag} (the current definition) is not built", BUILD)
        else:
            yield Check("image", "ok", f"{tag} is current ({_megabytes(current.attrs.get('Size', 0))})")
    stale = stale_images(client)
    if stale:
        names = [", ".join(img.tags) or img.short_id.removeprefix("sha256:") for img in stale]
        yield Check("stale images", "warn", f"{len(stale)} of older definitions: {_listing(names)}", PRUNE)
    else:
        yield Check("stale images", "ok", "none")
    yield _warm(client)
    yield _orphans(client)
    info = engine.call("read the engine's info", client.info)
    root = info.get("DockerRootDir")
    if root and engine.address().startswith("unix://") and Path(root).is_dir():
        yield disk_check("docker disk", Path(root), "free space: docker system prune, " + PRUNE)
    else:
        yield Check(
            "docker disk", "ok", f"not checked: the engine's root dir {root or '?'} is not on this host"
        )
    yield disk_check("home disk", home, "free space there, or point EXECUTOR_HOME at a larger disk")


def _containers(client: docker.DockerClient, purpose: str) -> list[Container]:
    label_filter = [f"{labels.APP}={labels.APP_VALUE}", f"{labels.PURPOSE}={purpose}"]
    return engine.call(
        f"list {purpose} sandboxes",
        lambda: client.containers.list(all=True, filters={"label": label_filter}, ignore_removed=True),
    )


def _warm(client: docker.DockerClient) -> Check:
    warm = _containers(client, labels.WARM)
    if not warm:
        return Check("warm sandboxes", "ok", "none (started on first use)")
    running = [c for c in warm if c.status == "running"]
    old = [c for c in warm if c.labels.get(labels.DEFINITION) != definition_hash()]
    detail = f"{len(warm)}, {len(running)} running, {len(warm) - len(old)} on the current definition"
    if len(running) == len(warm) and not old:
        return Check("warm sandboxes", "ok", detail)
    stopped = [_name(c) for c in warm if c.status != "running"]
    notes = [f"not running: {_listing(stopped)}"] if stopped else []
    notes += [f"older definition: {_listing([_name(c) for c in old])}"] if old else []
    return Check("warm sandboxes", "warn", f"{detail}; {'; '.join(notes)}", PRUNE)


def _orphans(client: docker.DockerClient) -> Check:
    cold = _containers(client, labels.COLD)
    orphans = [c for c in cold if labels.owner_is_gone(c.labels.get(labels.OWNER, ""))]
    if orphans:
        detail = f"{len(orphans)} left by executor processes that are gone: {_listing([_name(c) for c in orphans])}"
        return Check("orphans", "fail", detail, PRUNE)
    return Check("orphans", "ok", f"none ({len(cold)} one-shot sandboxes of live processes)")


def disk_check(name: str, path: Path, fix: str) -> Check:
    """Free space on the filesystem holding ``path`` (or its nearest existing parent)."""
    where = path
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return Check(name, "warn", f"cannot read free space of {path}: {exc.strerror or exc}", None)
    detail = f"{path}: {free / GIB:.1f} GiB free"
    if free < LOW_DISK_BYTES:
        return Check(name, "warn", f"{detail} (under {LOW_DISK_BYTES // GIB} GiB)", fix)
    return Check(name, "ok", detail)


def _megabytes(size: Any) -> str:
    return f"{int(size or 0) / 1e6:.0f} MB"


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED])
    return shown + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def _name(container: Container) -> str:
    return container.name or container.short_id
