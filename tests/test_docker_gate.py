"""The CI rule: Docker tests may skip on a laptop without an engine, never in CI."""

from __future__ import annotations

import pytest

TESTS = """
import pytest

@pytest.mark.docker
def test_needs_engine():
    pytest.skip("no Docker engine answers")

def test_other_skip():
    pytest.skip("not about docker")
"""


@pytest.mark.parametrize(("required", "failed", "skipped"), [("1", 1, 1), ("", 0, 2)])
def test_docker_skips_fail_only_when_required(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, required: str, failed: int, skipped: int
) -> None:
    monkeypatch.setenv("EXECUTOR_REQUIRE_DOCKER", required)
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("-p", "tests.docker_gate", "-m", "docker or not docker")
    result.assert_outcomes(failed=failed, skipped=skipped)
    if failed:
        result.stdout.fnmatch_lines(
            ["*EXECUTOR_REQUIRE_DOCKER=1 but this Docker test was skipped*no Docker engine*"]
        )
