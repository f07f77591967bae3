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

import hashlib
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from executor import __version__
from executor.config import Settings
from executor.crash import crash_point
from executor.diagnostics import Diagnostic
from executor.errors import ExitCode, InfrastructureError, RefusedError
from executor.gitrepo import BLOB, EXECUTABLE, Change, TargetRepo
from executor.models import Level, Proposal, Status
from executor.plugin_api import Rollback
from executor.report import file_problems, set_problems
from executor.validation import GateResult, gate_message

if TYPE_CHECKING:
    from executor_sandbox.pool import Sandboxes

    from executor.plugins import Plugins
    from executor.store import ProposalStore
    from executor.store.proposals import StoredProposal
    from executor.store.runs import RollbackRecord, RunStore
    from executor.validation import ValidationReport

Progress = Callable[[str, str], None]


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
    status: Literal["rolled_out", "validated", "gate_failed", "already_rolled_out", "error"]
    repo: str
    base: str
    base_commit: str | None = None
    branch: str | None = None
    commit: str | None = None
    rollout_commit: str | None = None
    merged: bool = False
    gates: list[GateResult] = Field(default_factory=list)
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    rollback: RollbackArtifact | None = None
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> ExitCode:
        if self.status == "error":
            return ExitCode.INFRASTRUCTURE
        return ExitCode.GATE_FAILED if self.status == "gate_failed" else ExitCode.OK

    @property
    def failed_gate(self) -> GateResult | None:
        return next((g for g in self.gates if not g.ok and not g.skipped), None)


def _rollout_error(path: str, code: str, message: str, advice: str) -> Diagnostic:
    return Diagnostic(
        plugin="executor",
        path=path,
        severity=Level.ERROR,
        code=code,
        message=f"{message}; nothing was rolled out: {advice}",
    )


def git_blob_id(data: bytes) -> str:
    """The id git gives a blob of ``data`` (SHA-1 repositories, the only kind written)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def proposal_branch(proposal_id: str) -> str:
    return f"refs/heads/proposals/{proposal_id}"


def rollback_ref(proposal_id: str, run_id: str) -> str:
    """One ref per rollout: a later run never unprotects an earlier run's revert commit."""
    return f"refs/rollbacks/{proposal_id}/{run_id}"


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
        try:
            stored, repo, base_ref, base_commit = self._prepare(proposal_id, repo_path, base)
        except RefusedError as exc:  # exit 2 before the run began: audited too
            detail = {"repo": str(repo_path), "base": base, "error": exc.message, "hint": exc.hint}
            self.runs.note("run_refused", self.actor, proposal_id, detail)
            raise
        proposal = stored.proposal
        try:
            run_id = secrets.token_hex(16)
            self.runs.begin_run(
                run_id=run_id,
                proposal_id=proposal.id,
                revision=stored.revision,
                digest=proposal.digest,
                repo=repo.key,
                base_ref=base_ref,
                actor=self.actor,
            )
            outcome = RunOutcome(
                run_id=run_id,
                proposal_id=proposal.id,
                revision=stored.revision,
                digest=proposal.digest,
                status="error",  # until the run says otherwise: an exception is recorded as such
                repo=str(repo.path),
                base=base_ref,
                base_commit=base_commit,
            )
            try:
                self._execute(repo, stored, outcome, rollout=rollout)
            finally:
                outcome.seconds = round(time.monotonic() - started, 6)
                self.runs.finish_run(
                    run_id,
                    status=outcome.status,
                    base_commit=outcome.base_commit,
                    outcome=outcome.model_dump(mode="json"),
                    actor=self.actor,
                )
            return outcome
        finally:
            repo.close()

    def _prepare(
        self, proposal_id: str, repo_path: Path, base: str | None
    ) -> tuple[StoredProposal, TargetRepo, str, str]:
        """The proposal, the open repository, the base branch and its commit; refused if any is missing."""
        from executor_rollback.records import recover_runs, settle

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
            base_ref = repo.base_branch(base)
            base_commit = repo.resolve(base_ref)
            if base_commit is None:
                raise RefusedError(
                    f"{base_ref} in {repo.path} has no commit yet", hint="commit to it first, or pass --base"
                )
            recover_runs(self.runs, self.actor)
            settle(repo, self.runs, self.actor)
        except BaseException:
            repo.close()
            raise
        return stored, repo, base_ref, base_commit

    def not_yet_run(self, repo_path: Path, base: str | None) -> list[str]:
        """Approved, executable proposals not yet run to an end on this repository's base branch.

        Done: rolled out (or found already there), or failed a gate of its
        own (approval, paths, checks, sandbox, rollback proof). Not done: a
        run that raised (Docker down), was only validated, or lost the
        rollout to a moving base; those are run again.
        """
        from executor.models import Status

        repo = TargetRepo(repo_path)
        try:
            key, base_ref = repo.key, repo.base_branch(base)
        finally:
            repo.close()
        done = set()
        for run in self.runs.runs():
            if run.repo != key or run.base_ref != base_ref:
                continue
            if run.status in ("rolled_out", "already_rolled_out"):
                done.add((run.proposal_id, run.digest))
            elif run.status == "gate_failed":
                failed = [
                    g
                    for g in (run.outcome or {}).get("gates", [])
                    if not g.get("ok") and not g.get("skipped")
                ]
                if failed and failed[0].get("name") != "rollout":
                    done.add((run.proposal_id, run.digest))
        return [
            s.id
            for s in self.store.summaries(status=Status.APPROVED)
            if s.executable and (s.id, s.digest) not in done
        ]

    def _already_in_base(
        self, repo: TargetRepo, proposal: Proposal, base_ref: str, tip: str
    ) -> RollbackRecord | None:
        """The rollout of this digest that the base still holds exactly (files and modes), if any."""
        for record in reversed(self.runs.rollbacks(proposal_id=proposal.id, repo=repo.key)):
            if record.base_ref != base_ref or record.state != "warm" or record.digest != proposal.digest:
                continue
            if not repo.is_ancestor(record.rollout_commit, tip):
                continue
            for path, image in record.files.items():
                entry = repo.entry(tip, path)
                if entry is None or (entry.sha, entry.mode) != (
                    image["after"],
                    image.get("after_mode", BLOB),
                ):
                    return None  # reverted or changed since: run it again
            return record
        return None

    def _report_already(self, outcome: RunOutcome, record: RollbackRecord) -> None:
        outcome.status = "already_rolled_out"
        outcome.rollout_commit = record.rollout_commit
        outcome.branch = proposal_branch(record.proposal_id)
        outcome.rollback = RollbackArtifact(
            ref=record.ref,
            commit=record.revert_commit,
            rollout_commit=record.rollout_commit,
            proven=bool(record.proof),
            reversible=True,
            plugins=[Rollback.model_validate(p) for p in record.plugins],
        )
        outcome.notes.append(
            f"already rolled out in {record.rollout_commit[:12]} by run {record.run_id} "
            f"at {record.created_at:%Y-%m-%d %H:%M:%S} UTC; nothing to do"
        )

    # -- the gates -----------------------------------------------------------------------

    def _gate(self, outcome: RunOutcome, name: str, body: Callable[[], str | None]) -> bool:
        """Run one gate: ``body`` returns why it failed, or None."""
        self.progress(name, "")
        began = time.monotonic()
        message = body()
        outcome.gates.append(
            GateResult(
                name=name, ok=message is None, seconds=round(time.monotonic() - began, 6), message=message
            )
        )
        if message is not None:
            outcome.status = "gate_failed"
        return message is None

    def _validate(self, repo: TargetRepo, proposal: Proposal, at: str) -> ValidationReport:
        from executor.basetree import GitTree
        from executor.validation import validate

        return validate(
            proposal.files,
            GitTree(repo, at),
            self.plugins,
            self.settings,
            self.sandboxes,
            progress=self._validation_progress,
        )

    def _execute(
        self, repo: TargetRepo, stored: StoredProposal, outcome: RunOutcome, *, rollout: bool
    ) -> None:
        proposal = stored.proposal
        base_commit = outcome.base_commit
        assert base_commit is not None
        record = self._already_in_base(repo, proposal, outcome.base, base_commit)
        if record is not None:
            self._report_already(outcome, record)
            return
        if not self._gate(outcome, "approval", lambda: _approval_problem(stored)):
            return
        if not self._gate(
            outcome, "paths", lambda: self._path_problems(repo, proposal, base_commit, outcome)
        ):
            return
        report = self._validate(repo, proposal, base_commit)
        outcome.diagnostics += report.diagnostics
        for gate in report.gates:
            message = gate.message or (None if gate.ok or gate.skipped else "failed")
            outcome.gates.append(gate.model_copy(update={"message": message}))
        change = file_change(repo, proposal, base_commit)
        commit = repo.write_commit(
            [base_commit], base_commit, change, commit_message(proposal, _approver(stored))
        )
        if repo.commit(commit).tree.hexsha == repo.commit(base_commit).tree.hexsha:
            outcome.status = "already_rolled_out"
            outcome.notes.append(
                "the base already holds every file exactly as the proposal writes it; nothing to do"
            )
            return
        # The branch exists whatever the gates said: a failed proposal is kept for inspection.
        branch = proposal_branch(proposal.id)
        for _attempt in range(3):
            if repo.update_ref(branch, commit, repo.resolve(branch), f"executor: proposal {proposal.id}"):
                break
        else:
            raise InfrastructureError(f"{branch} kept moving while this run wrote it; rerun")
        outcome.branch, outcome.commit = branch, commit
        if not report.ok:
            outcome.status = "gate_failed"
            return
        if not rollout:
            outcome.status = "validated"
            return
        self._roll_out(repo, stored, outcome, change, report.rollbacks)

    def _validation_progress(self, gate: str, detail: str) -> None:
        self.progress(gate, detail)
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
        found += self._other_proposals_files(repo, proposal, outcome.base, base_commit)
        outcome.diagnostics += found
        return gate_message(found)

    def _other_proposals_files(
        self, repo: TargetRepo, proposal: Proposal, base_ref: str, base_commit: str
    ) -> list[Diagnostic]:
        """Files the base holds exactly as another proposal's live rollout wrote them, which this one would replace.

        Two proposals writing one path (seeds 002 and 003 both write
        generated_1.sql) conflict whichever runs second: replacing the first
        one's file would undo it with no word. A file changed since by
        anyone is no longer that proposal's, and is updated as any file is.
        """
        writes = {f.path: git_blob_id(f.content) for f in proposal.files}
        found: list[Diagnostic] = []
        for record in self.runs.rollbacks(repo=repo.key, state="warm"):
            if record.proposal_id == proposal.id or record.base_ref != base_ref:
                continue
            for path in sorted(writes.keys() & record.files.keys()):
                after = record.files[path]
                entry = repo.entry(base_commit, path)
                if entry is None or (entry.sha, entry.mode) != (
                    after["after"],
                    after.get("after_mode", BLOB),
                ):
                    continue
                if writes[path] == entry.sha:
                    continue  # the same bytes: nothing would be replaced
                found.append(
                    Diagnostic(
                        plugin="executor",
                        path=path,
                        severity=Level.ERROR,
                        code="path.conflict",
                        message=f"holds what proposal {record.proposal_id} rolled out in "
                        f"{record.rollout_commit[:12]}; this proposal would replace it. Roll that one "
                        f"back first (executor rollback {record.proposal_id}), or merge the two by hand",
                    )
                )
        return found

    # -- rollout ---------------------------------------------------------------------------

    def _roll_out(
        self,
        repo: TargetRepo,
        stored: StoredProposal,
        outcome: RunOutcome,
        change: Change,
        plugin_rollbacks: list[Rollback],
    ) -> None:
        """Up to three rounds: a base that moved on elsewhere gets the proposal judged again on it first.

        The lock is held through a re-validation: other runs' rollouts wait
        for it, so concurrent runs (--all-approved -j N) cannot keep moving
        the base under this one. No run holds a sandbox while it waits for
        the lock, so taking one here cannot deadlock.
        """
        began = time.monotonic()
        validated_on = outcome.base_commit
        assert validated_on is not None
        message: str | None = "the base branch kept moving during the rollout; rerun"
        self.progress("rollout", "")
        with repo.rollout_lock():
            for _round in range(3):
                message, again = self._attempt_rollout(
                    repo, stored, outcome, change, validated_on, plugin_rollbacks
                )
                if again is None:
                    break
                # The base moved on without touching the proposal's paths: judge it again on the new
                # base (its SQL baseline, its rules) before a merge commit makes the two live together.
                report = self._validate(repo, stored.proposal, again)
                if not report.ok:
                    outcome.diagnostics += report.diagnostics
                    why = gate_message([d for d in report.diagnostics if d.is_error]) or "a plugin failed"
                    message = f"the base moved to {again[:12]} and the proposal fails on it: {why}"
                    break
                validated_on, plugin_rollbacks = again, report.rollbacks
                message = "the base branch kept moving during the rollout; rerun"
        if outcome.status == "already_rolled_out":
            return
        outcome.gates.append(
            GateResult(
                name="rollout",
                ok=message is None,
                seconds=round(time.monotonic() - began, 6),
                message=message,
            )
        )
        if message is not None:
            outcome.status = "gate_failed"

    def _attempt_rollout(
        self,
        repo: TargetRepo,
        stored: StoredProposal,
        outcome: RunOutcome,
        change: Change,
        validated_on: str,
        plugin_rollbacks: list[Rollback],
    ) -> tuple[str | None, str | None]:
        """Under the rollout lock: ``(why it failed, None)``, ``(None, tip to validate on first)``, or ``(None, None)`` when done."""
        from executor_rollback.records import keep_artifacts
        from executor_rollback.revert import prepare_revert

        proposal = stored.proposal
        commit, base_commit = outcome.commit, outcome.base_commit
        assert commit is not None
        assert base_commit is not None
        paths = sorted(change.files)
        tip = repo.resolve(outcome.base)
        if tip is None:
            return f"the base branch {outcome.base} was deleted during the run", None
        now = self.store.get(proposal.id)
        if now.proposal.digest != proposal.digest or _approval_problem(now) is not None:
            return (
                "the approval was withdrawn or the proposal changed during the run; nothing was rolled out",
                None,
            )
        record = self._already_in_base(repo, proposal, outcome.base, tip)
        if record is not None:  # a concurrent run of the same proposal got there first
            self._report_already(outcome, record)
            return None, None
        if tip != validated_on:
            if not repo.is_ancestor(validated_on, tip):
                return (
                    f"{outcome.base} was rewritten during the run ({validated_on[:12]} is no longer in it); "
                    "nothing was rolled out: rerun on the rewritten branch"
                ), None
            conflicts = sorted(repo.changed_paths(base_commit, tip) & set(paths))
            moved = f"the base moved to {tip[:12]}"
            outcome.diagnostics += [  # located too, so CI shows them on the file (SARIF, JUnit)
                _rollout_error(
                    path,
                    "rollout.conflict",
                    f"{moved} and changed this file too",
                    # a rerun would write the proposal's whole file over that change
                    "merge that change into the proposal, or have it proposed again on the new base",
                )
                for path in conflicts
            ]
            if conflicts:
                return (
                    f"{moved} and changed the same paths: {', '.join(conflicts)}; nothing was rolled out",
                    None,
                )
            in_the_way = repo.rules(tip).problems(paths) + repo.tree_problems(tip, paths)
            outcome.diagnostics += [
                _rollout_error(
                    line.partition(": ")[0],
                    "path.repository",
                    f"{moved}: {line.partition(': ')[2]}",
                    "run it again once the base allows the path",
                )
                for line in in_the_way
            ]
            if in_the_way:
                return f"{moved}: {'; '.join(in_the_way)}", None
            return None, tip
        if tip == base_commit:
            target, merged = commit, False
        else:
            target = repo.write_commit(
                [tip, commit],
                tip,
                Change(change.files, file_change(repo, proposal, tip).modes),
                f"Merge {proposal_branch(proposal.id).removeprefix('refs/heads/')} into "
                f"{outcome.base.removeprefix('refs/heads/')}\n\nProposal-Id: {proposal.id}\n",
            )
            merged = True
        revert = prepare_revert(repo, proposal.id, tip, target, paths)
        files = keep_artifacts(self.settings.home, proposal.id, str(outcome.run_id), plugin_rollbacks)
        ref = rollback_ref(proposal.id, str(outcome.run_id))
        seq = self.runs.add_rollback(
            {
                "proposal_id": proposal.id,
                "revision": stored.revision,
                "digest": proposal.digest,
                "run_id": outcome.run_id or "",
                "repo": repo.key,
                "base_ref": outcome.base,
                "ref": ref,
                "rollout_commit": target,
                "revert_commit": revert.commit,
                "files": revert.files,
                "plugins": [r.model_dump(mode="json") for r in plugin_rollbacks],
                "proof": revert.proof,
            }
        )
        if not repo.update_ref(ref, revert.commit, repo.resolve(ref), "executor: rollback prepared"):
            raise InfrastructureError(f"{ref} moved while this run wrote it; nothing was rolled out, rerun")
        crash_point("recorded")
        if not repo.update_ref(outcome.base, target, tip, f"executor: roll out proposal {proposal.id}"):
            self.runs.set_rollback_state(seq, "abandoned", actor=self.actor)
            repo.delete_ref(ref, revert.commit)
            now_at = repo.resolve(outcome.base)
            return None, now_at if now_at is not None and repo.is_ancestor(
                validated_on, now_at
            ) else validated_on
        crash_point("rolled_out")
        self.runs.set_rollback_state(seq, "warm", actor=self.actor, expected="pending")
        outcome.base_commit, outcome.rollout_commit, outcome.merged = tip, target, merged
        outcome.status = "rolled_out"
        outcome.rollback = RollbackArtifact(
            ref=ref,
            commit=revert.commit,
            rollout_commit=target,
            proven=True,
            reversible=True,
            plugins=plugin_rollbacks,
            files=files,
        )
        try:
            for worktree in repo.checked_out_at(outcome.base):
                outcome.notes.append(
                    f"{worktree} has {outcome.base.removeprefix('refs/heads/')} checked out and its files now trail "
                    f"the branch: a commit made there now would undo the rollout; first run: "
                    f"git -C {worktree} read-tree -m -u {tip[:12]} HEAD"
                )
        except Exception as exc:  # the rollout happened: a note must not turn it into a failure
            outcome.notes.append(f"could not list work trees that have the base checked out: {exc}")
        return None, None


def file_change(repo: TargetRepo, proposal: Proposal, at: str) -> Change:
    """The proposal's files as a change onto ``at``: a file that exists keeps its mode (an executable stays one)."""
    modes = {}
    for f in proposal.files:
        entry = repo.entry(at, f.path)
        if entry is not None and entry.mode in (BLOB, EXECUTABLE):
            modes[f.path] = entry.mode
    return Change({f.path: f.content for f in proposal.files}, modes)


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
