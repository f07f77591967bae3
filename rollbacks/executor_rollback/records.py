"""Rollback records against the repository: settling crashed runs, live states, applying a rollback.

States: ``pending`` (recorded, base not yet moved: only while a run holds the
rollout lock, or after it was killed), ``rolling_back`` (the same for a
rollback: its target commit recorded, the base not yet moved), ``warm`` (rolled out; the prepared
revert applies to the base as it is), ``stale`` (warm, but the base moved on:
the revert is rebuilt at rollback time), ``applied`` (rolled back),
``orphaned`` (the rollout is no longer in the base branch), ``abandoned`` (the
rollout never happened).
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executor.crash import crash_point
from executor.errors import RefusedError
from executor.gitrepo import TargetRepo, repository_path
from executor_rollback.revert import RollbackFailed, holds_pre_images, rebuild_revert

#: Written before the base moves (by a run, by a rollback); settled after a kill.
UNSETTLED = ("pending", "rolling_back")

if TYPE_CHECKING:
    from executor.plugin_api import Rollback
    from executor.store.runs import RollbackRecord, RunStore


def settle(repo: TargetRepo, runs: RunStore, actor: str, wait: bool = True) -> bool:
    """Resolve what killed runs and rollbacks left on this repository; False if skipped (lock busy, not ``wait``).

    A ``pending`` record becomes warm or abandoned, a ``rolling_back`` one
    applied or warm again. Under the rollout lock no live process is between
    writing such a record and moving the base, so the branch alone tells
    which way it went.
    """
    if not runs.rollbacks(repo=repo.key, state=UNSETTLED):
        return True
    with repo.rollout_lock(wait=wait) as held:
        if not held:
            return False
        for record in runs.rollbacks(repo=repo.key, state=UNSETTLED):
            tip = repo.resolve(record.base_ref)
            if record.state == "rolling_back":
                target = record.applied_commit
                done = tip is not None and target is not None and repo.is_ancestor(target, tip)
                runs.set_rollback_state(
                    record.seq,
                    "applied" if done else "warm",
                    actor=actor,
                    applied_commit=target if done else None,
                )
                continue
            rolled_out = tip is not None and repo.is_ancestor(record.rollout_commit, tip)
            runs.set_rollback_state(record.seq, "warm" if rolled_out else "abandoned", actor=actor)
            if not rolled_out and repo.resolve(record.ref) == record.revert_commit:
                repo.delete_ref(record.ref, record.revert_commit)
    return True


def recover_rollbacks(runs: RunStore, actor: str) -> list[str]:
    """Rollbacks whose executor died after recording its target: settled where no live process holds the lock.

    A rollback has no run record to find it by, so its ``rolling_back``
    record is; returns one line per rollback settled, for ``executor doctor``.
    """
    recovered = []
    for key in sorted({r.repo for r in runs.rollbacks(state="rolling_back")}):
        try:
            repo = TargetRepo(repository_path(key))
        except RefusedError:
            continue
        try:
            killed = [r.seq for r in runs.rollbacks(repo=key, state="rolling_back")]
            if repo.key != key or not settle(repo, runs, actor, wait=False):
                continue
            recovered += [
                f"rollback of {r.proposal_id} on {r.base_ref} (its executor was killed): "
                + (
                    "rolled back in git" + "".join(f"; {n}" for n in _plugin_notes(r, done=True))
                    if r.state == "applied"
                    else "not applied, the rollback is warm again"
                )
                for r in runs.rollbacks(repo=key)
                if r.seq in killed
            ]
        finally:
            repo.close()
    return recovered


def recover_runs(runs: RunStore, actor: str) -> list[str]:
    """Runs whose executor died (same host, process gone): settled, and marked rolled out or crashed.

    Returns one line per run recovered, for ``executor doctor``.
    """
    host = socket.gethostname()
    recovered = []
    for run in runs.runs(status="running"):
        if run.host != host or _alive(run.pid):
            continue
        status = "crashed"
        try:
            repo = TargetRepo(repository_path(run.repo))
        except RefusedError:
            repo = None
        if repo is not None and repo.key != run.repo:  # another repository now stands at that path
            repo.close()
            repo = None
        if repo is not None:
            try:
                settle(repo, runs, actor)
                if any(r.run_id == run.run_id and r.state == "warm" for r in runs.rollbacks(repo=run.repo)):
                    status = "rolled_out"
            finally:
                repo.close()
        if runs.finish_run(
            run.run_id,
            status=status,
            base_commit=run.base_commit,
            outcome={"recovered": True, "status": status, "pid": run.pid},
            actor=actor,
        ):
            recovered.append(f"run {run.run_id} of {run.proposal_id} (pid {run.pid} gone): {status}")
    return recovered


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_state(repo: TargetRepo, record: RollbackRecord) -> str:
    if record.state != "warm":
        return record.state
    if repo.resolve(record.ref) != record.revert_commit:
        return "lost"  # its ref was deleted or moved by hand: the revert commit may be gone
    tip = repo.resolve(record.base_ref)
    if tip == record.rollout_commit:
        return "warm"
    if tip is not None and _reverted_by_hand(repo, record, tip):
        return "applied"
    if tip is not None and repo.is_ancestor(record.rollout_commit, tip):
        return "stale"
    return "orphaned"


def _reverted_by_hand(repo: TargetRepo, record: RollbackRecord, tip: str) -> bool:
    """The base was moved to the prepared revert outside the executor (git update-ref), and is still reverted.

    A later commit bringing the proposal's files back (git revert of the
    revert) makes it a rollout to roll back again, not a finished rollback.
    """
    return (
        tip != record.rollout_commit
        and repo.is_ancestor(record.revert_commit, tip)
        and holds_pre_images(repo, tip, record.files)
    )


def _plugin_notes(record: RollbackRecord, done: bool) -> list[str]:
    """What git cannot undo: each plugin rollback, to apply where the change was deployed."""
    when = (
        "apply it where the change was deployed"
        if not done
        else "if not yet applied where it was deployed, apply it"
    )
    return [
        f"plugin {plugin.get('plugin')!r} rollback {name!r}: {when} (see executor rollbacks --json for its steps)"
        for plugin in record.plugins
        for name in plugin.get("artifacts", {})
    ]


def keep_artifacts(home: Path, proposal_id: str, run_id: str, rollbacks: list[Rollback]) -> dict[str, str]:
    """Write each plugin's rollback artifacts under ``home/rollbacks/<id>/<run>/<plugin>/``; name -> path."""
    kept: dict[str, str] = {}
    for rollback in rollbacks:
        directory = home / "rollbacks" / proposal_id / run_id / rollback.plugin
        for name, text in rollback.artifacts.items():
            if "/" in name or name in ("", ".", ".."):
                raise RefusedError(
                    f"plugin {rollback.plugin!r} named a rollback artifact {name!r}; use a plain file name"
                )
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = directory / name
            with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, encoding="utf-8") as handle:
                handle.write(text)
            os.replace(handle.name, path)
            kept[f"{rollback.plugin}/{name}"] = str(path)
    return kept


@dataclass
class RollbackOutcome:
    """What ``executor rollback`` did (a dataclass, not pydantic: this path is kept light to start fast)."""

    proposal_id: str
    status: str  # "rolled_back" or "already_rolled_back"
    repo: str
    base: str
    commit: str | None = None  # the revert commit the base now points at
    rebuilt: bool = False  # the base had moved on: the revert was rebuilt and proven again
    plugins: list[dict[str, Any]] = field(default_factory=list)  # plugin rollbacks to run outside git
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def roll_back(
    repo: TargetRepo,
    runs: RunStore,
    proposal_id: str,
    actor: str,
    base: str | None = None,
) -> RollbackOutcome:
    """Undo a rollout: the base moves to the prepared (or rebuilt) revert, by compare-and-swap.

    ``base``: the branch it was rolled out to (default: the latest rollout's).
    A revert rebuilt on a moved base has its plugin rollbacks proven again
    in the sandbox first (``reprove``), or is refused. Refusals and no-ops
    are in the audit log as well as what changed state.
    """
    detail: dict[str, Any] = {"repo": str(repo.path), "base": base}
    try:
        outcome = _roll_back(repo, runs, proposal_id, actor, base)
    except (RefusedError, RollbackFailed) as exc:
        runs.note("rollback_refused", actor, proposal_id, {**detail, "error": exc.message, "hint": exc.hint})
        raise
    if outcome.status == "already_rolled_back":
        runs.note(
            "rollback_noop", actor, proposal_id, {**detail, "commit": outcome.commit, "notes": outcome.notes}
        )
    return outcome


def _roll_back(
    repo: TargetRepo, runs: RunStore, proposal_id: str, actor: str, base: str | None
) -> RollbackOutcome:
    settle(repo, runs, actor)

    def latest() -> RollbackRecord | None:
        found = [
            r
            for r in runs.rollbacks(proposal_id=proposal_id, repo=repo.key)
            if r.state != "abandoned" and (base_ref is None or r.base_ref == base_ref)
        ]
        return found[-1] if found else None

    base_ref = repo.base_branch(base) if base is not None else None
    record = latest()
    if record is None:
        where = f" on {base_ref}" if base_ref else ""
        raise RefusedError(
            f"proposal {proposal_id} was never rolled out to {repo.path}{where}, so there is nothing to roll back",
            hint="see: executor rollbacks",
        )
    with repo.rollout_lock():
        record = latest()  # again, under the lock: a concurrent rollback may have applied it
        assert record is not None
        outcome = RollbackOutcome(
            proposal_id=proposal_id,
            status="rolled_back",
            repo=str(repo.path),
            base=record.base_ref,
            plugins=record.plugins,
        )
        if record.state == "applied":
            outcome.status, outcome.commit = "already_rolled_back", record.applied_commit
            outcome.notes.append(
                f"already rolled back in {str(record.applied_commit)[:12]} at {record.applied_at}; nothing to do in git"
            )
            outcome.notes += _plugin_notes(record, done=True)  # a killed rollback never said so
            return outcome
        tip = repo.resolve(record.base_ref)
        if tip is not None and _reverted_by_hand(repo, record, tip):
            runs.set_rollback_state(record.seq, "applied", actor=actor, applied_commit=record.revert_commit)
            outcome.status, outcome.commit = "already_rolled_back", record.revert_commit
            outcome.notes.append(
                f"{record.base_ref} already holds the prepared revert {record.revert_commit[:12]}; "
                "recorded as rolled back, nothing else to do in git"
            )
            outcome.notes += _plugin_notes(record, done=False)
            return outcome
        if tip is None or not repo.is_ancestor(record.rollout_commit, tip):
            raise RefusedError(
                f"the rollout {record.rollout_commit[:12]} of proposal {proposal_id} is no longer in "
                f"{record.base_ref}, so there is nothing to roll back there"
            )
        if tip == record.rollout_commit:
            if repo.resolve(record.ref) != record.revert_commit:
                raise RollbackFailed(
                    f"the prepared revert {record.ref} is missing or was moved by hand; nothing was changed",
                    hint="restore the ref, or revert by hand",
                )
            target = record.revert_commit
        else:
            target = rebuild_revert(repo, proposal_id, tip, record.rollout_commit, record.files)
            outcome.rebuilt = True
            from executor_rollback.reprove import prove_rebuilt

            outcome.notes += prove_rebuilt(repo, record, tip, target)
        # Written ahead: a rollback killed once the base moved is settled as applied, not retried.
        runs.set_rollback_state(record.seq, "rolling_back", actor=actor, applied_commit=target)
        crash_point("rollback_recorded")
        if not repo.update_ref(record.base_ref, target, tip, f"executor: roll back proposal {proposal_id}"):
            runs.set_rollback_state(record.seq, "warm", actor=actor)
            raise RollbackFailed(f"{record.base_ref} moved during the rollback; nothing was changed, retry")
        crash_point("rolled_back")
        runs.set_rollback_state(record.seq, "applied", actor=actor, applied_commit=target)
    outcome.commit = target
    outcome.notes += _plugin_notes(record, done=False)
    return outcome
