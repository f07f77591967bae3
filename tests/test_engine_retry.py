"""The retry policy for engine calls: transient failures retried, bounded; others at once."""

from __future__ import annotations

import docker.errors
import pytest
import requests
from executor_sandbox import engine

from executor.errors import InfrastructureError


def api_error(status: int, explanation: str = "") -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError("engine said no", response=response, explanation=explanation)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (requests.exceptions.ConnectionError("Connection reset by peer"), True),
        (api_error(503), True),
        (api_error(500, "read unix @->/run/docker.sock: read: connection reset by peer"), True),
        (api_error(500, "OCI runtime create failed: invalid mount"), False),
        (api_error(404, "No such container"), False),
        (api_error(409, "Conflict. The container name is already in use"), False),
        (docker.errors.ContainerError(None, 1, "cmd", "img", "boom"), False),  # type: ignore[arg-type]
    ],
)
def test_only_transient_failures_are_retried(exc: Exception, transient: bool) -> None:
    assert engine.is_transient(exc) is transient


def test_transient_failures_are_retried_then_succeed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "RETRY_SECONDS", 5.0)
    failures = [requests.exceptions.ConnectionError("reset"), api_error(502)]

    def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    assert engine.call("do a thing", flaky) == "done"
    assert not failures


def test_retries_are_bounded_and_end_in_an_infrastructure_error() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        raise requests.exceptions.ConnectionError("Connection refused")

    with pytest.raises(InfrastructureError) as caught:
        engine.call("list containers", down)
    assert len(calls) == engine.RETRY_ATTEMPTS
    assert "list containers" in caught.value.message
    assert engine.address() in caught.value.message


def test_a_4xx_is_not_retried() -> None:
    calls = []

    def missing() -> None:
        calls.append(1)
        raise api_error(404, "No such image")

    with pytest.raises(docker.errors.APIError):
        engine.call("find an image", missing)
    assert len(calls) == 1
