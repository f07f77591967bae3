"""Proving a rebuilt revert's plugin rollbacks again in the sandbox, at rollback time.

Only the slow path of ``executor rollback`` (the base moved on since the
rollout) comes here, so settings, plugins and the sandbox pool are loaded only
then: the prepared, instant path stays free of them.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from executor_rollback.revert import RollbackFailed

if TYPE_CHECKING:
    from executor.gitrepo import TargetRepo
    from executor.store.runs import RollbackRecord

HOOK = "executor_prove_rebuilt_rollback"


def prove_rebuilt(repo: TargetRepo, record: RollbackRecord, tip: str, revert: str) -> list[str]:
    """Each reversible plugin rollback proven against ``tip`` and the ``revert`` tree; what was proven.

    Raises ``RollbackFailed`` (nothing changed) with every error found, or if
    a plugin that made a rollback is gone, failed to load, or lacks the hook.
    """
    from executor_sandbox.pool import Sandboxes

    from executor.basetree import GitTree
    from executor.config import load_settings
    from executor.diagnostics import stamp
    from executor.plugin_api import PluginContext, Rollback
    from executor.plugins import PluginError, load_plugins

    rollbacks = [Rollback.model_validate(p) for p in record.plugins]
    rollbacks = [r for r in rollbacks if r.reversible and r.artifacts]
    if not rollbacks:
        return []
    settings = load_settings()
    plugins = load_plugins(settings.plugins)
    sandboxes = Sandboxes(settings.sandbox)
    now, reverted = GitTree(repo, tip), GitTree(repo, revert)
    run_id = secrets.token_hex(8)
    problems: list[str] = []
    proven: list[str] = []
    for rollback in rollbacks:
        name = rollback.plugin
        if name not in plugins.names:
            failed = [f.error for f in plugins.failures if f.plugin == name]
            why = f"failed to load: {failed[0]}" if failed else "is not installed"
            problems.append(f"plugin {name!r}, which made this rollback, {why}")
            continue
        if HOOK not in plugins.hooks_of(name):
            problems.append(f"plugin {name!r} cannot prove its rollback on a moved base (it has no {HOOK})")
            continue
        context = PluginContext(base=now, options=settings.plugin.get(name, {}))
        try:
            found = plugins.collect(
                name,
                HOOK,
                rollback=rollback,
                reverted=reverted,
                context=context,
                sandbox=lambda: sandboxes.use(run_id=run_id),
            )
        except PluginError as exc:
            problems.append(f"plugin {name!r} failed in {HOOK}: {exc.failure.error}")
            continue
        try:
            errors = [d for d in stamp(found, name, []) if d.is_error]
        except TypeError as exc:  # not a Diagnostic: the plugin's error, and nothing is proven
            problems.append(f"plugin {name!r} failed in {HOOK}: {exc}")
            continue
        problems += [f"{name}: {d.code}: {d.message}" for d in errors]
        if not errors:
            proven.append(f"{name}: proven again on {tip[:12]} ({', '.join(sorted(rollback.artifacts))})")
    if problems:
        raise RollbackFailed(
            f"the revert rebuilt on {tip[:12]} for proposal {record.proposal_id} is not proven, "
            "so nothing was changed: " + "; ".join(problems),
            hint="roll back the later changes first, or revert by hand",
        )
    return proven
