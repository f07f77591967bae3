"""The plugin machinery: loading, registering and calling plugins, and what the host makes of their results.

Temporary plugins are objects with ``@hookimpl`` methods, registered with
``executor.testing.register_plugin`` into a plugin set of their own. The gates
run static only (``sandboxes=None``) except where a test is about the sandbox
hooks: there ``FakeSandboxes`` hands out uses no plugin here touches, so no
Docker is needed.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from executor import hookspecs
from executor.config import PluginSettings, Settings
from executor.diagnostics import Diagnostic
from executor.hookspecs import hookimpl
from executor.models import FileChange, Level
from executor.plugin_api import EmptyTree, PluginContext, Rollback, SandboxContext
from executor.plugins import PluginError, PluginFailure, Plugins, load_plugins, new_manager
from executor.testing import register_plugin
from executor.validation import Failure, UnvalidatedFilesError, ValidationReport, at_work, validate
from tests.conftest import ROOT, Cli

DOCS = ROOT / "docs" / "plugins.md"
HOOKS = sorted(name for name, value in vars(hookspecs).items() if hasattr(value, "executor_spec"))
# The order the host calls a plugin's validation hooks in.
ORDER = [
    "executor_claim_files",
    "executor_static_check",
    "executor_sandbox_validate",
    "executor_build_rollback",
    "executor_prove_rollback",
]
BUILTINS = ["javascript", "python", "sql"]


def change(path: str, text: str = "x = 1\n", header_line: int = 1) -> FileChange:
    """A proposal file whose content starts on the report line after ``header_line``."""
    lines = text.count("\n") + (not text.endswith("\n"))
    return FileChange(
        path=path,
        content=text.encode(),
        header_line=header_line,
        line_start=header_line + 1,
        line_end=header_line + max(lines, 1),
    )


def error(path: str | None, line: int | None = 1, column: int | None = 1, code: str = "t.bad") -> Diagnostic:
    return Diagnostic(path=path, line=line, column=column, severity=Level.ERROR, code=code, message=code)


# -- temporary plugins -------------------------------------------------------------------------


class Finds:
    """Claims the files ending in ``suffix``; its static check finds one ``found`` per file, at 1:1."""

    def __init__(self, suffix: str, severity: Level = Level.WARNING) -> None:
        self.suffix = suffix
        self.severity = severity

    @hookimpl
    def executor_languages(self) -> list[str]:
        return [self.suffix.lstrip(".")]

    @hookimpl
    def executor_claim_files(self, files: Sequence[FileChange]) -> list[str]:
        return [f.path for f in files if f.path.endswith(self.suffix)]

    @hookimpl
    def executor_static_check(self, files: Sequence[FileChange]) -> list[Diagnostic]:
        return [
            Diagnostic(path=f.path, line=1, column=1, severity=self.severity, code="t.found", message="found")
            for f in files
        ]


class Raises:
    """Claims ``*.cfg`` and implements every hook; raises in the one named (or ``raises``, if given)."""

    def __init__(self, hook: str, raises: Callable[[], None] | None = None) -> None:
        self.hook = hook
        self.raises = raises
        self.called: list[str] = []

    def reached(self, hook: str) -> None:
        self.called.append(hook)
        if hook == self.hook:
            if self.raises is not None:
                self.raises()
            raise RuntimeError(f"boom in {hook}\nsecond line")

    @hookimpl
    def executor_languages(self) -> list[str]:
        self.reached("executor_languages")
        return ["cfg"]

    @hookimpl
    def executor_claim_files(self, files: Sequence[FileChange]) -> list[str]:
        self.reached("executor_claim_files")
        return [f.path for f in files if f.path.endswith(".cfg")]

    @hookimpl
    def executor_static_check(self) -> list[Diagnostic]:
        self.reached("executor_static_check")
        return []

    @hookimpl
    def executor_sandbox_validate(self) -> list[Diagnostic]:
        self.reached("executor_sandbox_validate")
        return []

    @hookimpl
    def executor_build_rollback(self) -> Rollback:
        self.reached("executor_build_rollback")
        return Rollback(reversible=True)

    @hookimpl
    def executor_prove_rollback(self) -> list[Diagnostic]:
        self.reached("executor_prove_rollback")
        return []


class Returns:
    """Claims ``*.cfg``; its static check returns ``result`` as is."""

    def __init__(self, result: Any) -> None:
        self.result = result

    @hookimpl
    def executor_claim_files(self, files: Sequence[FileChange]) -> list[str]:
        return [f.path for f in files if f.path.endswith(".cfg")]

    @hookimpl
    def executor_static_check(self) -> Any:
        return self.result


class ClaimsThis:
    """Claims exactly what it is told to, in the proposal or not."""

    def __init__(self, claim: Any) -> None:
        self.claim = claim

    @hookimpl
    def executor_claim_files(self) -> Any:
        return self.claim


class Yields:
    """Claims ``*.cfg``; its static check is a generator that raises after its first diagnostic."""

    @hookimpl
    def executor_claim_files(self, files: Sequence[FileChange]) -> Iterator[str]:
        yield from (f.path for f in files if f.path.endswith(".cfg"))

    @hookimpl
    def executor_static_check(self, files: Sequence[FileChange]) -> Iterator[Diagnostic]:
        yield error(files[0].path)
        raise RuntimeError("boom while iterating")


class Sandboxed:
    """Claims ``*.cfg`` and goes through every sandbox hook, recording what it saw."""

    def __init__(
        self,
        *,
        static: Sequence[Diagnostic] = (),
        validation: Sequence[Diagnostic] = (),
        rollback: Rollback | None = None,
        proof: Sequence[Diagnostic] = (),
    ) -> None:
        self.static, self.validation, self.rollback, self.proof = static, validation, rollback, proof
        self.seen: list[tuple[str, int, dict[str, Any]]] = []
        self.proving: Rollback | None = None

    @hookimpl
    def executor_claim_files(self, files: Sequence[FileChange]) -> list[str]:
        return [f.path for f in files if f.path.endswith(".cfg")]

    @hookimpl
    def executor_static_check(self) -> Sequence[Diagnostic]:
        return self.static

    @hookimpl
    def executor_sandbox_validate(self, context: SandboxContext) -> Sequence[Diagnostic]:
        context.state["applied"] = True
        self.seen.append(("executor_sandbox_validate", id(context), dict(context.state)))
        return self.validation

    @hookimpl
    def executor_build_rollback(self, context: SandboxContext) -> Rollback | None:
        self.seen.append(("executor_build_rollback", id(context), dict(context.state)))
        return self.rollback

    @hookimpl
    def executor_prove_rollback(self, rollback: Rollback, context: SandboxContext) -> Sequence[Diagnostic]:
        self.proving = rollback
        self.seen.append(("executor_prove_rollback", id(context), dict(context.state)))
        return self.proof


class Options:
    """Claims ``*.cfg`` and records the options each hook got."""

    def __init__(self) -> None:
        self.options: list[dict[str, Any]] = []

    @hookimpl
    def executor_claim_files(self, files: Sequence[FileChange], context: PluginContext) -> list[str]:
        self.options.append(dict(context.options))
        return [f.path for f in files if f.path.endswith(".cfg")]

    @hookimpl
    def executor_static_check(self, context: PluginContext) -> list[Diagnostic]:
        self.options.append(dict(context.options))
        return []


class UnknownHook:
    @hookimpl
    def executor_check_files(self) -> list[Diagnostic]:
        return []


class WrongParameter:
    @hookimpl
    def executor_static_check(self, files: Sequence[FileChange], ctx: PluginContext) -> list[Diagnostic]:
        return []


# Entry points resolve ``module:attribute``: these are what the fake ones below load.
LISTED = Finds(".cfg")
UNKNOWN = UnknownHook()

EXERCISED = [Finds, Raises, Returns, ClaimsThis, Yields, Sandboxed, Options]


class FakeSandboxes:
    """Stands in for ``executor_sandbox.pool.Sandboxes``: counts uses, whose sandbox nobody here touches."""

    def __init__(self) -> None:
        self.uses = 0

    @contextlib.contextmanager
    def use(self) -> Iterator[None]:
        self.uses += 1
        yield None


@pytest.fixture
def plugins() -> Plugins:
    """A plugin set with no plugin loaded: each test registers the ones it is about."""
    return Plugins(new_manager())


def static(
    files: Sequence[FileChange], plugins: Plugins, settings: Settings | None = None
) -> ValidationReport:
    return validate(files, EmptyTree(), plugins, settings or Settings(), sandboxes=None)


def sandboxed(files: Sequence[FileChange], plugins: Plugins, sandboxes: FakeSandboxes) -> ValidationReport:
    return validate(files, EmptyTree(), plugins, Settings(), cast(Any, sandboxes))


def gates(report: ValidationReport) -> list[tuple[str, bool]]:
    return [(gate.name, gate.ok) for gate in report.gates]


def crashed(plugin: str, path: str, hook: str, error: str) -> Diagnostic:
    return Diagnostic(
        plugin=plugin,
        path=path,
        severity=Level.ERROR,
        code="plugin.crashed",
        message=f"not validated: plugin {plugin!r} failed in {hook}: {error}; fix or update the plugin, "
        f"or deny it with [plugins] deny = [{plugin!r}]",
        report_line=1,
    )


# -- a plugin that raises ------------------------------------------------------------------------


@pytest.mark.parametrize("hook", ORDER)
def test_a_plugin_raising_in_a_hook_is_reported_by_name(plugins: Plugins, hook: str) -> None:
    """The plugin that raised is named; its files are unvalidated; the other plugin's results are complete."""
    broken = Raises(hook)
    sandboxes = FakeSandboxes()
    files = [change("a.cfg"), change("b.cfg"), change("c.ini")]
    with register_plugin(plugins, Finds(""), "good"), register_plugin(plugins, broken, "broken"):
        report = sandboxed(files, plugins, sandboxes)

    assert report.failures == [Failure(plugin="broken", stage=hook, error=f"RuntimeError: boom in {hook}")]
    assert broken.called == ORDER[: ORDER.index(hook) + 1]  # nothing of it runs after it raised
    good = [d for d in report.diagnostics if d.plugin == "good"]
    assert [(d.path, d.code) for d in good] == [(f.path, "t.found") for f in files]
    if hook == "executor_claim_files":
        assert report.claims == {"a.cfg": ["good"], "b.cfg": ["good"], "c.ini": ["good"]}
        assert not report.ok  # a plugin that raised may have dropped a check: never a pass
        return
    assert report.claims == {"a.cfg": ["good", "broken"], "b.cfg": ["good", "broken"], "c.ini": ["good"]}
    error = f"RuntimeError: boom in {hook}"
    assert [d for d in report.diagnostics if d.plugin == "broken"] == [
        crashed("broken", "a.cfg", hook, error),
        crashed("broken", "b.cfg", hook, error),
    ]
    rollback_hooks = ("executor_build_rollback", "executor_prove_rollback")
    failing_gate = {"executor_static_check": "static"}.get(
        hook, "rollback" if hook in rollback_hooks else "sandbox"
    )
    assert (failing_gate, False) in gates(report)
    assert sandboxes.uses == (0 if hook == "executor_static_check" else 1)  # "good" has no sandbox hooks


def test_a_plugin_raising_while_claiming_leaves_its_files_unclaimed(plugins: Plugins) -> None:
    with (
        register_plugin(plugins, Raises("executor_claim_files"), "broken"),
        pytest.raises(UnvalidatedFilesError) as refused,
    ):
        static([change("a.cfg")], plugins)
    assert refused.value.message == (
        "no plugin validates a.cfg (unknown); note: plugin 'broken' raised while claiming files"
    )


def test_a_plugin_raising_in_executor_languages_is_reported(plugins: Plugins) -> None:
    """`executor plugins` must say the plugin failed, not silently list no languages."""
    with register_plugin(plugins, Raises("executor_languages"), "broken"):
        (info,) = plugins.info()
    assert info.languages == ()
    assert plugins.failures == [
        PluginFailure("broken", "executor_languages", "RuntimeError: boom in executor_languages")
    ]


def test_a_generator_raising_midway_is_a_plugin_failure(plugins: Plugins) -> None:
    """Hooks return iterables: an exception while the host reads one is still the plugin's failure."""
    with register_plugin(plugins, Yields(), "lazy"):
        report = static([change("a.cfg")], plugins)
    assert report.failures == [
        Failure(plugin="lazy", stage="executor_static_check", error="RuntimeError: boom while iterating")
    ]
    assert [d.code for d in report.diagnostics] == ["plugin.crashed"]


def test_a_plugin_exiting_is_a_plugin_failure(plugins: Plugins) -> None:
    """A hook calling sys.exit (say, an in-process tool's main()) must not end the executor's run."""
    with register_plugin(plugins, Raises("executor_static_check", lambda: sys.exit(3)), "exits"):
        report = static([change("a.cfg")], plugins)
    assert report.failures == [Failure(plugin="exits", stage="executor_static_check", error="SystemExit: 3")]
    assert [d.code for d in report.diagnostics] == ["plugin.crashed"]


# -- a plugin returning what its hook does not allow ---------------------------------------------


@pytest.mark.parametrize(
    ("result", "error"),
    [
        ([error("b.ini")], "reported on paths it did not claim: ['b.ini']"),
        ([error("a.cfg"), "a.cfg:1: bad"], "expected Diagnostic, got str"),
        (42, "TypeError: 'int' object is not iterable"),
    ],
    ids=["path-not-claimed", "not-a-diagnostic", "not-iterable"],
)
def test_a_plugin_returning_what_its_hook_does_not_allow_fails(
    plugins: Plugins, result: Any, error: str
) -> None:
    files = [change("a.cfg"), change("b.ini")]
    with register_plugin(plugins, Returns(result), "odd"), register_plugin(plugins, Finds(".ini"), "ini"):
        report = static(files, plugins)
    assert report.failures == [Failure(plugin="odd", stage="executor_static_check", error=error)]
    assert [(d.plugin, d.path, d.code) for d in report.diagnostics] == [
        ("odd", "a.cfg", "plugin.crashed"),
        ("ini", "b.ini", "t.found"),
    ]
    assert gates(report) == [("static", False)]


def test_a_diagnostic_about_the_whole_proposal_is_allowed(plugins: Plugins) -> None:
    with register_plugin(plugins, Returns([error(None, line=None, column=None)]), "odd"):
        report = static([change("a.cfg")], plugins)
    assert report.failures == []
    assert [(d.plugin, d.path, d.report_line) for d in report.diagnostics] == [("odd", None, None)]


@pytest.mark.parametrize(
    ("claim", "error"),
    [
        (["a.cfg", "nope.cfg"], "claimed paths not in the proposal: ['nope.cfg']"),
        (7, "TypeError: 'int' object is not iterable"),
    ],
    ids=["stray-path", "not-iterable"],
)
def test_a_bad_claim_is_a_plugin_failure(plugins: Plugins, claim: Any, error: str) -> None:
    with register_plugin(plugins, ClaimsThis(claim), "odd"), register_plugin(plugins, Finds(".cfg"), "cfg"):
        report = static([change("a.cfg")], plugins)
    assert report.failures == [Failure(plugin="odd", stage="executor_claim_files", error=error)]
    assert report.claims == {"a.cfg": ["cfg"]}


def test_a_rollback_that_is_not_a_rollback_is_a_plugin_failure(plugins: Plugins) -> None:
    with register_plugin(plugins, Sandboxed(rollback=cast(Any, {"down.sql": "DROP TABLE t"})), "odd"):
        report = sandboxed([change("a.cfg")], plugins, FakeSandboxes())
    assert report.failures == [
        Failure(plugin="odd", stage="executor_build_rollback", error="returned dict, not Rollback")
    ]
    assert [d.code for d in report.diagnostics] == ["plugin.crashed"]
    assert report.rollbacks == []


def test_a_plugins_findings_at_one_location_are_all_kept(plugins: Plugins) -> None:
    """Two different errors on one token are two findings: none may be lost."""
    both = [error("a.cfg", 1, 1, code="t.first"), error("a.cfg", 1, 1, code="t.second")]
    with register_plugin(plugins, Returns(both), "two"):
        report = static([change("a.cfg")], plugins)
    assert [d.code for d in report.diagnostics] == ["t.first", "t.second"]


# -- claims and unvalidated files ----------------------------------------------------------------

FILES = [change("a.cfg"), change("notes.txt"), change("tool.py")]


def test_an_unclaimed_file_is_refused_naming_it_and_its_language(plugins: Plugins) -> None:
    with register_plugin(plugins, Finds(".cfg"), "cfg"), pytest.raises(UnvalidatedFilesError) as refused:
        static(FILES, plugins)
    assert refused.value.message == "no plugin validates notes.txt (unknown), tool.py (python)"
    assert refused.value.hint is not None
    assert '[plugins] unvalidated = ["<glob>"]' in refused.value.hint


def test_the_refusal_notes_plugins_that_failed_to_load(plugins: Plugins) -> None:
    plugins.failures.append(PluginFailure("py", "load", "cannot import executor_py: ImportError: x"))
    with register_plugin(plugins, Finds(".cfg"), "cfg"), pytest.raises(UnvalidatedFilesError) as refused:
        static([change("tool.py")], plugins)
    assert refused.value.message == (
        "no plugin validates tool.py (python); note: plugin 'py' failed in load: "
        "cannot import executor_py: ImportError: x"
    )


def test_unvalidated_globs_let_unclaimed_files_pass(plugins: Plugins) -> None:
    settings = Settings(plugins=PluginSettings(unvalidated=["*.txt"]))
    with register_plugin(plugins, Finds(".cfg"), "cfg"):
        with pytest.raises(UnvalidatedFilesError) as refused:
            static(FILES, plugins, settings)
        assert refused.value.message == "no plugin validates tool.py (python)"
        settings = Settings(plugins=PluginSettings(unvalidated=["*.txt", "*.py"]))
        report = static(FILES, plugins, settings)
    assert report.unvalidated == ["notes.txt", "tool.py"]
    assert report.claims == {"a.cfg": ["cfg"], "notes.txt": [], "tool.py": []}
    assert report.ok


def test_an_unvalidated_glob_star_also_matches_slashes(plugins: Plugins) -> None:
    """As docs/plugins.md says: fnmatch, so ``docs/*`` covers ``docs/a/b.md``."""
    settings = Settings(plugins=PluginSettings(unvalidated=["docs/*"]))
    assert static([change("docs/a/b.md")], plugins, settings).unvalidated == ["docs/a/b.md"]


def test_several_plugins_may_claim_one_file_and_each_must_pass_it(plugins: Plugins) -> None:
    with (
        register_plugin(plugins, Finds(".cfg"), "lenient"),
        register_plugin(plugins, Finds(".cfg", Level.ERROR), "strict"),
    ):
        report = static([change("a.cfg")], plugins)
    assert report.claims == {"a.cfg": ["lenient", "strict"]}
    assert [(d.plugin, d.severity) for d in report.diagnostics] == [
        ("lenient", Level.WARNING),
        ("strict", Level.ERROR),
    ]
    assert gates(report) == [("static", False)]


# -- report lines, options, trace ---------------------------------------------------------------


def test_file_lines_map_to_report_lines(plugins: Plugins) -> None:
    """File line N is report line line_start + N - 1; no line: the header; past the end: the last line."""
    file = FileChange(path="a.cfg", content=b"a\nb\nc\n", header_line=10, line_start=11, line_end=13)
    found = [error("a.cfg", 1), error("a.cfg", 3), error("a.cfg", None, None), error("a.cfg", 99)]
    with register_plugin(plugins, Returns(found), "lines"):
        report = static([file], plugins)
    # Listed in file order, then by line (none first).
    assert [(d.line, d.report_line) for d in report.diagnostics] == [(None, 10), (1, 11), (3, 13), (99, 13)]
    assert {d.plugin for d in report.diagnostics} == {"lines"}


def test_each_plugin_gets_its_own_operator_options(plugins: Plugins) -> None:
    configured, other = Options(), Options()
    settings = Settings(plugin={"configured": {"level": 3, "paths": ["a"]}})
    with register_plugin(plugins, configured, "configured"), register_plugin(plugins, other, "other"):
        static([change("a.cfg")], plugins, settings)
    assert configured.options == [{"level": 3, "paths": ["a"]}] * 2
    assert other.options == [{}, {}]


def test_trace_prints_every_hook_call_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    plugins = load_plugins(PluginSettings(trace=True, allow=[]))
    with register_plugin(plugins, Finds(".cfg"), "cfg"):
        static([change("a.cfg")], plugins)
    err = capsys.readouterr().err
    assert "executor_claim_files" in err
    assert "executor_static_check" in err


# -- the sandbox hooks and rollbacks -------------------------------------------------------------


def test_sandbox_hooks_share_one_context_in_order(plugins: Plugins) -> None:
    plugin = Sandboxed(rollback=Rollback(reversible=True, steps=("undo",)))
    sandboxes = FakeSandboxes()
    with register_plugin(plugins, plugin, "rb"), register_plugin(plugins, Finds(".cfg"), "static-only"):
        report = sandboxed([change("a.cfg")], plugins, sandboxes)
    assert [hook for hook, _, _ in plugin.seen] == ORDER[2:]
    assert len({context for _, context, _ in plugin.seen}) == 1
    assert [state for _, _, state in plugin.seen] == [{"applied": True}] * 3
    assert sandboxes.uses == 1  # one use for "rb"; none for the plugin without sandbox hooks
    assert plugin.proving == Rollback(plugin="rb", reversible=True, steps=("undo",))
    assert report.rollbacks == [Rollback(plugin="rb", reversible=True, steps=("undo",), proven=True)]
    assert gates(report) == [("static", True), ("sandbox", True), ("rollback", True)]
    assert not report.gates[2].skipped


def test_progress_names_the_gate_the_plugin_and_its_files(plugins: Plugins) -> None:
    seen: list[tuple[str, str]] = []
    files = [change("a.cfg"), change("b.cfg"), change("c.cfg")]
    plugin = Sandboxed(rollback=Rollback(reversible=True))
    with register_plugin(plugins, plugin, "rb"):
        validate(
            files,
            EmptyTree(),
            plugins,
            Settings(),
            cast(Any, FakeSandboxes()),
            progress=lambda *a: seen.append(a),
        )
    assert [s for s in seen if s[0] != "claims"] == [
        ("static", "rb (a.cfg, b.cfg, +1 more)"),
        ("sandbox", "rb (a.cfg, b.cfg, +1 more)"),
        ("rollback", "rb (a.cfg, b.cfg, +1 more)"),
    ]
    assert at_work("rb", files[:1]) == "rb (a.cfg)"
    assert at_work("rb", []) == "rb"


def test_a_failed_proof_fails_the_rollback(plugins: Plugins) -> None:
    plugin = Sandboxed(rollback=Rollback(reversible=True), proof=[error("a.cfg", code="t.not_undone")])
    with register_plugin(plugins, plugin, "rb"):
        report = sandboxed([change("a.cfg")], plugins, FakeSandboxes())
    assert [r.proven for r in report.rollbacks] == [False]
    assert [d.code for d in report.diagnostics] == ["t.not_undone"]
    assert gates(report) == [("static", True), ("sandbox", True), ("rollback", False)]
    assert report.gates[2].message == "1 error(s); first: a.cfg:1:1: t.not_undone"


def test_an_irreversible_rollback_is_not_proven_and_fails_its_gate(plugins: Plugins) -> None:
    plugin = Sandboxed(rollback=Rollback(reversible=False, reasons=("drops column t.c", "rewrites rows")))
    with register_plugin(plugins, plugin, "rb"):
        report = sandboxed([change("a.cfg")], plugins, FakeSandboxes())
    assert "executor_prove_rollback" not in [hook for hook, _, _ in plugin.seen]
    assert report.diagnostics == [
        Diagnostic(
            plugin="rb",
            severity=Level.ERROR,
            code="rollback.irreversible",
            message="cannot be rolled back without a data snapshot: drops column t.c; rewrites rows",
        )
    ]
    assert gates(report) == [("static", True), ("sandbox", True), ("rollback", False)]
    assert not report.reversible


def test_no_rollback_needed(plugins: Plugins) -> None:
    plugin = Sandboxed(rollback=None)
    with register_plugin(plugins, plugin, "rb"):
        report = sandboxed([change("a.cfg")], plugins, FakeSandboxes())
    assert [hook for hook, _, _ in plugin.seen] == ["executor_sandbox_validate", "executor_build_rollback"]
    assert report.rollbacks == []
    assert gates(report) == [("static", True), ("sandbox", True), ("rollback", True)]


def test_a_sandbox_error_skips_the_rollback(plugins: Plugins) -> None:
    plugin = Sandboxed(validation=[error("a.cfg", code="t.server")])
    with register_plugin(plugins, plugin, "rb"):
        report = sandboxed([change("a.cfg")], plugins, FakeSandboxes())
    assert [hook for hook, _, _ in plugin.seen] == ["executor_sandbox_validate"]
    assert gates(report) == [("static", True), ("sandbox", False), ("rollback", False)]
    assert report.gates[2].skipped


def test_a_static_error_on_the_same_token_is_not_repeated_by_the_sandbox(plugins: Plugins) -> None:
    plugin = Sandboxed(
        static=[error("a.cfg", 1, 1, "t.static")], validation=[error("a.cfg", 1, 1, "t.server")]
    )
    with register_plugin(plugins, plugin, "rb"):
        report = sandboxed([change("a.cfg")], plugins, FakeSandboxes())
    assert [d.code for d in report.diagnostics] == ["t.static"]


def test_blocks_sandbox_keeps_the_plugins_files_out_of_the_sandbox(plugins: Plugins) -> None:
    blocking = error("a.cfg").model_copy(update={"blocks_sandbox": True})
    plugin = Sandboxed(static=[blocking])
    sandboxes = FakeSandboxes()
    with register_plugin(plugins, plugin, "rb"):
        report = sandboxed([change("a.cfg")], plugins, sandboxes)
    assert plugin.seen == []
    assert sandboxes.uses == 0
    assert gates(report)[0] == ("static", False)


# -- registering ---------------------------------------------------------------------------------


def test_an_unknown_hook_is_refused_naming_it(plugins: Plugins) -> None:
    with pytest.raises(PluginError) as refused, register_plugin(plugins, UnknownHook(), "odd"):
        pass
    assert str(refused.value) == (
        "plugin 'odd' failed in registration: unknown hook(s) executor_check_files; see executor.hookspecs"
    )
    assert refused.value.failure == PluginFailure(
        "odd", "registration", "unknown hook(s) executor_check_files; see executor.hookspecs"
    )
    assert plugins.names == []
    assert plugins.manager.get_plugin("odd") is None


def test_a_wrong_parameter_is_refused_naming_it(plugins: Plugins) -> None:
    with pytest.raises(PluginError) as refused:
        plugins.register(WrongParameter(), "odd")
    assert "executor_static_check" in str(refused.value)
    assert "ctx" in str(refused.value)  # what is wrong, not only where
    assert plugins.names == []


def test_register_plugin_unregisters_when_the_block_ends(plugins: Plugins) -> None:
    with register_plugin(plugins, Finds(".cfg"), "cfg", version="1.2"):
        assert plugins.names == ["cfg"]
        assert [(i.name, i.version, i.builtin, i.languages) for i in plugins.info()] == [
            ("cfg", "1.2", False, ("cfg",))
        ]
    assert plugins.names == []
    assert plugins.manager.get_plugin("cfg") is None


# -- loading -------------------------------------------------------------------------------------


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, *points: tuple[str, str]) -> None:
    """Make ``load_plugins`` see only these (name, value) entry points, from no distribution."""
    found = [importlib.metadata.EntryPoint(name, value, "executor.plugins") for name, value in points]
    monkeypatch.setattr("executor.plugins._entry_points", lambda: found)


GHOST = PluginFailure(
    "ghost",
    "load",
    "cannot import no_such_module_xyz: ModuleNotFoundError: No module named 'no_such_module_xyz'",
)


def test_an_entry_point_that_does_not_import_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert importlib.metadata.EntryPoint("ghost", "no_such_module_xyz", "executor.plugins").dist is None
    fake_entry_points(monkeypatch, ("ghost", "no_such_module_xyz"), ("listed", "tests.test_plugins:LISTED"))
    plugins = load_plugins()
    assert plugins.failures == [GHOST]
    assert plugins.names == ["listed"]
    assert plugins.versions["listed"] == ("", "")  # no distribution behind the entry point


def test_an_entry_point_with_an_unknown_hook_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, ("odd", "tests.test_plugins:UNKNOWN"))
    plugins = load_plugins()
    assert plugins.failures == [
        PluginFailure("odd", "registration", "unknown hook(s) executor_check_files; see executor.hookspecs")
    ]
    assert plugins.names == []


def test_a_second_plugin_of_the_same_name_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, ("listed", "tests.test_plugins:LISTED"), ("listed", "no_such_module_xyz"))
    plugins = load_plugins()
    assert plugins.names == ["listed"]
    assert [(f.plugin, f.stage) for f in plugins.failures] == [("listed", "load")]
    assert "a second plugin named 'listed'" in plugins.failures[0].error


@pytest.mark.parametrize(
    "settings", [PluginSettings(deny=["ghost"]), PluginSettings(allow=["other"])], ids=["deny", "allow"]
)
def test_a_plugin_left_out_is_not_even_imported(
    monkeypatch: pytest.MonkeyPatch, settings: PluginSettings
) -> None:
    fake_entry_points(monkeypatch, ("ghost", "no_such_module_xyz"))
    plugins = load_plugins(settings)
    assert (plugins.names, plugins.failures) == ([], [])


def test_third_party_false_skips_what_is_not_built_in(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, ("ghost", "no_such_module_xyz"), ("listed", "tests.test_plugins:LISTED"))
    plugins = load_plugins(third_party=False)
    assert (plugins.names, plugins.failures) == ([], [])


def test_third_party_false_ignores_a_third_party_namesake_of_a_builtin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An installed plugin named like a built-in must not change executor_plugins (tests' outcome)."""
    own = importlib.metadata.distribution("proposal-executor")
    (sql,) = [ep for ep in own.entry_points if ep.group == "executor.plugins" and ep.name == "sql"]
    namesake = importlib.metadata.EntryPoint("sql", "no_such_module_xyz", "executor.plugins")
    monkeypatch.setattr("executor.plugins._entry_points", lambda: [sql, namesake])
    plugins = load_plugins(third_party=False)
    assert (plugins.names, plugins.failures) == (["sql"], [])


def test_builtins_load_and_are_marked_builtin() -> None:
    plugins = load_plugins(third_party=False)
    assert plugins.failures == []
    assert plugins.names == BUILTINS
    assert all(info.builtin and info.distribution == "proposal-executor" for info in plugins.info())


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        (PluginSettings(deny=["sql"]), ["javascript", "python"]),
        (PluginSettings(allow=["sql"]), ["sql"]),
        (PluginSettings(allow=["sql", "python"], deny=["python"]), ["sql"]),
        (PluginSettings(allow=[]), []),
    ],
    ids=["deny", "allow", "deny-wins", "allow-none"],
)
def test_allow_and_deny_apply_to_the_builtins(settings: PluginSettings, names: list[str]) -> None:
    plugins = load_plugins(settings, third_party=False)
    assert (plugins.names, plugins.failures) == (names, [])


# -- executor plugins ----------------------------------------------------------------------------


def test_cli_lists_plugins_and_failures_as_json(run_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, ("ghost", "no_such_module_xyz"), ("listed", "tests.test_plugins:LISTED"))
    result = run_cli("plugins", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "plugins": [
            {
                "name": "listed",
                "version": "",
                "distribution": "",
                "builtin": False,
                "hooks": ["executor_claim_files", "executor_languages", "executor_static_check"],
                "languages": ["cfg"],
            }
        ],
        "failures": [{"plugin": GHOST.plugin, "stage": GHOST.stage, "error": GHOST.error}],
    }


def test_cli_lists_plugins_and_failures_as_a_table(run_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, ("ghost", "no_such_module_xyz"), ("listed", "tests.test_plugins:LISTED"))
    result = run_cli("plugins")
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert re.fullmatch(r"name\s+version\s+source\s+languages\s+hooks", lines[0])
    assert re.fullmatch(r"listed\s+\?\s+cfg\s+claim_files, languages, static_check", lines[1])
    assert lines[2:] == [f"failed {GHOST.message()}"]


def test_cli_lists_the_builtins(run_cli: Cli) -> None:
    result = run_cli("plugins", "--json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    builtins = [p for p in listing["plugins"] if p["builtin"]]
    assert [p["name"] for p in builtins] == BUILTINS
    assert listing["failures"] == []


def test_cli_honours_deny_in_config(run_cli: Cli, executor_home: Path) -> None:
    executor_home.mkdir(parents=True, exist_ok=True)
    (executor_home / "config.toml").write_text('[plugins]\ndeny = ["sql"]\n', encoding="utf-8")
    result = run_cli("plugins", "--json")
    assert result.exit_code == 0, result.output
    names = [p["name"] for p in json.loads(result.stdout)["plugins"]]
    assert "sql" not in names
    assert "python" in names


# -- the hook reference and the docs (as datasette's test_docs.py) -------------------------------


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_documents_its_parameters_and_return(hook: str) -> None:
    spec = getattr(hookspecs, hook)
    doc = inspect.getdoc(spec) or ""
    for parameter in inspect.signature(spec).parameters:
        assert f":param {parameter}:" in doc, f"{hook} does not document {parameter}"
    assert ":returns:" in doc, f"{hook} does not document what it returns"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_firstresult_hook_says_so(hook: str) -> None:
    spec = getattr(hookspecs, hook)
    if spec.executor_spec["firstresult"]:
        assert "Stops at first non-None result" in (inspect.getdoc(spec) or "")


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_in_the_plugin_guide(hook: str) -> None:
    assert f"`{hook}`" in DOCS.read_text(encoding="utf-8")


def test_every_hook_is_implemented_by_an_exercised_plugin() -> None:
    builtin = load_plugins(third_party=False)
    implemented = {hook for name in builtin.names for hook in builtin.hooks_of(name)}
    implemented |= {
        name
        for plugin in EXERCISED
        for name, value in vars(plugin).items()
        if hasattr(value, "executor_impl")
    }
    assert sorted(implemented & set(HOOKS)) == HOOKS
    # ORDER drives the raising test; the rebuilt proof runs at rollback time (tests/test_run.py, test_reprove.py)
    assert sorted([*ORDER, "executor_languages", "executor_prove_rebuilt_rollback"]) == HOOKS
