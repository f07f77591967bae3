"""``kill -9`` during ``executor run``: the base is untouched or fully rolled out with its artifact, never between.

Known points (``EXECUTOR_TEST_KILL_AT``: a real SIGKILL at a named place) and
random moments; afterwards the next run or ``executor doctor`` settles what
was left, and nothing is left that needs a human.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
from executor_sandbox import labels
from executor_sandbox.pool import Sandboxes

from executor.run import proposal_branch
from tests.conftest import SEED_IDS, Cli, git, run_executor, seed

pytestmark = pytest.mark.docker


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "target"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# app\n")
    git(path, "add", "README.md")
    git(path, "-c", "core.hooksPath=/dev/null", "commit", "-qm", "init")
    return path


@pytest.fixture
def proposal(run_cli: Cli) -> str:
    assert run_cli("ingest", seed("003")).exit_code == 0
    assert run_cli("approve", SEED_IDS["003"], "--by", "tester").exit_code == 0
    return SEED_IDS["003"]


def start(repo: Path, proposal_id: str, kill_at: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ}
    if kill_at:
        env["EXECUTOR_TEST_KILL_AT"] = kill_at
    return subprocess.Popen(
        [sys.executable, "-m", "executor", "run", proposal_id, "--repo", str(repo), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def assert_untouched_or_rolled_out(repo: Path, base: str, proposal_id: str) -> str:
    """Either the base is as it was, or it holds the rollout and a revert that restores the old tree."""
    tip = git(repo, "rev-parse", "main")
    if tip == base:
        return "untouched"
    assert git(repo, "show", f"{tip}:generated_1.sql").startswith("CREATE TABLE IF NOT EXISTS users")
    refs = git(repo, "for-each-ref", "--format=%(refname)", f"refs/rollbacks/{proposal_id}/").split()
    reverts = [git(repo, "rev-parse", ref) for ref in refs]
    [revert] = [r for r in reverts if git(repo, "rev-parse", f"{r}^") == tip]  # this rollout's revert
    assert git(repo, "rev-parse", f"{revert}^{{tree}}") == git(repo, "rev-parse", f"{base}^{{tree}}")
    return "rolled out"


def assert_nothing_left(repo: Path) -> None:
    git_dir = repo / ".git"
    assert not (git_dir / "index.lock").exists()
    assert not list(git_dir.glob("refs/heads/*.lock"))
    assert len(git(repo, "worktree", "list").splitlines()) == 1


@pytest.mark.parametrize(
    ("point", "expected"), [("gates", "untouched"), ("recorded", "untouched"), ("rolled_out", "rolled out")]
)
def test_kill_9_at_each_stage_then_the_next_run_settles_it(
    point: str,
    expected: str,
    repo: Path,
    proposal: str,
    sandboxes: Sandboxes,
    docker_client: docker.DockerClient,
) -> None:
    base = git(repo, "rev-parse", "main")
    killed = start(repo, proposal, kill_at=point)
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert assert_untouched_or_rolled_out(repo, base, proposal) == expected
    assert_nothing_left(repo)

    doctor = run_executor("doctor", "--json")
    [runs] = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "runs"]
    assert "settled 1 run(s)" in runs["detail"], runs
    assert ("rolled_out" if expected == "rolled out" else "crashed") in runs["detail"]
    if point == "recorded":
        assert git(repo, "for-each-ref", f"refs/rollbacks/{proposal}/") == "", (
            "the abandoned revert's ref is gone"
        )

    again = run_executor("run", proposal, "--repo", repo, "--json")
    assert again.returncode == 0, again.stderr
    status = json.loads(again.stdout)["status"]
    assert status == ("already_rolled_out" if expected == "rolled out" else "rolled_out")
    assert assert_untouched_or_rolled_out(repo, base, proposal) == "rolled out"
    assert git(repo, "rev-parse", proposal_branch(proposal))
    undone = run_executor("rollback", proposal, "--repo", repo)
    assert undone.returncode == 0, undone.stderr
    assert git(repo, "rev-parse", "main^{tree}") == git(repo, "rev-parse", f"{base}^{{tree}}")
    # The killed run's sandbox use is not left running: one-shot orphans are gone, warm ones were reclaimed.
    orphans = [
        c.name
        for c in docker_client.containers.list(all=True, filters=labels.app_filter())
        if c.labels.get(labels.PURPOSE) == labels.COLD
        and labels.owner_is_gone(c.labels.get(labels.OWNER, ""))
    ]
    assert orphans == []


def test_kill_9_at_random_moments_never_leaves_the_base_between(
    repo: Path, proposal: str, sandboxes: Sandboxes
) -> None:
    base = git(repo, "rev-parse", "main")
    rng = random.Random(20261121)
    for _ in range(6):
        process = start(repo, proposal)
        time.sleep(rng.uniform(0.2, 1.2))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=120)
        state = assert_untouched_or_rolled_out(repo, base, proposal)
        assert_nothing_left(repo)
        if state == "rolled out":
            assert run_executor("rollback", proposal, "--repo", repo).returncode == 0
            base = git(repo, "rev-parse", "main")  # the revert is the new base
    final = run_executor("run", proposal, "--repo", repo, "--json")
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout)["status"] in ("rolled_out", "already_rolled_out")


@pytest.mark.parametrize(("point", "moved"), [("rollback_recorded", False), ("rolled_back", True)])
def test_kill_9_during_a_rollback_is_settled_as_what_the_branch_shows(
    point: str, moved: bool, repo: Path, proposal: str, sandboxes: Sandboxes
) -> None:
    base = git(repo, "rev-parse", "main")
    assert run_executor("run", proposal, "--repo", repo).returncode == 0
    rolled_out = git(repo, "rev-parse", "main")
    killed = run_executor("rollback", proposal, "--repo", repo, env={"EXECUTOR_TEST_KILL_AT": point})
    assert killed.returncode == -signal.SIGKILL
    assert git(repo, "rev-parse", "main^{tree}") == git(
        repo, "rev-parse", f"{base if moved else rolled_out}^{{tree}}"
    )

    listed = run_executor("rollbacks", "--repo", repo, "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["state"] == ("applied" if moved else "warm"), "settled from the branch, not left rolling_back"

    again = run_executor("rollback", proposal, "--repo", repo, "--json")
    assert again.returncode == 0, again.stderr
    outcome = json.loads(again.stdout)
    assert outcome["status"] == ("already_rolled_back" if moved else "rolled_back")
    assert any("rollback 'down.sql'" in note for note in outcome["notes"]), "the database is still to undo"
    assert git(repo, "rev-parse", "main^{tree}") == git(repo, "rev-parse", f"{base}^{{tree}}")
    assert len(git(repo, "rev-list", f"{rolled_out}..main").split()) == 1, "one revert commit, never two"


def test_a_kill_9_rollback_is_settled_by_doctor(repo: Path, proposal: str, sandboxes: Sandboxes) -> None:
    assert run_executor("run", proposal, "--repo", repo).returncode == 0
    killed = run_executor("rollback", proposal, "--repo", repo, env={"EXECUTOR_TEST_KILL_AT": "rolled_back"})
    assert killed.returncode == -signal.SIGKILL
    doctor = run_executor("doctor", "--json")
    [runs] = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "runs"]
    assert "settled 1 rollback(s)" in runs["detail"], runs
    assert "rolled back in git; plugin 'sql' rollback 'down.sql'" in runs["detail"], runs


def test_a_base_moved_to_the_prepared_revert_by_hand_counts_as_rolled_back(
    repo: Path, proposal: str, sandboxes: Sandboxes
) -> None:
    assert run_executor("run", proposal, "--repo", repo).returncode == 0
    [ref] = git(repo, "for-each-ref", "--format=%(refname)", f"refs/rollbacks/{proposal}/").split()
    git(repo, "update-ref", "refs/heads/main", ref)
    [row] = json.loads(run_executor("rollbacks", "--repo", repo, "--json").stdout)
    assert row["state"] == "applied"
    again = run_executor("rollback", proposal, "--repo", repo, "--json")
    assert again.returncode == 0, again.stderr
    outcome = json.loads(again.stdout)
    assert outcome["status"] == "already_rolled_back"
    assert outcome["commit"] == git(repo, "rev-parse", ref) == git(repo, "rev-parse", "main")
    assert any("already holds the prepared revert" in note for note in outcome["notes"])
    assert any("rollback 'down.sql': apply it" in note for note in outcome["notes"])


def test_a_hand_made_revert_brought_back_by_hand_is_rolled_back_again(
    repo: Path, proposal: str, sandboxes: Sandboxes
) -> None:
    base = git(repo, "rev-parse", "main")
    assert run_executor("run", proposal, "--repo", repo).returncode == 0
    [ref] = git(repo, "for-each-ref", "--format=%(refname)", f"refs/rollbacks/{proposal}/").split()
    git(repo, "update-ref", "refs/heads/main", ref)
    git(repo, "reset", "-q", "--hard")
    git(repo, "-c", "core.hooksPath=/dev/null", "revert", "--no-edit", "HEAD")  # the proposal's file is back
    [row] = json.loads(run_executor("rollbacks", "--repo", repo, "--json").stdout)
    assert row["state"] == "stale", "not rolled back: its file is live again"
    undone = run_executor("rollback", proposal, "--repo", repo, "--json")
    assert undone.returncode == 0, undone.stderr
    assert json.loads(undone.stdout)["status"] == "rolled_back"
    assert git(repo, "rev-parse", "main^{tree}") == git(repo, "rev-parse", f"{base}^{{tree}}")
