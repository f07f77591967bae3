"""Fixtures for tests that need the real Docker engine and the built sandbox image.

Without an engine or image the tests skip, which ``tests.docker_gate`` turns
into a failure under ``EXECUTOR_REQUIRE_DOCKER=1`` (CI).
"""

from __future__ import annotations

from collections.abc import Callable

import docker
import pytest
from executor_sandbox import engine
from executor_sandbox.image import find_image, image_tag
from executor_sandbox.pool import Sandboxes

from executor.config import SandboxSettings
from executor.errors import InfrastructureError


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        return engine.connect()
    except InfrastructureError as exc:
        pytest.skip(f"no Docker engine: {exc}")


@pytest.fixture(scope="session")
def sandbox_image(docker_client: docker.DockerClient) -> str:
    if find_image(docker_client) is None:
        pytest.skip(f"sandbox image {image_tag()} not built (executor sandbox build)")
    return image_tag()


@pytest.fixture
def sandboxes(docker_client: docker.DockerClient, sandbox_image: str) -> Sandboxes:
    """The warm pool with default limits (shared with every other user of this engine)."""
    return Sandboxes(SandboxSettings(command_timeout=20), docker_client)


@pytest.fixture
def make_pool(docker_client: docker.DockerClient, sandbox_image: str) -> Callable[..., Sandboxes]:
    """Pools with other limits, e.g. ``make_pool(memory_mib=256)`` (tests use them cold, one-shot)."""

    def make(**limits: object) -> Sandboxes:
        return Sandboxes(SandboxSettings.model_validate(limits), docker_client)

    return make
