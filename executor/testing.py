"""Pytest helpers for plugin authors (and this project's tests).

Use in a plugin's tests with ``pytest_plugins = ["executor.testing"]``:

- ``executor_plugins``: the built-in plugins only (installed third-party
  plugins never change a test's outcome);
- ``register_plugin(plugins, plugin, name)``: register a plugin object for the
  duration of a ``with`` block, e.g. the one under test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from executor.plugins import Plugins, load_plugins


@contextlib.contextmanager
def register_plugin(
    plugins: Plugins, plugin: object, name: str, *, version: str = "test"
) -> Iterator[object]:
    """Register ``plugin`` as ``name``; unregistered when the block ends."""
    plugins.register(plugin, name, distribution=f"{name} (test)", version=version)
    try:
        yield plugin
    finally:
        plugins.unregister(name)


@pytest.fixture
def executor_plugins() -> Plugins:
    """A fresh plugin set with only proposal-executor's built-in plugins loaded."""
    plugins = load_plugins(third_party=False)
    if plugins.failures:
        raise AssertionError(
            "built-in plugins failed to load: " + "; ".join(f.message() for f in plugins.failures)
        )
    return plugins
