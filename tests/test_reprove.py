"""Proving a rebuilt revert again: what refuses before any sandbox is used (the sandbox path: tests/test_run.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from executor_rollback.reprove import prove_rebuilt
from executor_rollback.revert import RollbackFailed

from executor.gitrepo import TargetRepo
from executor.plugin_api import Rollback
from executor.store.runs import RollbackRecord
from tests.conftest import commit_file, git


def record(*rollbacks: Rollback) -> RollbackRecord:
    return RollbackRecord(
        seq=1,
        proposal_id="p-1",
        revision=1,
        digest="d",
        run_id="r",
        repo="k",
        base_ref="refs/heads/main",
        ref="refs/rollbacks/p-1/r",
        rollout_commit="0" * 40,
        revert_commit="0" * 40,
        files={},
        plugins=[r.model_dump(mode="json") for r in rollbacks],
        proof={},
        state="stale",
        created_at=datetime.now(UTC),
        applied_at=None,
        applied_commit=None,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[TargetRepo]:
    git(tmp_path, "init", "-q", "-b", "main")
    commit_file(tmp_path, "a.sql", "CREATE TABLE a (id int);\n")
    target = TargetRepo(tmp_path)
    yield target
    target.close()


def prove(repo: TargetRepo, *rollbacks: Rollback) -> list[str]:
    tip = git(repo.path, "rev-parse", "HEAD")
    return prove_rebuilt(repo, record(*rollbacks), tip, tip)


def test_nothing_to_prove_without_a_reversible_plugin_rollback(repo: TargetRepo) -> None:
    assert prove(repo) == []
    assert prove(repo, Rollback(plugin="gone", reversible=True)) == [], "no artifact: reverting git is all"


def test_a_rollback_whose_plugin_is_gone_or_cannot_prove_it_again_is_refused(repo: TargetRepo) -> None:
    with pytest.raises(RollbackFailed) as refused:
        prove(
            repo,
            Rollback(plugin="gone", reversible=True, artifacts={"down.sql": "DROP TABLE a;"}),
            Rollback(plugin="javascript", reversible=True, artifacts={"undo.js": ""}),
        )
    message = refused.value.message
    assert "so nothing was changed" in message
    assert "plugin 'gone', which made this rollback, is not installed" in message
    assert "plugin 'javascript' cannot prove its rollback on a moved base" in message
    assert refused.value.hint == "roll back the later changes first, or revert by hand"
