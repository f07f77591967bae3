"""The Docker engine: one client, bounded retries, and errors a user can act on.

Every engine call of the sandbox runtime goes through ``call``: transient
failures (connection refused or reset, a few daemon 5xx) are retried with
tenacity, bounded in count and time; anything else fails at once. Failures that
remain become ``InfrastructureError`` naming the engine address and the fix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import tenacity

from executor.errors import InfrastructureError

if TYPE_CHECKING:
    import docker

T = TypeVar("T")

START_ENGINE_HINT = "start one with: sudo scripts/ensure-docker.sh (or point DOCKER_HOST at a running engine)"
# Daemon messages of a 500 that are known to pass (the engine was busy, not wrong).
TRANSIENT_500 = ("connection reset", "i/o timeout", "broken pipe", "resource temporarily unavailable")
RETRY_ATTEMPTS = 4
RETRY_SECONDS = 15.0
API_TIMEOUT = 60


def address() -> str:
    """The engine address the client uses, for messages."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def is_transient(exc: BaseException) -> bool:
    """Whether retrying ``exc`` can help: never a 4xx, a container's own failure or a timeout of ours."""
    import docker.errors
    import requests.exceptions

    if isinstance(exc, requests.exceptions.ConnectionError):
        return True
    if isinstance(exc, docker.errors.APIError) and exc.status_code is not None:
        if exc.status_code in (502, 503, 504):
            return True
        if exc.status_code == 500:
            text = str(exc.explanation or "").lower()
            return any(marker in text for marker in TRANSIENT_500)
    return False


def call(action: str, fn: Callable[[], T]) -> T:
    """Run one engine call with bounded retries; ``action`` says what it was for messages."""
    import docker.errors
    import requests.exceptions

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS) | tenacity.stop_after_delay(RETRY_SECONDS),
        wait=tenacity.wait_exponential(multiplier=0.1, max=2.0),
        reraise=True,
    )
    try:
        return retrying(fn)
    except requests.exceptions.ConnectionError as exc:
        raise InfrastructureError(
            f"cannot reach the Docker engine at {address()} while trying to {action}: {_reason(exc)}",
            hint=START_ENGINE_HINT,
        ) from exc
    except docker.errors.DockerException as exc:
        if is_transient(exc):
            raise InfrastructureError(
                f"the Docker engine at {address()} kept failing to {action}: {_reason(exc)}",
                hint="check the engine's health (docker info; its log) and retry",
            ) from exc
        raise


def remove_container(
    client: docker.DockerClient, container_id: str, action: str = "remove a sandbox"
) -> None:
    """Remove a container and its anonymous volumes; returns once it is gone.

    A container already gone is fine. So is one whose removal another process
    (a concurrent prune, the engine's auto-remove) already began: the engine
    answers 409 "already in progress", and we wait until the removal ends, so
    a caller can reuse the name at once.
    """
    import docker.errors
    import requests.exceptions

    try:
        call(action, lambda: client.api.remove_container(container_id, force=True, v=True))
        return
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        if exc.status_code != 409 or "in progress" not in str(exc.explanation or ""):
            raise
    # Not through call(): a read timeout here is no engine failure, the removal is just slow.
    with contextlib.suppress(docker.errors.NotFound, requests.exceptions.RequestException):
        client.api.wait(container_id, timeout=API_TIMEOUT, condition="removed")


def connect() -> docker.DockerClient:
    """A client for the local engine (``DOCKER_HOST`` honoured), checked to answer."""
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=API_TIMEOUT)
    except docker.errors.DockerException as exc:
        raise InfrastructureError(
            f"cannot reach the Docker engine at {address()}: {_reason(exc)}", hint=START_ENGINE_HINT
        ) from exc
    call("answer a ping", client.ping)
    return client


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    # requests nests the useful part ("Connection refused") deep in its message.
    for marker in (
        "Connection refused",
        "No such file or directory",
        "Connection reset",
        "Permission denied",
    ):
        if marker in text:
            return marker
    return text.splitlines()[0][:300] if text else type(exc).__name__
