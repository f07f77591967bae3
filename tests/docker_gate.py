"""pytest plugin: with EXECUTOR_REQUIRE_DOCKER=1 (CI), a skipped Docker test fails.

A missing engine must never turn the sandbox tests green by skipping them.
Docker tests carry the ``docker`` marker.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if (
        report.skipped
        and os.environ.get("EXECUTOR_REQUIRE_DOCKER") == "1"
        and item.get_closest_marker("docker") is not None
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"EXECUTOR_REQUIRE_DOCKER=1 but this Docker test was skipped: {reason}"
    return report
