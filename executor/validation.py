"""Gates 3 to 5 for one proposal: claims, static checks, sandbox validation, rollback proof.

Each plugin is called on its own with the files it claimed. A plugin that
raises turns into error diagnostics on its files (they are unvalidated), never
into a crash of the run; other plugins' results stay complete.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from executor.config import Settings
from executor.diagnostics import Diagnostic, stamp
from executor.errors import RefusedError
from executor.models import FileChange, Level
from executor.plugin_api import BaseTree, PluginContext, Rollback, SandboxContext
from executor.plugins import PluginError, Plugins

if TYPE_CHECKING:
    from executor_sandbox.pool import Sandboxes

SANDBOX_HOOKS = ("executor_sandbox_validate", "executor_build_rollback", "executor_prove_rollback")

#: progress(gate, plugin) is called as each plugin starts each gate; what it shows: ``at_work``.
Progress = Callable[[str, str], None]


def at_work(plugin: str, files: Sequence[FileChange], shown: int = 2) -> str:
    """A plugin and the files it works on, for the progress line: ``sql (a.sql, b.sql, +3 more)``."""
    paths = [f.path for f in files]
    more = f", +{len(paths) - shown} more" if len(paths) > shown else ""
    return f"{plugin} ({', '.join(paths[:shown])}{more})" if paths else plugin


class GateResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    ok: bool
    seconds: float
    skipped: bool = False
    message: str | None = Field(default=None, description="Why it failed: its own errors, the first named.")


def gate_message(errors: Sequence[Diagnostic]) -> str | None:
    """A failed gate's summary from the errors it found itself (None when it found none)."""
    if not errors:
        return None
    first = errors[0]
    return f"{len(errors)} error(s); first: {first.location()}: {first.message}"


class Failure(BaseModel):
    model_config = ConfigDict(frozen=True)

    plugin: str
    stage: str
    error: str


class ValidationReport(BaseModel):
    claims: dict[str, list[str]] = Field(description="path -> plugins that validated it")
    unvalidated: list[str] = Field(
        default_factory=list, description="Paths the operator lets pass unclaimed."
    )
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    gates: list[GateResult] = Field(default_factory=list)
    rollbacks: list[Rollback] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every gate passed and no plugin raised (a plugin that failed to load is in ``failures`` too)."""
        return all(gate.ok for gate in self.gates) and not any(f.stage != "load" for f in self.failures)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def reversible(self) -> bool:
        return all(rollback.reversible for rollback in self.rollbacks)


class UnvalidatedFilesError(RefusedError):
    """Files no plugin claims, and the operator's config does not let pass."""


def validate(
    files: Sequence[FileChange],
    base: BaseTree,
    plugins: Plugins,
    settings: Settings,
    sandboxes: Sandboxes | None,
    *,
    progress: Progress | None = None,
) -> ValidationReport:
    """Run the plugin gates; raises ``UnvalidatedFilesError`` before any check if a file is unclaimed.

    ``sandboxes=None`` stops after the static checks (no Docker needed).
    """
    run = _Run(files, base, plugins, settings, progress or (lambda gate, plugin: None))
    run.claim()
    run.gate("static", run.static_check)
    if sandboxes is not None:
        run.gate("sandbox", lambda: run.in_sandboxes(sandboxes))
        run.report.gates.append(run.rollback_gate())
    order = {f.path: index for index, f in enumerate(files)}
    run.report.diagnostics.sort(key=lambda d: (order.get(d.path or "", -1), d.line or 0, d.column or 0))
    return run.report


class _Run:
    def __init__(
        self,
        files: Sequence[FileChange],
        base: BaseTree,
        plugins: Plugins,
        settings: Settings,
        progress: Progress,
    ) -> None:
        self.files = list(files)
        self.base = base
        self.plugins = plugins
        self.settings = settings
        self.progress = progress
        self.claimed: dict[str, list[FileChange]] = {}
        self.broken: set[str] = set()  # plugins that raised: no further hook of theirs is called
        self.blocked: set[str] = set()
        self.report = ValidationReport(claims={}, failures=[Failure(**vars(f)) for f in plugins.failures])
        self.rollback_seconds = 0.0
        self.rollback_ran = False
        self.rollback_found: list[Diagnostic] = []

    def context(self, name: str) -> PluginContext:
        return PluginContext(base=self.base, options=self.settings.plugin.get(name, {}))

    def gate(self, name: str, body: Callable[[], list[Diagnostic]]) -> None:
        started = time.monotonic()
        found = body()
        self.add(found)
        ok = not any(d.is_error for d in found)
        seconds = time.monotonic() - started - (self.rollback_seconds if name == "sandbox" else 0.0)
        message = gate_message([d for d in found if d.is_error])
        self.report.gates.append(GateResult(name=name, ok=ok, seconds=round(seconds, 6), message=message))

    def add(self, diagnostics: Iterable[Diagnostic]) -> None:
        def key(d: Diagnostic) -> tuple[str, str | None, int | None, int | None] | None:
            located = d.is_error and d.line is not None and d.column is not None
            return (d.plugin, d.path, d.line, d.column) if located else None

        seen = {key(d) for d in self.report.diagnostics} - {None}  # from earlier gates only
        for diagnostic in diagnostics:
            where = key(diagnostic)
            if where is not None and where in seen:
                continue  # the server's error on the token a static check already named adds nothing
            self.report.diagnostics.append(diagnostic)

    # -- claims ----------------------------------------------------------------------------

    def claim(self) -> None:
        by_path = {f.path: f for f in self.files}
        crashed: list[str] = []
        for name in self.plugins.names:
            self.progress("claims", name)
            try:
                paths = self.plugins.collect(
                    name, "executor_claim_files", files=self.files, context=self.context(name)
                )
                strays = sorted({p for p in paths if p not in by_path})
                if strays:
                    raise PluginError(
                        name, "executor_claim_files", f"claimed paths not in the proposal: {strays}"
                    )
            except PluginError as exc:
                self.fail(exc)
                crashed.append(name)
                continue
            mine = [f for f in self.files if f.path in set(paths)]
            if mine:
                self.claimed[name] = mine
        for change in self.files:
            self.report.claims[change.path] = [n for n, fs in self.claimed.items() if change in fs]
        unclaimed = [f for f in self.files if not self.report.claims[f.path]]
        globs = self.settings.plugins.unvalidated
        allowed = [f.path for f in unclaimed if any(fnmatch.fnmatchcase(f.path, g) for g in globs)]
        refused = [f for f in unclaimed if f.path not in allowed]
        self.report.unvalidated = allowed
        if refused:
            listing = ", ".join(f"{f.path} ({f.language})" for f in refused)
            failed = [f.message() for f in self.plugins.failures] + [
                f"plugin {n!r} raised while claiming files" for n in crashed
            ]
            note = f"; note: {'; '.join(failed)}" if failed else ""
            raise UnvalidatedFilesError(
                f"no plugin validates {listing}{note}",
                hint="install a plugin for these files, or let them pass unvalidated with "
                '[plugins] unvalidated = ["<glob>"] in config.toml',
            )

    def fail(self, exc: PluginError) -> None:
        self.broken.add(exc.failure.plugin)
        self.report.failures.append(Failure(**vars(exc.failure)))

    def crashed(self, exc: PluginError) -> list[Diagnostic]:
        """A plugin that raised: every file it claimed is unvalidated."""
        self.fail(exc)
        name = exc.failure.plugin
        return stamp(
            (
                Diagnostic(
                    path=f.path,
                    severity=Level.ERROR,
                    code="plugin.crashed",
                    message=f"not validated: {exc.failure.message()}; fix or update the plugin, "
                    f"or deny it with [plugins] deny = [{name!r}]",
                )
                for f in self.claimed.get(name, [])
            ),
            name,
            self.files,
        )

    def checked(self, name: str, items: list[Any], hook: str) -> list[Diagnostic]:
        """A plugin's diagnostics, stamped; raises ``PluginError`` for a path it did not claim."""
        mine = {f.path for f in self.claimed[name]}
        strays = sorted(
            {str(d.path) for d in items if isinstance(d, Diagnostic) and d.path and d.path not in mine}
        )
        if strays:
            raise PluginError(name, hook, f"reported on paths it did not claim: {strays}")
        try:
            return stamp(items, name, self.files)
        except TypeError as exc:
            raise PluginError(name, hook, str(exc)) from exc

    # -- gates ------------------------------------------------------------------------------

    def static_check(self) -> list[Diagnostic]:
        found: list[Diagnostic] = []
        for name, files in self.claimed.items():
            self.progress("static", at_work(name, files))
            try:
                result = self.plugins.collect(
                    name, "executor_static_check", files=files, context=self.context(name)
                )
                diagnostics = self.checked(name, result, "executor_static_check")
            except PluginError as exc:
                found += self.crashed(exc)
                continue
            if any(d.blocks_sandbox for d in diagnostics):
                self.blocked.add(name)
            found += diagnostics
        return found

    def in_sandboxes(self, sandboxes: Sandboxes) -> list[Diagnostic]:
        found: list[Diagnostic] = []
        for name, files in self.claimed.items():
            if name in self.broken or name in self.blocked:
                continue
            if not set(SANDBOX_HOOKS) & set(self.plugins.hooks_of(name)):
                continue
            self.progress("sandbox", at_work(name, files))
            with sandboxes.use() as use:
                context = SandboxContext(base=self.base, options=self.settings.plugin.get(name, {}), use=use)
                try:
                    result = self.plugins.collect(
                        name, "executor_sandbox_validate", files=files, context=context
                    )
                    diagnostics = self.checked(name, result, "executor_sandbox_validate")
                except PluginError as exc:
                    found += self.crashed(exc)
                    continue
                found += diagnostics
                if not any(d.is_error for d in diagnostics):
                    rollback_started = time.monotonic()
                    self.rollback_found += self.rollback(name, files, context)  # gate 5's, not this one's
                    self.rollback_seconds += time.monotonic() - rollback_started
        return found

    def rollback(self, name: str, files: list[FileChange], context: SandboxContext) -> list[Diagnostic]:
        self.rollback_ran = True
        self.progress("rollback", at_work(name, files))
        try:
            rollback = self.plugins.call(name, "executor_build_rollback", files=files, context=context)
            if rollback is None:
                return []
            if not isinstance(rollback, Rollback):
                raise PluginError(
                    name, "executor_build_rollback", f"returned {type(rollback).__name__}, not Rollback"
                )
            rollback = rollback.model_copy(update={"plugin": name, "proven": False})
            if not rollback.reversible:
                self.report.rollbacks.append(rollback)
                return []
            result = self.plugins.collect(
                name, "executor_prove_rollback", rollback=rollback, files=files, context=context
            )
            diagnostics = self.checked(name, result, "executor_prove_rollback")
        except PluginError as exc:
            return self.crashed(exc)
        proven = not any(d.is_error for d in diagnostics)
        self.report.rollbacks.append(rollback.model_copy(update={"proven": proven}))
        return diagnostics

    def rollback_gate(self) -> GateResult:
        """Passes when every plugin rollback is reversible and proven.

        Skipped when no plugin reached the rollback step, or an earlier gate
        failed (what it proved would not be rolled out); its findings are
        reported either way.
        """
        earlier_ok = all(g.ok for g in self.report.gates)
        found = list(self.rollback_found)
        for rollback in self.report.rollbacks:
            if not rollback.reversible:
                found += stamp(
                    [
                        Diagnostic(
                            severity=Level.ERROR,
                            code="rollback.irreversible",
                            message="cannot be rolled back without a data snapshot: "
                            + "; ".join(rollback.reasons),
                        )
                    ],
                    rollback.plugin,
                    self.files,
                )
        self.add(found)
        errors = [d for d in found if d.is_error]
        ok = earlier_ok and not errors and all(r.reversible and r.proven for r in self.report.rollbacks)
        message = gate_message(errors)
        if not ok and earlier_ok and message is None:
            message = "a rollback was not proven: " + ", ".join(
                r.plugin for r in self.report.rollbacks if not r.proven
            )
        return GateResult(
            name="rollback",
            ok=ok,
            seconds=round(self.rollback_seconds, 6),
            skipped=not self.rollback_ran or not earlier_ok,
            message=message,
        )
