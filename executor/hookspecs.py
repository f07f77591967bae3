"""The plugin author's reference: every hook the executor calls, and when.

A plugin is a module or object with functions marked ``@hookimpl`` (``from
executor import hookimpl``), registered under the entry-point group
``executor.plugins``; the entry point's name is the plugin's name. See
docs/plugins.md.

The host calls each plugin's hooks **on its own**, with only the files that
plugin claimed, so one plugin's exception never hides another's results: a
plugin that raises is reported by name and its files count as unvalidated.

Order, per proposal: ``executor_claim_files`` → ``executor_static_check`` (on
the host) → in one sandbox use per plugin: ``executor_sandbox_validate`` →
``executor_build_rollback`` → ``executor_prove_rollback``. The rollback hooks
run only when validation found no error. At rollback time, only if the base
moved on since the rollout: ``executor_prove_rebuilt_rollback``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import pluggy

from executor.diagnostics import Diagnostic
from executor.models import FileChange
from executor.plugin_api import BaseTree, PluginContext, Rollback, SandboxContext

if TYPE_CHECKING:
    from executor_sandbox.sandbox import Use

PROJECT = "executor"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def executor_languages() -> Sequence[str]:
    """Name the languages this plugin handles, for ``executor plugins``.

    Called when plugins are listed. Collected: each plugin returns its own list.
    Claiming files is ``executor_claim_files``'s job; this is only what people
    read.

    :returns: language names, e.g. ``["sql"]``.
    """
    raise NotImplementedError


@hookspec
def executor_claim_files(files: Sequence[FileChange], context: PluginContext) -> Iterable[str] | None:
    """Return the paths, among ``files``, that this plugin validates.

    :param files: every file of the proposal (path, bytes, language by extension).
    :param context: the base tree and this plugin's operator options.
    :returns: claimed paths; a path not in ``files`` is an error of the plugin.

    Called once per proposal, first. Several plugins may claim one file; every
    claimant must pass it. A file nobody claims is unvalidated: the run is
    refused unless the operator's ``[plugins] unvalidated`` globs allow it.
    """
    raise NotImplementedError


@hookspec
def executor_static_check(files: Sequence[FileChange], context: PluginContext) -> Iterable[Diagnostic] | None:
    """Check the claimed files on the host, without executing anything from them.

    :param files: the files this plugin claimed.
    :param context: the base tree and this plugin's operator options.
    :returns: diagnostics located in the files (1-based line and column).

    Must not run, import or evaluate proposal content: parse only. A
    diagnostic with ``blocks_sandbox=True`` (e.g. SQL with ``COPY ... PROGRAM``)
    keeps all of this plugin's files out of the sandbox.
    """
    raise NotImplementedError


@hookspec
def executor_sandbox_validate(
    files: Sequence[FileChange], context: SandboxContext
) -> Iterable[Diagnostic] | None:
    """Validate the claimed files inside a sandbox, and apply them there.

    :param files: the files this plugin claimed.
    :param context: ``context.sandbox`` is a fresh use of a warm sandbox (own
        PostgreSQL database, own work directory; no network; resource limits);
        ``context.state`` survives until ``executor_prove_rollback``.
    :returns: diagnostics; any error fails the sandbox gate.

    Not called when a static diagnostic of this plugin blocks the sandbox.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def executor_build_rollback(files: Sequence[FileChange], context: SandboxContext) -> Rollback | None:
    """Build the way back for what the claimed files do beyond the git change.

    :param files: the files this plugin claimed.
    :param context: the same context ``executor_sandbox_validate`` had, after it.
    :returns: a ``Rollback`` (``reversible=False`` with reasons when undoing
        needs a data snapshot), or None when reverting the commit is enough.

    Called only when this plugin's sandbox validation found no error.
    Stops at first non-None result.
    """
    raise NotImplementedError


@hookspec
def executor_prove_rollback(
    rollback: Rollback, files: Sequence[FileChange], context: SandboxContext
) -> Iterable[Diagnostic] | None:
    """Prove in the sandbox that ``rollback`` undoes the files' effect.

    :param rollback: what this plugin's ``executor_build_rollback`` returned.
    :param files: the files this plugin claimed.
    :param context: the same context, after ``executor_build_rollback``.
    :returns: diagnostics; none with severity error means proven.

    Called only for a reversible rollback.
    """
    raise NotImplementedError


@hookspec
def executor_prove_rebuilt_rollback(
    rollback: Rollback,
    reverted: BaseTree,
    context: PluginContext,
    sandbox: Callable[[], AbstractContextManager[Use]],
) -> Iterable[Diagnostic] | None:
    """Prove again, at rollback time, a rollback whose base moved on since the rollout.

    :param rollback: what this plugin's ``executor_build_rollback`` returned
        at run time (as kept in the state store).
    :param reverted: the tree the base will have once rolled back: the base
        as it is now, without the proposal's changes.
    :param context: ``context.base`` is the base as it is now (the rollout
        and every commit after it); ``options`` as for the other hooks.
    :param sandbox: opens a fresh sandbox use (own database, own work
        directory) each time it is entered; use one at a time.
    :returns: diagnostics; none with severity error means proven, and the
        rollback is applied; an error refuses it, changing nothing.

    Called during ``executor rollback``, under the repository's rollout lock,
    for each plugin whose rollback was reversible, only when the prepared
    revert no longer applies because later commits moved the base. A plugin
    that has a rollback but not this hook makes such a rollback refused.
    """
    raise NotImplementedError
