"""Finding, loading and calling plugins: the host side of the hooks.

``load_plugins()`` is the factory: nothing is loaded at import time. Plugins
come from the entry-point group ``executor.plugins``, the built-in ones too
(this distribution lists its own). A plugin that fails to load is recorded
with its error and skipped; one that raises in a hook is reported by name by
the caller of ``Plugins.call``.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from executor import hookspecs
from executor.config import PluginSettings

ENTRY_POINT_GROUP = "executor.plugins"
OWN_DISTRIBUTION = "proposal-executor"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    distribution: str
    builtin: bool
    hooks: tuple[str, ...]
    languages: tuple[str, ...]


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or raised in a hook."""

    plugin: str
    stage: str
    error: str

    def message(self) -> str:
        return f"plugin {self.plugin!r} failed in {self.stage}: {self.error}"


class PluginError(Exception):
    """A plugin raised, or returned something the hook does not allow."""

    def __init__(self, plugin: str, hook: str, error: str) -> None:
        super().__init__(f"plugin {plugin!r} failed in {hook}: {error}")
        self.failure = PluginFailure(plugin, hook, error)


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@dataclass
class Plugins:
    """The loaded plugins of one process, and the failures met while loading them."""

    manager: pluggy.PluginManager
    versions: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (distribution, version)
    failures: list[PluginFailure] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.manager.list_name_plugin() if name in self.versions]

    def register(self, plugin: object, name: str, *, distribution: str = "", version: str = "") -> None:
        """Register a plugin object; raises ``PluginError`` if its hooks do not match the specs."""
        try:
            self.manager.register(plugin, name=name)
        except Exception as exc:
            detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise PluginError(name, "registration", f"{type(exc).__name__}: {detail}") from exc
        unknown = [
            impl.function.__name__
            for caller in self.manager.get_hookcallers(plugin) or []
            if caller.spec is None
            for impl in caller.get_hookimpls()
            if impl.plugin is plugin
        ]
        if unknown:
            self.manager.unregister(plugin)
            raise PluginError(
                name, "registration", f"unknown hook(s) {', '.join(sorted(unknown))}; see executor.hookspecs"
            )
        self.versions[name] = (distribution, version)

    def unregister(self, name: str) -> None:
        self.manager.unregister(name=name)
        self.versions.pop(name, None)

    def hooks_of(self, name: str) -> tuple[str, ...]:
        plugin = self.manager.get_plugin(name)
        return tuple(sorted(caller.name for caller in self.manager.get_hookcallers(plugin) or []))

    def call(self, name: str, hook: str, **kwargs: Any) -> Any:
        """Call one plugin's implementation of ``hook`` (None or [] if it has none).

        Any exception (``SystemExit`` too) becomes ``PluginError`` naming the plugin and the hook.
        """
        others = [plugin for other, plugin in self.manager.list_name_plugin() if other != name]
        caller = self.manager.subset_hook_caller(hook, remove_plugins=others)
        try:
            return caller(**kwargs)
        except (Exception, SystemExit) as exc:
            raise PluginError(name, hook, describe(exc)) from exc

    def collect(self, name: str, hook: str, **kwargs: Any) -> list[Any]:
        """Call a collected hook of one plugin and read every item it returned (a generator too).

        Whatever goes wrong while reading (an exception midway, a result that
        is not iterable) is the plugin's error, reported as ``PluginError``.
        """
        results = self.call(name, hook, **kwargs)
        try:
            return [item for result in results if result is not None for item in result]
        except (Exception, SystemExit) as exc:
            raise PluginError(name, hook, describe(exc)) from exc

    def info(self) -> list[PluginInfo]:
        found = []
        for name in self.names:
            distribution, version = self.versions[name]
            try:
                languages = [str(language) for language in self.collect(name, "executor_languages")]
            except PluginError as exc:
                languages = []
                if exc.failure not in self.failures:
                    self.failures.append(exc.failure)
            found.append(
                PluginInfo(
                    name=name,
                    version=version,
                    distribution=distribution,
                    builtin=distribution == OWN_DISTRIBUTION,
                    hooks=self.hooks_of(name),
                    languages=tuple(languages),
                )
            )
        return found


def new_manager(*, trace: bool = False) -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    if trace:
        manager.trace.root.setwriter(_trace_writer)
        manager.enable_tracing()
    return manager


def _trace_writer(message: str) -> None:
    import sys

    sys.stderr.write(message)


def load_plugins(settings: PluginSettings | None = None, *, third_party: bool = True) -> Plugins:
    """Load the plugins the operator allows.

    ``third_party=False`` loads only this distribution's built-in plugins
    (what tests use, so an installed plugin never changes their outcome).
    """
    settings = settings or PluginSettings()
    plugins = Plugins(new_manager(trace=settings.trace))
    for entry_point in _entry_points():
        name = entry_point.name
        dist = entry_point.dist
        distribution = dist.metadata["Name"] if dist is not None else ""
        version = dist.version if dist is not None else ""
        if not third_party and distribution != OWN_DISTRIBUTION:
            continue
        if name in plugins.versions or any(f.plugin == name for f in plugins.failures):
            source = f" (from {distribution})" if distribution else ""
            plugins.failures.append(
                PluginFailure(name, "load", f"a second plugin named {name!r}{source} is ignored")
            )
            continue
        if name in settings.deny or (settings.allow is not None and name not in settings.allow):
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:
            plugins.failures.append(
                PluginFailure(name, "load", f"cannot import {entry_point.value}: {describe(exc)}")
            )
            continue
        try:
            plugins.register(plugin, name, distribution=distribution, version=version)
        except PluginError as exc:
            plugins.failures.append(exc.failure)
    return plugins


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    # Built-ins first, so their names win over a third party's duplicate.
    return sorted(
        found, key=lambda ep: (ep.dist is None or ep.dist.metadata["Name"] != OWN_DISTRIBUTION, ep.name)
    )
