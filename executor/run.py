"""``executor run``: the gates, the commit on ``proposals/<id>``, the rollout, and its rollback artifact.

Order, each a hard pass/fail: 1 approval (bound to the current digest, not
blocked), 2 paths and content (again, against the real tree), 3 static checks,
4 sandbox validation, 5 rollback built and proven (``executor.validation``).
Then the commit on ``proposals/<id>`` (kept for inspection when a gate failed)
and, under the repository's rollout lock: the rollout commit (fast-forward, or
a merge when the base moved elsewhere), the revert commit proven to restore
the pre-rollout tree, the rollback record (``pending``), and only then the
base branch, moved by compare-and-swap. Killed anywhere, the base is either
untouched or rolled out with its artifact; ``settle`` tidies the rest.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from executor import __version__
from executor.config import Settings
from executor.diagnostics import Diagnostic
from executor.errors import ExitCode, RefusedError
from executor.gitrepo import Change, TargetRepo
from executor.models import Level, Proposal, Status
from executor.plugin_api import Rollback
from executor.report import file_problems, set_problems
from executor.validation import GateResult

if TYPE_CHECKING:
    from executor_sandbox.pool import Sandboxes

    from executor.plugins import Plugins
    from executor.store import ProposalStore
    from executor.store.proposals import StoredProposal
    from executor.store.runs import RunStore

Progress = Callable[[str, str], None]
GATES = ("approval", "paths", "static", "sandbox", "rollback", "rollout")


class GateOutcome(GateResult):
    """A gate of a run, with what made it fail."""

    message: str | None = None


class RollbackArtifact(BaseModel):
    """What ``executor rollback`` will use: the prepared revert commit and each plugin's proven rollback."""

    ref: str
    commit: str
    rollout_commit: str
    proven: bool
    reversible: bool
    plugins: list[Rollback] = Field(default_factory=list)
    files: dict[str, str] = Field(
        default_factory=dict, description="Plugin artifacts kept on disk: name -> path."
    )


class RunOutcome(BaseModel):
    run_id: str | None = None
    proposal_id: str
    revision: int
    digest: str
    status: Literal["rolled_out", "validated", "gate_failed", "already_rolled_out"]
    repo: str
    base: str
    base_commit: str | None = None
    branch: str | None = None
    commit: str | None = None
    rollout_commit: str | None = None
    merged: bool = False
    gates: list[GateOutcome] = Field(default_factory=list)
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    rollback: RollbackArtifact | None = None
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.GATE_FAILED if self.status == "gate_failed" else ExitCode.OK

    @property
    def failed_gate(self) -> GateOutcome | None:
        return next((g for g in self.gates if not g.ok and not g.skipped), None)


def crash_point(name: str) -> None:
    """For the crash tests: ``EXECUTOR_TEST_KILL_AT=<name>`` kills this process here with SIGKILL.

    Points: ``gates`` (inside the sandbox gate), ``recorded`` (rollback
    recorded, base not moved), ``rolled_out`` (base moved, run not yet
    marked). A real kill -9, at a known place.
    """
    if os.environ.get("EXECUTOR_TEST_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def proposal_branch(proposal_id: str) -> str:
    return f"refs/heads/proposals/{proposal_id}"


def rollback_ref(proposal_id: str) -> str:
    return f"refs/rollbacks/{proposal_id}"


def commit_message(proposal: Proposal, approved_by: str) -> str:
    """Subject and body from the opportunity, then the trailers CI and operators grep for."""
    opportunity = " ".join((proposal.opportunity or "").split()) or f"Apply proposal {proposal.id}"
    subject = opportunity if len(opportunity) <= 72 else opportunity[:71].rstrip() + "…"
    body = f"\n\n{opportunity}" if subject != opportunity else ""
    files = "".join(f"\n- {f.path}" for f in proposal.files)
    return (
        f"{subject}{body}\n\nFiles:{files}\n\n"
        f"Proposal-Id: {proposal.id}\nProposal-Digest: {proposal.digest}\n"
        f"Approved-By: {approved_by}\nExecutor-Version: {__version__}\n"
    )


class Runner:
    """One ``executor run`` of one proposal on one repository."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: ProposalStore,
        runs: RunStore,
        plugins: Plugins,
        sandboxes: Sandboxes | None,
        actor: str,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runs = runs
        self.plugins = plugins
        self.sandboxes = sandboxes
        self.actor = actor
        self.progress = progress or (lambda gate, detail: None)

    def run(self, proposal_id: str, repo_path: Path, base: str | None, *, rollout: bool = True) -> RunOutcome:
        started = time.monotonic()
        stored = self.store.get(proposal_id)
        proposal = stored.proposal
        if not proposal.executable:
            raise RefusedError(
                f"proposal {proposal_id} has no executable file changes "
                f"({proposal.kind_label or proposal.kind.value}, {len(proposal.files)} files"
                f"{', with errors' if proposal.errors() else ''})",
                hint=f"see: executor show {proposal_id}",
            )
        repo = TargetRepo(repo_path)
        try:
            from executor_rollback.records import recover_runs, settle

            base_ref = repo.base_branch(base)
            recover_runs(self.runs, self.actor)
            settle(repo, self.runs, self.actor)
            done = self._already_rolled_out(repo, proposal, base_ref)
            if done is not None:
                done.seconds = round(time.monotonic() - started, 6)
                return done
            run_id = secrets.token_hex(16)
            self.runs.begin_run(
                run_id=run_id,
                proposal_id=proposal.id,
                revision=stored.revision,
                digest=proposal.digest,
                repo=str(repo.path),
                base_ref=base_ref,
                actor=self.actor,
            )
            outcome = RunOutcome(
                run_id=run_id,
                proposal_id=proposal.id,
                revision=stored.revision,
                digest=proposal.digest,
                status="gate_failed",
                repo=str(repo.path),
                base=base_ref,
                base_commit=repo.resolve(base_ref),
            )
            rollback_seq: int | None = None
            try:
                rollback_seq = self._gates_and_rollout(repo, stored, outcome, rollout=rollout)
            finally:
                outcome.seconds = round(time.monotonic() - started, 6)
                self.runs.finish_run(
                    run_id,
                    status=outcome.status,
                    base_commit=outcome.base_commit,
                    outcome=outcome.model_dump(mode="json"),
                    actor=self.actor,
                    rollback_state=(rollback_seq, "warm") if rollback_seq is not None else None,
                )
            return outcome
        finally:
            repo.close()

    def not_yet_run(self, repo_path: Path) -> list[str]:
        """Approved, executable proposals with no finished run of their current digest on this repository."""
        from executor.models import Status

        repo = str(repo_path.resolve())
        done = {
            (r.proposal_id, r.digest)
            for r in self.runs.runs()
            if r.repo == repo and r.status in ("rolled_out", "gate_failed", "validated")
        }
        return [
            s.id
            for s in self.store.summaries(status=Status.APPROVED)
            if s.executable and (s.id, s.digest) not in done
        ]

    def _already_rolled_out(self, repo: TargetRepo, proposal: Proposal, base_ref: str) -> RunOutcome | None:
        record = self.runs.latest_rollback(proposal.id, str(repo.path))
        tip = repo.resolve(base_ref)
        if (
            record is None
            or record.state != "warm"
            or record.digest != proposal.digest
            or record.base_ref != base_ref
            or tip is None
            or not repo.is_ancestor(record.rollout_commit, tip)
        ):
            return None
        return RunOutcome(
            proposal_id=proposal.id,
            revision=record.revision,
            digest=proposal.digest,
            status="already_rolled_out",
            repo=str(repo.path),
            base=base_ref,
            base_commit=tip,
            branch=proposal_branch(proposal.id),
            rollout_commit=record.rollout_commit,
            rollback=RollbackArtifact(
                ref=record.ref,
                commit=record.revert_commit,
                rollout_commit=record.rollout_commit,
                proven=True,
                reversible=True,
                plugins=[Rollback.model_validate(p) for p in record.plugins],
            ),
            notes=[f"rolled out by run {record.run_id} at {record.created_at:%Y-%m-%d %H:%M:%S} UTC"],
        )

    # -- the gates -----------------------------------------------------------------------

    def _gate(self, outcome: RunOutcome, name: str, body: Callable[[], str | None]) -> bool:
        """Run one gate: ``body`` returns why it failed, or None."""
        self.progress(name, "")
        began = time.monotonic()
        message = body()
        outcome.gates.append(
            GateOutcome(
                name=name, ok=message is None, seconds=round(time.monotonic() - began, 6), message=message
            )
        )
        return message is None

    def _gates_and_rollout(
        self, repo: TargetRepo, stored: StoredProposal, outcome: RunOutcome, *, rollout: bool
    ) -> int | None:
        from executor.basetree import GitTree
        from executor.validation import validate

        proposal = stored.proposal
        base_commit = outcome.base_commit
        assert base_commit is not None
        if not self._gate(outcome, "approval", lambda: _approval_problem(stored)):
            return None
        if not self._gate(
            outcome, "paths", lambda: self._path_problems(repo, proposal, base_commit, outcome)
        ):
            return None
        report = validate(
            proposal.files,
            GitTree(repo, base_commit),
            self.plugins,
            self.settings,
            self.sandboxes,
            progress=self._validation_progress,
        )
        outcome.diagnostics += report.diagnostics
        for gate in report.gates:
            failed = [d for d in report.diagnostics if d.is_error]
            message = (
                None
                if gate.ok
                else f"{len(failed)} error(s); first: {failed[0].location()}: {failed[0].message}"
                if failed
                else "failed"
            )
            outcome.gates.append(
                GateOutcome(
                    name=gate.name, ok=gate.ok, seconds=gate.seconds, skipped=gate.skipped, message=message
                )
            )
        # The branch exists whatever the gates said: a failed proposal is kept for inspection.
        change = Change({f.path: f.content for f in proposal.files})
        commit = repo.write_commit(
            [base_commit], base_commit, change, commit_message(proposal, _approver(stored))
        )
        branch = proposal_branch(proposal.id)
        repo.update_ref(branch, commit, repo.resolve(branch), f"executor: proposal {proposal.id}")
        outcome.branch, outcome.commit = branch, commit
        if not report.ok:
            return None
        if not rollout:
            outcome.status = "validated"
            return None
        return self._roll_out(repo, stored, outcome, change, report.rollbacks)

    def _validation_progress(self, gate: str, plugin: str) -> None:
        self.progress(gate, plugin)
        if gate == "sandbox":
            crash_point("gates")

    def _path_problems(
        self, repo: TargetRepo, proposal: Proposal, base_commit: str, outcome: RunOutcome
    ) -> str | None:
        limits = self.settings.limits
        problems = [p for f in proposal.files for p in file_problems(f, limits)] + set_problems(
            proposal.files, limits
        )
        found = [
            Diagnostic(plugin="executor", path=p.path, severity=Level.ERROR, code=p.code, message=p.message)
            for p in problems
            if p.level is Level.ERROR
        ]
        paths = [f.path for f in proposal.files]
        for line in repo.rules(base_commit).problems(paths) + repo.tree_problems(base_commit, paths):
            path, _, message = line.partition(": ")
            found.append(
                Diagnostic(
                    plugin="executor",
                    path=path,
                    severity=Level.ERROR,
                    code="path.repository",
                    message=message,
                )
            )
        outcome.diagnostics += found
        return (
            None
            if not found
            else f"{len(found)} path or content problem(s); first: {found[0].path}: {found[0].message}"
        )

    # -- rollout ---------------------------------------------------------------------------

    def _roll_out(
        self,
        repo: TargetRepo,
        stored: StoredProposal,
        outcome: RunOutcome,
        change: Change,
        plugin_rollbacks: list[Rollback],
    ) -> int | None:
        from executor_rollback.records import keep_artifacts
        from executor_rollback.revert import prepare_revert

        proposal = stored.proposal
        commit, base_commit = outcome.commit, outcome.base_commit
        assert commit is not None
        assert base_commit is not None
        paths = sorted(change.files)
        seq: int | None = None

        def rollout() -> str | None:
            nonlocal seq
            for _attempt in range(5):
                tip = repo.resolve(outcome.base)
                if tip is None:
                    return f"the base branch {outcome.base} was deleted during the run"
                if tip == base_commit:
                    target, merged = commit, False
                else:
                    conflicts = sorted(repo.changed_paths(base_commit, tip) & set(paths))
                    if conflicts:
                        return (
                            f"the base moved to {tip[:12]} and changed the same paths: {', '.join(conflicts)}; "
                            "nothing was rolled out"
                        )
                    in_the_way = repo.tree_problems(tip, paths)
                    if in_the_way:
                        return f"the base moved to {tip[:12]}: {'; '.join(in_the_way)}"
                    target = repo.write_commit(
                        [tip, commit],
                        tip,
                        change,
                        f"Merge {proposal_branch(proposal.id).removeprefix('refs/heads/')} into "
                        f"{outcome.base.removeprefix('refs/heads/')}\n\nProposal-Id: {proposal.id}\n",
                    )
                    merged = True
                revert = prepare_revert(repo, proposal.id, tip, target, paths)
                files = keep_artifacts(self.settings.home, proposal.id, plugin_rollbacks)
                seq = self.runs.add_rollback(
                    {
                        "proposal_id": proposal.id,
                        "revision": stored.revision,
                        "digest": proposal.digest,
                        "run_id": outcome.run_id or "",
                        "repo": str(repo.path),
                        "base_ref": outcome.base,
                        "ref": rollback_ref(proposal.id),
                        "rollout_commit": target,
                        "revert_commit": revert.commit,
                        "files": revert.files,
                        "plugins": [r.model_dump(mode="json") for r in plugin_rollbacks],
                        "proof": revert.proof,
                    }
                )
                repo.update_ref(
                    rollback_ref(proposal.id),
                    revert.commit,
                    repo.resolve(rollback_ref(proposal.id)),
                    "executor: rollback prepared",
                )
                crash_point("recorded")
                if not repo.update_ref(
                    outcome.base, target, tip, f"executor: roll out proposal {proposal.id}"
                ):
                    self.runs.set_rollback_state(seq, "abandoned", actor=self.actor)
                    seq = None
                    continue  # the base moved under us: look again
                crash_point("rolled_out")
                outcome.base_commit, outcome.rollout_commit, outcome.merged = tip, target, merged
                outcome.status = "rolled_out"
                outcome.rollback = RollbackArtifact(
                    ref=rollback_ref(proposal.id),
                    commit=revert.commit,
                    rollout_commit=target,
                    proven=True,
                    reversible=True,
                    plugins=plugin_rollbacks,
                    files=files,
                )
                for worktree in repo.checked_out_at(outcome.base):
                    outcome.notes.append(
                        f"{worktree} has {outcome.base.removeprefix('refs/heads/')} checked out and now trails it; "
                        f"bring its files up to date with: git -C {worktree} read-tree -m -u {tip[:12]} HEAD"
                    )
                return None
            return "the base branch kept moving during the rollout; retry"

        with repo.rollout_lock():
            self._gate(outcome, "rollout", rollout)
        return seq


def _approver(stored: StoredProposal) -> str:
    return stored.decision.actor if stored.decision is not None else "unknown"


def _approval_problem(stored: StoredProposal) -> str | None:
    proposal = stored.proposal
    if stored.status is not Status.APPROVED or stored.decision is None:
        state = stored.status.value
        return (
            f"proposal {proposal.id} is {state}, not approved for its current digest {proposal.digest[:12]}; "
            f"approve it with: executor approve {proposal.id}"
        )
    if stored.decision.digest != proposal.digest:
        return f"the approval is bound to digest {stored.decision.digest[:12]}, not the current {proposal.digest[:12]}"
    if proposal.block_execution and not stored.decision.override_reason:
        return f"proposal {proposal.id} is blocked by its report and the approval did not override the block"
    return None


def outcome_json(outcome: RunOutcome) -> dict[str, Any]:
    data = outcome.model_dump(mode="json")
    data["exit_code"] = int(outcome.exit_code)
    return data
