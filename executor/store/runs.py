"""Runs and rollback artifacts: what each ``executor run`` did to which repository, and the way back.

A rollback artifact is recorded ``pending`` before the base branch moves and
becomes ``warm`` once it has: a run killed between the two leaves a pending
record that the next command settles by looking at the branch (rolled out:
warm; not: abandoned). Every change is one transaction with its audit entry.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row

from executor.store.proposals import ProposalStore, utcnow
from executor.store.schema import rollbacks, runs


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    proposal_id: str
    revision: int
    digest: str
    repo: str
    base_ref: str
    base_commit: str | None
    status: str
    pid: int
    host: str
    started_at: datetime
    finished_at: datetime | None
    outcome: dict[str, Any] | None


@dataclass(frozen=True)
class RollbackRecord:
    seq: int
    proposal_id: str
    revision: int
    digest: str
    run_id: str
    repo: str
    base_ref: str
    ref: str
    rollout_commit: str
    revert_commit: str
    files: dict[str, dict[str, Any]]  # path -> before/after blob and mode (None: absent)
    plugins: list[dict[str, Any]]
    proof: dict[str, Any]
    state: str
    created_at: datetime
    applied_at: datetime | None
    applied_commit: str | None


def _run(row: Row[Any]) -> RunRecord:
    return RunRecord(**{key: row._mapping[key] for key in RunRecord.__dataclass_fields__})


def _rollback(row: Row[Any]) -> RollbackRecord:
    return RollbackRecord(**{key: row._mapping[key] for key in RollbackRecord.__dataclass_fields__})


class RunStore:
    """Runs and rollback records, on the proposal store's database."""

    def __init__(self, proposals: ProposalStore) -> None:
        self.proposals = proposals
        self._transaction = proposals._transaction
        self._audit = proposals._audit

    def note(
        self, event: str, actor: str, proposal_id: str, detail: dict[str, Any], revision: int | None = None
    ) -> None:
        """An audit entry for what changed no state: a refused run or rollback, a rollback that was a no-op."""
        with self._transaction() as connection:
            self._audit(connection, event, actor, proposal_id[:128], revision, detail, utcnow())

    def begin_run(
        self,
        *,
        run_id: str,
        proposal_id: str,
        revision: int,
        digest: str,
        repo: str,
        base_ref: str,
        actor: str,
    ) -> None:
        now = utcnow()
        with self._transaction() as connection:
            connection.execute(
                insert(runs).values(
                    run_id=run_id,
                    proposal_id=proposal_id,
                    revision=revision,
                    digest=digest,
                    repo=repo,
                    base_ref=base_ref,
                    status="running",
                    pid=os.getpid(),
                    host=socket.gethostname(),
                    started_at=now,
                )
            )
            detail = {"run_id": run_id, "repo": repo, "base": base_ref, "digest": digest}
            self._audit(connection, "run_started", actor, proposal_id, revision, detail, now)

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        base_commit: str | None,
        outcome: dict[str, Any],
        actor: str,
    ) -> bool:
        """The run's outcome, with the audit entry, in one transaction; False if it had finished already.

        Only a running run finishes: two threads recovering the same crashed
        run write its end once.
        """
        now = utcnow()
        with self._transaction() as connection:
            row = connection.execute(select(runs).where(runs.c.run_id == run_id)).one()
            if row.status != "running":
                return False
            connection.execute(
                update(runs)
                .where(runs.c.run_id == run_id)
                .values(status=status, base_commit=base_commit, finished_at=now, outcome=outcome)
            )
            detail = {
                "run_id": run_id,
                "status": status,
                "commit": outcome.get("commit"),
                "rollout_commit": outcome.get("rollout_commit"),
            }
            self._audit(connection, f"run_{status}", actor, row.proposal_id, row.revision, detail, now)
        return True

    def runs(self, proposal_id: str | None = None, *, status: str | None = None) -> list[RunRecord]:
        query = select(runs).order_by(runs.c.started_at)
        if proposal_id is not None:
            query = query.where(runs.c.proposal_id == proposal_id)
        if status is not None:
            query = query.where(runs.c.status == status)
        with self._transaction() as connection:
            return [_run(row) for row in connection.execute(query)]

    def add_rollback(self, record: dict[str, Any]) -> int:
        """Record a built and proven rollback as ``pending`` (its rollout has not happened yet).

        Durable before it returns: the base branch moves next, and a record lost
        to a power cut after that would leave a rollout with no way back.
        """
        with self._transaction(durable=True) as connection:
            result = connection.execute(
                insert(rollbacks).values(**record, state="pending", created_at=utcnow())
            )
            assert result.inserted_primary_key is not None
            return int(result.inserted_primary_key[0])

    def set_rollback_state(
        self,
        seq: int,
        state: str,
        *,
        actor: str,
        applied_commit: str | None = None,
        expected: str | None = None,
    ) -> bool:
        """Move a record to ``state`` (only from ``expected``, when given); False if it was not in that state."""
        now = utcnow()
        values: dict[str, Any] = {"state": state, "applied_commit": applied_commit}
        if state == "applied":
            values["applied_at"] = now
        # A write-ahead state (the base moves next) must outlive a power cut, as add_rollback's record does.
        with self._transaction(durable=state == "rolling_back") as connection:
            row = connection.execute(select(rollbacks).where(rollbacks.c.seq == seq)).one()
            if expected is not None and row.state != expected:
                return False
            connection.execute(update(rollbacks).where(rollbacks.c.seq == seq).values(**values))
            detail = {"ref": row.ref, "state": state, "from": row.state}
            if applied_commit:
                detail["commit"] = applied_commit
            event = "rolled_back" if state == "applied" else f"rollback_{state}"
            self._audit(connection, event, actor, row.proposal_id, row.revision, detail, now)
        return True

    def rollbacks(
        self,
        *,
        proposal_id: str | None = None,
        repo: str | None = None,
        state: str | tuple[str, ...] | None = None,
    ) -> list[RollbackRecord]:
        """Rollback records, oldest first; ``state``: one, or any of several."""
        query = select(rollbacks).order_by(rollbacks.c.seq)
        if proposal_id is not None:
            query = query.where(rollbacks.c.proposal_id == proposal_id)
        if repo is not None:
            query = query.where(rollbacks.c.repo == repo)
        if state is not None:
            query = query.where(rollbacks.c.state.in_((state,) if isinstance(state, str) else state))
        with self._transaction() as connection:
            return [_rollback(row) for row in connection.execute(query)]
