"""The sandbox image: its definition, the tag derived from it, and finding it.

The tag is a hash of the definition (every file in ``image/`` that goes into
the build), so a changed definition means a new image and an unchanged one is
reused. Nothing here pulls: a missing image is an error that names the fix,
because ``containers.run`` would otherwise pull silently from a registry.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from executor.errors import InfrastructureError
from executor_sandbox import engine

if TYPE_CHECKING:
    import docker
    from docker.models.images import Image

IMAGE_DIR = Path(__file__).resolve().parent / "image"
REPOSITORY = "proposal-executor/sandbox"
# The build inputs; offline-base.sh only makes a base and is not one of them.
DEFINITION_FILES = ("Dockerfile", "harness.py")
BUILD_HINT = "build it with: executor sandbox build"


@cache
def definition_hash() -> str:
    digest = hashlib.sha256()
    for name in DEFINITION_FILES:
        data = (IMAGE_DIR / name).read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def image_tag() -> str:
    return f"{REPOSITORY}:{definition_hash()[:12]}"


def find_image(client: docker.DockerClient, tag: str | None = None) -> Image | None:
    """The image with this tag (default: the current definition's), or None; never pulls."""
    import docker.errors

    try:
        return engine.call("look up the sandbox image", lambda: client.images.get(tag or image_tag()))
    except docker.errors.ImageNotFound:
        return None


def current_image(client: docker.DockerClient, override: str | None = None) -> Image:
    """The image sandboxes run: the operator's override, else the current definition's build."""
    image = find_image(client, override)
    if image is None:
        if override:
            raise InfrastructureError(
                f"sandbox image {override!r} (sandbox.image in the config) is not present in the engine at {engine.address()}",
                hint="load or build that image, or remove sandbox.image to use the built-in definition",
            )
        raise InfrastructureError(
            f"sandbox image {image_tag()} is not built in the engine at {engine.address()}", hint=BUILD_HINT
        )
    return image
