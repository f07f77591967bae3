"""The built-in SQL plugin: PostgreSQL itself is the judge.

In a fresh database of a warm sandbox: the base commit's SQL files (the
baseline), a schema snapshot, then the proposal's files in migration order,
each in its own transaction, under event triggers that record what every
statement did. Then: apply again (must be re-runnable), generate the down
migration from the record, and prove it: down gives the baseline schema back
exactly, and up works again. At rollback time, if the base moved on: the
down migration on the base as it is now must give what the reverted tree
gives from scratch.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from executor import hookimpl
from executor.diagnostics import Diagnostic
from executor.models import FileChange, Level
from executor.plugin_api import BaseTree, PluginContext, Rollback, SandboxContext
from executor_sql import checks, down
from executor_sql.database import AppliedFile, Database, Snapshot, migration_order

if TYPE_CHECKING:
    from executor_sandbox.sandbox import Use

DEFAULTS: dict[str, Any] = {
    "timeout": 30.0,  # seconds per file
    "baseline": ["*.sql"],  # globs of base-commit files applied first ('*' crosses '/')
    "rerun": "warning",  # or "error": a file that fails when applied twice fails the gate
}


def _options(context: PluginContext) -> dict[str, Any]:
    return {**DEFAULTS, **context.options}


@hookimpl
def executor_languages() -> list[str]:
    return ["sql"]


@hookimpl
def executor_claim_files(files: Sequence[FileChange]) -> list[str]:
    return [f.path for f in files if f.path.lower().endswith(".sql")]


@hookimpl
def executor_static_check(files: Sequence[FileChange]) -> list[Diagnostic]:
    return [diagnostic for change in files for diagnostic in checks.check(change)]


def _ordered(files: Iterable[FileChange]) -> list[FileChange]:
    by_path = {f.path: f for f in files}
    return [by_path[path] for path in migration_order(list(by_path))]


@hookimpl
def executor_sandbox_validate(files: Sequence[FileChange], context: SandboxContext) -> list[Diagnostic]:
    options = _options(context)
    db = Database(context.sandbox, float(options["timeout"]))
    db.install_audit()
    problem = _apply_baseline(db, context, options)
    if problem is not None:
        return [problem]
    base = db.snapshot()
    found: list[Diagnostic] = []
    applied: list[AppliedFile] = []
    for change in _ordered(files):
        text, _ = checks.decode(change)
        if text is None:
            continue  # reported by the static check
        outcome = db.apply(change, text)
        if isinstance(outcome, Diagnostic):
            found.append(outcome)
        else:
            applied.append(outcome)
    if found:
        return found
    up = db.snapshot()
    level = Level.ERROR if options["rerun"] == "error" else Level.WARNING
    for run in applied:
        again = db.apply(run.change, run.text, commit=False)
        if isinstance(again, Diagnostic):
            found.append(
                again.model_copy(
                    update={
                        "severity": level,
                        "code": "sql.not-rerunnable",
                        "message": f"applying the file a second time fails: {again.message}; "
                        "a 'create or update' file should be safe to re-run (IF NOT EXISTS, OR REPLACE)",
                    }
                )
            )
    context.state.update(db=db, base=base, up=up, applied=applied)
    return found


def _apply_baseline(db: Database, context: SandboxContext, options: dict[str, Any]) -> Diagnostic | None:
    """The base commit's SQL, as the proposal's role; a failure means the proposal cannot be judged."""
    problem = _apply_tree(db, context.base, options)
    if problem is None:
        return None
    path, found = problem
    return _baseline_error(
        "the base commit's SQL does not apply, so the proposal cannot be judged",
        path,
        found,
        "fix the base, or narrow [plugin.sql] baseline globs",
    )


def _apply_tree(
    db: Database, tree: BaseTree, options: dict[str, Any]
) -> tuple[str | None, Diagnostic] | None:
    """A tree's SQL files (the baseline globs) in migration order; the failing path and error, if any."""
    globs = list(options["baseline"])
    paths = [p for p in tree.paths() if any(fnmatch.fnmatchcase(p, g) for g in globs)]
    files: list[tuple[FileChange, str]] = []
    for path in migration_order(paths):
        data = tree.read(path) or b""
        change = FileChange(path=path, content=data, header_line=1, line_start=1, line_end=1)
        text, problem = checks.decode(change)
        if problem is not None:
            return path, problem
        files.append((change, str(text)))
    problem = db.apply_baseline(files)
    return None if problem is None else (problem.path, problem)


def _baseline_error(what: str, path: str | None, problem: Diagnostic, fix: str = "") -> Diagnostic:
    where = "" if path is None else f"{path}:{problem.line}:{problem.column}: "
    return Diagnostic(
        severity=Level.ERROR,
        code="sql.baseline",
        message=f"{what}: {where}{problem.message}" + (f"; {fix}" if fix else ""),
    )


@hookimpl
def executor_build_rollback(context: SandboxContext) -> Rollback:
    state = context.state
    plan = down.plan(state["db"], state["applied"], state["base"], state["up"])
    if plan.reasons:
        return Rollback(reversible=False, reasons=tuple(plan.reasons))
    script = "".join(f"{statement};\n" for statement in plan.statements)
    return Rollback(reversible=True, steps=tuple(plan.steps), artifacts={"down.sql": script})


@hookimpl
def executor_prove_rollback(rollback: Rollback, context: SandboxContext) -> list[Diagnostic]:
    """Down, and the schema must be the baseline's exactly; then up again must apply and give the same schema."""
    state = context.state
    db: Database = state["db"]
    outcome = _apply_down(db, rollback)
    if isinstance(outcome, Diagnostic):
        return [
            _proof_error(
                "sql.rollback-failed",
                f"the generated down migration fails at line {outcome.line}: {outcome.message}",
            )
        ]
    if not _same_schema(db, state["base"]):
        after_down = db.snapshot()
        return [
            _proof_error(
                "sql.rollback-mismatch",
                "after the down migration the schema differs from the "
                f"baseline: {after_down.difference(state['base'])}",
            )
        ]
    second_start = outcome.marks[-1] if outcome is not None and outcome.marks else state["up"].mark
    second: list[AppliedFile] = []
    for run in state["applied"]:
        again = db.apply(run.change, run.text)
        if isinstance(again, Diagnostic):
            return [
                again.model_copy(
                    update={
                        "code": "sql.reapply-after-down",
                        "message": f"applying again after the down migration fails: {again.message}",
                    }
                )
            ]
        second.append(again)
    # Same start, same statements, yet another schema: the up is not deterministic (a name from
    # a sequence, the clock, random()), so a down generated from one run cannot undo another.
    # Plain DDL that did the same things again (same objects, by the server's log) cannot
    # differ; anything else (DO, CALL, SELECT, DML that may fire triggers) is compared whole.
    first_range = (state["base"].mark, state["up"].mark)
    second_range = (second_start, second[-1].marks[-1] if second and second[-1].marks else second_start)
    plain = all(_is_plain_ddl(status) for run in state["applied"] for status in run.statuses)
    if not (plain and db.events(*first_range) == db.events(*second_range)) and not _same_schema(
        db, state["up"]
    ):
        after_up = db.snapshot()
        return [
            _proof_error(
                "sql.reapply-mismatch",
                f"up, down, up gives another schema than up: {after_up.difference(state['up'])}",
            )
        ]
    return []


def _apply_down(db: Database, rollback: Rollback) -> AppliedFile | Diagnostic | None:
    """The rollback's ``down.sql`` in one transaction (None when it has none: nothing to undo)."""
    script = rollback.artifacts.get("down.sql", "")
    change = FileChange(path="down.sql", content=script.encode(), header_line=1, line_start=1, line_end=1)
    return db.apply(change, script) if script else None


_PLAIN_DDL = {"CREATE", "ALTER", "COMMENT", "GRANT", "REVOKE", "DROP", "SET", "RESET"}


def _is_plain_ddl(status: str) -> bool:
    """A command tag of a statement whose effect on the schema is fixed by its text (CREATE TABLE AS says SELECT)."""
    return status.split(" ", 1)[0] in _PLAIN_DDL


def _same_schema(db: Database, snapshot: Snapshot) -> bool:
    """Whether the schema now is ``snapshot``'s: by digest, and by the rows only when the digests differ."""
    return db.schema_digest() == snapshot.digest or db.snapshot().compared() == snapshot.compared()


def _proof_error(code: str, message: str) -> Diagnostic:
    return Diagnostic(severity=Level.ERROR, code=code, message=message)


@hookimpl
def executor_prove_rebuilt_rollback(
    rollback: Rollback,
    reverted: BaseTree,
    context: PluginContext,
    sandbox: Callable[[], AbstractContextManager[Use]],
) -> list[Diagnostic]:
    """The base as it is now, then down: the schema must be exactly what the reverted tree builds from scratch.

    Later commits may depend on what the down migration drops (it then
    fails, or the reverted tree's own SQL no longer applies); either refuses.
    """
    options = _options(context)
    timeout = float(options["timeout"])
    with sandbox() as use:
        db = Database(use, timeout)
        db.install_audit()
        problem = _apply_tree(db, context.base, options)
        if problem is not None:
            return [
                _baseline_error(
                    "the base's SQL as it is now does not apply, so the rollback cannot be proven", *problem
                )
            ]
        outcome = _apply_down(db, rollback)
        if isinstance(outcome, Diagnostic):
            return [
                _proof_error(
                    "sql.rollback-failed",
                    f"the down migration fails on the base as it is now, at its line {outcome.line}: "
                    f"{outcome.message} (a later commit may depend on what it drops)",
                )
            ]
        after_down = db.snapshot().without_role(use.name)
    with sandbox() as use:
        db = Database(use, timeout)
        db.install_audit()
        problem = _apply_tree(db, reverted, options)
        if problem is not None:
            return [_baseline_error("once rolled back, the base's SQL would not apply", *problem)]
        want = db.snapshot().without_role(use.name)
    if after_down.compared() != want.compared():
        return [
            _proof_error(
                "sql.rollback-mismatch",
                "after the down migration the schema differs from what the rolled-back base builds: "
                f"{after_down.difference(want)}",
            )
        ]
    return []
