"""``executor run`` and ``executor rollback`` end to end: a real repository, real sandboxes, the seeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from executor_rollback.records import RollbackOutcome, roll_back
from executor_rollback.revert import RollbackFailed
from executor_sandbox.pool import Sandboxes

from executor.config import load_settings
from executor.errors import RefusedError
from executor.gitrepo import TargetRepo
from executor.plugins import Plugins
from executor.run import Runner, RunOutcome, proposal_branch, rollback_ref
from executor.store import open_store
from executor.store.runs import RunStore
from tests.conftest import SEED_IDS, Cli, commit_file, git, run_executor, seed, write_report

pytestmark = pytest.mark.docker
pytest_plugins = ["executor.testing"]

HOOKS = (
    "pre-commit",
    "commit-msg",
    "post-commit",
    "reference-transaction",
    "post-checkout",
    "post-merge",
    "pre-push",
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A target repository with one commit, on branch main, with hooks that leave a mark if they ever run."""
    path = tmp_path / "target"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    commit_file(path, "README.md", "# app\n", "init")
    marks = tmp_path / "hook-ran"
    for hook in HOOKS:
        script = path / ".git" / "hooks" / hook
        script.write_text(f"#!/bin/sh\necho {hook} >> {marks}\n")
        script.chmod(0o755)
    return path


@pytest.fixture
def approve(run_cli: Cli) -> Callable[[str], str]:
    def do(prefix: str) -> str:
        assert run_cli("ingest", seed(prefix)).exit_code == 0
        proposal_id = SEED_IDS[prefix]
        result = run_cli("approve", proposal_id, "--by", "tester")
        assert result.exit_code == 0, result.output
        return proposal_id

    return do


@pytest.fixture
def runner(executor_plugins: Plugins, sandboxes: Sandboxes) -> Callable[..., Runner]:
    def make(progress: Callable[[str, str], None] | None = None) -> Runner:
        settings = load_settings()
        store = open_store(settings.store)
        return Runner(
            settings=settings,
            store=store,
            runs=RunStore(store),
            plugins=executor_plugins,
            sandboxes=sandboxes,
            actor="test",
            progress=progress,
        )

    return make


def at_rollout(action: Callable[[], str | None]) -> tuple[Callable[[str, str], None], list[str | None]]:
    """A progress callback that does ``action`` once, as the run reaches its rollout (what happens meanwhile)."""
    done: list[str | None] = []

    def progress(gate: str, detail: str) -> None:
        if gate == "rollout" and not done:
            done.append(action())

    return progress, done


def rollback(repo: Path, proposal_id: str) -> RollbackOutcome:
    settings = load_settings()
    target = TargetRepo(repo)
    try:
        return roll_back(target, RunStore(open_store(settings.store)), proposal_id, "test")
    finally:
        target.close()


def state_of(repo: Path) -> tuple[str, str, str]:
    """What the user sees of their repository: the index, the working tree status, and HEAD's branch."""
    return (
        (repo / ".git" / "index").read_bytes().hex(),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        git(repo, "symbolic-ref", "HEAD"),
    )


def test_seed_003_rolls_out_and_rolls_back_to_the_exact_base(
    repo: Path, approve: Callable[[str], str], runner: Callable[..., Runner], tmp_path: Path
) -> None:
    proposal_id = approve("003")
    base = git(repo, "rev-parse", "main")
    (repo / "scratch.txt").write_text("the user's work in progress\n")
    before = state_of(repo)

    outcome = runner().run(proposal_id, repo, None)

    assert outcome.status == "rolled_out", outcome.gates
    assert [(g.name, g.ok) for g in outcome.gates] == [
        ("approval", True),
        ("paths", True),
        ("static", True),
        ("sandbox", True),
        ("rollback", True),
        ("rollout", True),
    ]
    assert outcome.diagnostics == []
    # One commit on proposals/<id> with exactly the proposal's file, and the trailers.
    assert git(repo, "rev-parse", proposal_branch(proposal_id)) == outcome.commit
    assert git(repo, "rev-parse", f"{outcome.commit}^") == base
    assert (
        git(repo, "diff-tree", "-r", "--name-status", "--no-commit-id", str(outcome.commit))
        == "A\tgenerated_1.sql"
    )
    message = git(repo, "log", "-1", "--format=%B", str(outcome.commit))
    assert message.startswith("Make.com Scenario Generation")
    for trailer in (
        "Proposal-Id: " + proposal_id,
        "Proposal-Digest: ",
        "Approved-By: tester",
        "Executor-Version: ",
    ):
        assert trailer in message
    assert git(repo, "show", f"{outcome.commit}:generated_1.sql").startswith(
        "CREATE TABLE IF NOT EXISTS users"
    )
    # Fast-forward: the base is the proposal commit.
    assert git(repo, "rev-parse", "main") == outcome.commit == outcome.rollout_commit
    # The warm rollback: a revert commit whose tree is the old base's, and the proven down migration.
    assert outcome.rollback is not None
    revert = git(repo, "rev-parse", rollback_ref(proposal_id, str(outcome.run_id)))
    assert revert == outcome.rollback.commit
    assert git(repo, "rev-parse", f"{revert}^{{tree}}") == git(repo, "rev-parse", f"{base}^{{tree}}")
    [sql] = outcome.rollback.plugins
    assert (sql.plugin, sql.reversible, sql.proven) == ("sql", True, True)
    down = Path(outcome.rollback.files["sql/down.sql"]).read_text()
    assert down == "DROP TABLE public.interactions;\nDROP TABLE public.scenarios;\nDROP TABLE public.users;\n"
    # Nothing of the user's was touched, and no hook ran.
    assert state_of(repo)[0] == before[0], "the index is the user's, byte for byte"
    assert (repo / "scratch.txt").read_text() == "the user's work in progress\n"
    assert not (tmp_path / "hook-ran").exists()

    again = runner().run(proposal_id, repo, None)
    assert again.status == "already_rolled_out"
    assert again.exit_code == 0
    assert git(repo, "rev-parse", "main") == outcome.commit, "no new commit"

    undone = rollback(repo, proposal_id)
    assert undone.status == "rolled_back"
    assert git(repo, "rev-parse", "main") == revert
    assert git(repo, "rev-parse", "main^{tree}") == git(repo, "rev-parse", f"{base}^{{tree}}")
    twice = rollback(repo, proposal_id)
    assert twice.status == "already_rolled_back"
    assert git(repo, "rev-parse", "main") == revert
    assert not (tmp_path / "hook-ran").exists()
    events = [e.event for e in open_store(load_settings().store).log(proposal_id)]
    assert events[-2:] == ["rolled_back", "rollback_noop"], "the no-op is in the audit log too"


@pytest.mark.parametrize("prefix", ["000", "001"])
def test_seeds_without_file_changes_are_refused_before_anything_changes(
    prefix: str, repo: Path, run_cli: Cli, runner: Callable[..., Runner]
) -> None:
    assert run_cli("ingest", seed(prefix)).exit_code == 0
    refs = git(repo, "for-each-ref")
    with pytest.raises(RefusedError, match="no executable file changes"):
        runner().run(SEED_IDS[prefix], repo, None)
    assert git(repo, "for-each-ref") == refs
    [*_, refused] = open_store(load_settings().store).log(SEED_IDS[prefix])
    assert refused.event == "run_refused"
    assert "no executable file changes" in refused.detail["error"]
    assert refused.detail["repo"] == str(repo)
    with pytest.raises(RefusedError, match="never rolled out"):
        rollback(repo, SEED_IDS[prefix])
    [*_, refused] = open_store(load_settings().store).log(SEED_IDS[prefix])
    assert refused.event == "rollback_refused"
    assert "never rolled out" in refused.detail["error"]


@pytest.mark.parametrize(
    ("prefix", "located"),
    [
        (
            "002",
            [("generated_1.sql", 5, 30, "sql.42601"), ("generated_1.sql", 14, 54, "sql.mysql-on-update")],
        ),
        (
            "004",
            [
                ("migrations/001_create_table.sql", 5, 54, "sql.42601"),
                ("migrations/001_create_table.sql", 5, 72, "sql.slash-comment"),
                ("migrations/002_create_users_table.sql", 3, 65, "sql.42883"),
                ("migrations/003_create_metrics_table.sql", 4, 18, "sql.slash-comment"),
                ("migrations/003_create_metrics_table.sql", 6, 41, "sql.mysql-on-update"),
            ],
        ),
    ],
)
def test_seeds_with_broken_sql_fail_their_gates_with_located_errors(
    prefix: str,
    located: list[tuple[str, int, int, str]],
    repo: Path,
    approve: Callable[[str], str],
    runner: Callable[..., Runner],
) -> None:
    proposal_id = approve(prefix)
    base = git(repo, "rev-parse", "main")
    outcome = runner().run(proposal_id, repo, None)
    assert outcome.status == "gate_failed"
    assert outcome.exit_code == 1
    assert [(d.path, d.line, d.column, d.code) for d in outcome.diagnostics if d.is_error] == located
    failed = outcome.failed_gate
    assert failed is not None
    assert failed.name == "static"
    # Each gate names its own first error, not the run's: static codes in static, the server's in sandbox.
    for name, own in (
        ("static", "sql.slash-comment sql.mysql-on-update"),
        ("sandbox", "sql.42601 sql.42883"),
    ):
        mine = [d for d in outcome.diagnostics if d.is_error and d.code in own.split()]
        gate = next(g for g in outcome.gates if g.name == name)
        assert gate.message is not None
        count, _, first = gate.message.partition(" error(s); first: ")
        assert int(count) >= len(mine), "a gate counts what it found, also an error an earlier one reported"
        assert first == f"{mine[0].location()}: {mine[0].message}"
    rollback_gate = outcome.gates[-1]
    assert (rollback_gate.name, rollback_gate.ok, rollback_gate.skipped, rollback_gate.message) == (
        "rollback",
        False,
        True,
        None,
    ), "after a failed gate the rollback proof is skipped, and it does not borrow another gate's error"
    assert git(repo, "rev-parse", "main") == base, "nothing rolled out"
    assert git(repo, "rev-parse", proposal_branch(proposal_id)) == outcome.commit, "the branch is kept"
    assert outcome.rollback is None
    with pytest.raises(RefusedError, match="never rolled out"):
        rollback(repo, proposal_id)


def test_unapproved_proposal_fails_the_approval_gate(
    repo: Path, run_cli: Cli, runner: Callable[..., Runner]
) -> None:
    assert run_cli("ingest", seed("003")).exit_code == 0
    outcome = runner().run(SEED_IDS["003"], repo, None)
    assert outcome.status == "gate_failed"
    assert [(g.name, g.ok) for g in outcome.gates] == [("approval", False)]
    assert outcome.gates[0].message is not None
    assert "executor approve" in outcome.gates[0].message
    assert outcome.branch is None


def test_base_moving_onto_the_same_path_fails_the_rollout_and_changes_nothing(
    repo: Path, approve: Callable[[str], str], runner: Callable[..., Runner]
) -> None:
    proposal_id = approve("003")
    # Another proposal lands on the same file first.
    meanwhile, moved = at_rollout(
        lambda: commit_file(repo, "generated_1.sql", "CREATE TABLE other (id int);\n", "other proposal")
    )
    outcome = runner(meanwhile).run(proposal_id, repo, None)
    assert outcome.status == "gate_failed"
    failed = outcome.failed_gate
    assert failed is not None
    assert failed.name == "rollout"
    assert failed.message is not None
    assert "generated_1.sql" in failed.message
    [conflict] = [d for d in outcome.diagnostics if d.code == "rollout.conflict"]
    assert (conflict.path, conflict.is_error) == ("generated_1.sql", True), "located, so SARIF shows it"
    assert conflict.message.startswith(f"the base moved to {str(moved[0])[:12]} and changed this file too")
    assert conflict.message.endswith(
        "merge that change into the proposal, or have it proposed again on the new base"
    )
    assert git(repo, "rev-parse", "main") == moved[0], "the base is as the other change left it"
    assert git(repo, "for-each-ref", "refs/rollbacks") == ""


def test_a_second_proposal_writing_a_rolled_out_proposals_file_conflicts_until_that_one_is_rolled_back(
    repo: Path, approve: Callable[[str], str], runner: Callable[..., Runner], run_cli: Cli, tmp_path: Path
) -> None:
    first = approve("003")
    assert runner().run(first, repo, None).status == "rolled_out"
    rolled_out = git(repo, "rev-parse", "main")
    second = "fsar_second-writer"
    write_report(tmp_path / "reports", second, "generated_1.sql", "CREATE TABLE other (id int);\n")
    assert run_cli("ingest", tmp_path / "reports").exit_code == 0
    assert run_cli("approve", second, "--by", "tester").exit_code == 0

    outcome = runner().run(second, repo, None)
    assert outcome.status == "gate_failed"
    assert outcome.failed_gate is not None
    assert outcome.failed_gate.name == "paths"
    [conflict] = [d for d in outcome.diagnostics if d.code == "path.conflict"]
    assert conflict.path == "generated_1.sql"
    assert f"holds what proposal {first} rolled out in {rolled_out[:12]}" in conflict.message
    assert git(repo, "rev-parse", "main") == rolled_out, "nothing changed"

    assert rollback(repo, first).status == "rolled_back"
    assert runner().run(second, repo, None).status == "rolled_out"  # the file is nobody's now


def test_base_moving_elsewhere_gets_a_merge_and_a_rollback_that_is_rebuilt_later(
    repo: Path, approve: Callable[[str], str], runner: Callable[..., Runner]
) -> None:
    proposal_id = approve("003")
    meanwhile, moved = at_rollout(lambda: commit_file(repo, "docs/notes.md", "unrelated\n", "unrelated work"))
    outcome = runner(meanwhile).run(proposal_id, repo, None)
    assert outcome.status == "rolled_out"
    assert outcome.merged
    tip = git(repo, "rev-parse", "main")
    assert tip == outcome.rollout_commit
    assert git(repo, "rev-list", "--parents", "-n1", tip).split()[1:] == [moved[0], str(outcome.commit)]
    # Later work on other files: the prepared revert no longer applies as is; it is rebuilt and proven.
    git(repo, "reset", "-q", "--hard")  # the checked-out work tree trails the branch the executor moved
    later = commit_file(repo, "docs/more.md", "more\n", "later work")
    undone = rollback(repo, proposal_id)
    assert undone.rebuilt
    assert git(repo, "rev-parse", "main^") == later
    assert git(repo, "ls-tree", "-r", "--name-only", "main").split() == [
        "README.md",
        "docs/more.md",
        "docs/notes.md",
    ]


def test_a_rebuilt_rollback_is_proven_again_in_the_sandbox(
    repo: Path, approve: Callable[[str], str], runner: Callable[..., Runner]
) -> None:
    proposal_id = approve("003")
    assert runner().run(proposal_id, repo, None).status == "rolled_out"
    git(repo, "reset", "-q", "--hard")
    # Later SQL that needs the proposal's table: the down migration cannot drop it under the view.
    depends = commit_file(repo, "later.sql", "CREATE VIEW user_ids AS SELECT user_id FROM users;\n", "a view")
    with pytest.raises(RollbackFailed, match=r"down migration fails on the base as it is now") as refused:
        rollback(repo, proposal_id)
    assert "user_ids" in refused.value.message
    assert refused.value.hint == "roll back the later changes first, or revert by hand"
    assert git(repo, "rev-parse", "main") == depends, "nothing changed"

    # Later SQL that only writes to the proposal's table: down applies, but the rolled-back tree cannot build.
    git(repo, "rm", "-q", "later.sql")
    git(repo, "-c", "core.hooksPath=/dev/null", "commit", "-qm", "no view")
    commit_file(repo, "later.sql", "INSERT INTO users (name) VALUES ('first');\n", "a row")
    with pytest.raises(
        RollbackFailed, match=r"once rolled back, the base's SQL would not apply: later\.sql:1:"
    ):
        rollback(repo, proposal_id)

    # Later SQL of its own: the rebuilt revert is proven (down on the base as it is now gives the
    # schema the rolled-back tree builds) and applied.
    git(repo, "rm", "-q", "later.sql")
    git(repo, "-c", "core.hooksPath=/dev/null", "commit", "-qm", "no row")
    later = "CREATE TABLE audit_log (id integer PRIMARY KEY);\nGRANT SELECT ON audit_log TO PUBLIC;\n"
    commit_file(repo, "later.sql", later, "own table")  # its ACL names each sandbox use's own role
    undone = rollback(repo, proposal_id)
    assert undone.rebuilt
    assert any(note.startswith("sql: proven again on ") for note in undone.notes), undone.notes
    assert "generated_1.sql" not in git(repo, "ls-tree", "-r", "--name-only", "main").split()


def test_rollback_refuses_when_the_rolled_out_file_changed_since(
    repo: Path, approve: Callable[[str], str], runner: Callable[..., Runner]
) -> None:
    proposal_id = approve("003")
    assert runner().run(proposal_id, repo, None).status == "rolled_out"
    git(repo, "reset", "-q", "--hard")
    edited = commit_file(repo, "generated_1.sql", "-- edited by hand\n", "hand edit")
    with pytest.raises(RollbackFailed, match=r"generated_1\.sql"):
        rollback(repo, proposal_id)
    assert git(repo, "rev-parse", "main") == edited


def test_paths_gate_refuses_a_symlink_in_the_way_and_the_repository_allowlist(
    repo: Path, approve: Callable[[str], str], runner: Callable[..., Runner]
) -> None:
    proposal_id = approve("003")
    (repo / "elsewhere").mkdir()
    os.symlink("elsewhere/real.sql", repo / "generated_1.sql")
    git(repo, "add", "generated_1.sql")
    git(repo, "-c", "core.hooksPath=/dev/null", "commit", "-qm", "a symlink")
    outcome = runner().run(proposal_id, repo, None)
    assert [(g.name, g.ok) for g in outcome.gates] == [("approval", True), ("paths", False)]
    assert [(d.path, d.code) for d in outcome.diagnostics] == [("generated_1.sql", "path.repository")]
    assert "symlink" in outcome.diagnostics[0].message
    assert outcome.branch is None

    git(repo, "rm", "-q", "generated_1.sql")
    commit_file(repo, ".executor.toml", '[paths]\nallow = ["db/*.sql"]\n', "rules")
    outcome = runner().run(proposal_id, repo, None)
    assert [(g.name, g.ok) for g in outcome.gates] == [("approval", True), ("paths", False)]
    assert "not matched by [paths] allow" in outcome.diagnostics[0].message


def test_cli_run_json_and_exit_codes(repo: Path, approve: Callable[[str], str], sandboxes: Sandboxes) -> None:
    proposal_id = approve("003")
    result = run_executor("run", proposal_id, "--repo", repo, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "rolled_out"
    assert data["exit_code"] == 0
    assert data["branch"] == proposal_branch(proposal_id)
    assert [g["name"] for g in data["gates"]] == [
        "approval",
        "paths",
        "static",
        "sandbox",
        "rollback",
        "rollout",
    ]
    assert data["rollback"]["ref"] == rollback_ref(proposal_id, data["run_id"])
    assert data["rollback"]["proven"] is True
    listed = json.loads(run_executor("rollbacks", "--json").stdout)
    assert [(r["proposal_id"], r["state"]) for r in listed] == [(proposal_id, "warm")]
    table = run_executor("rollbacks").stdout.splitlines()
    assert table[0].split()[:3] == ["proposal", "state", "proven"]
    assert table[1].split()[:3] == [proposal_id, "warm", "tree+sql"], "what was proven before the rollout"
    undone = run_executor("rollback", proposal_id, "--repo", repo)
    assert undone.returncode == 0, undone.stderr
    assert "rolled back" in undone.stdout
    assert "already rolled back" in run_executor("rollback", proposal_id, "--repo", repo).stdout
    shown = json.loads(run_executor("show", proposal_id, "--json").stdout)
    assert [r["status"] for r in shown["runs"]] == ["rolled_out"]
    assert shown["runs"][0]["repo"].startswith(str(repo.resolve() / ".git") + "#")
    assert [b["state"] for b in shown["rollbacks"]] == ["applied"]
    never = run_executor("rollback", SEED_IDS["002"], "--repo", repo)
    assert never.returncode == 2
    assert "never rolled out" in never.stderr
    not_repo = run_executor("run", proposal_id, "--repo", repo / "README.md")
    assert not_repo.returncode == 2


def test_outcome_model_round_trips(repo: Path) -> None:
    outcome = RunOutcome(
        proposal_id="x", revision=1, digest="d", status="validated", repo=str(repo), base="refs/heads/main"
    )
    assert RunOutcome.model_validate(outcome.model_dump(mode="json")) == outcome


def test_all_approved_runs_each_once_and_writes_junit_and_sarif(
    repo: Path, approve: Callable[[str], str], run_cli: Cli, tmp_path: Path, sandboxes: Sandboxes
) -> None:
    failing, passing = approve("002"), approve("003")
    assert run_cli("ingest", seed("004")).exit_code == 0  # not approved: not run
    junit_path, sarif_path = tmp_path / "ci" / "junit.xml", tmp_path / "ci" / "results.sarif"
    result = run_executor(
        "run",
        "--all-approved",
        "-j",
        "2",
        "--repo",
        repo,
        "--junit",
        junit_path,
        "--sarif",
        sarif_path,
        "--json",
    )
    assert result.returncode == 1, result.stderr
    by_id = {o["proposal_id"]: o for o in json.loads(result.stdout)}
    assert {i: o["status"] for i, o in by_id.items()} == {failing: "gate_failed", passing: "rolled_out"}

    import xml.etree.ElementTree as ET

    suites = ET.parse(junit_path).getroot()
    failed = {
        (suite.get("name"), case.get("name"))
        for suite in suites
        for case in suite.iter("testcase")
        if case.find("failure") is not None
    }
    assert failed == {(failing, "static"), (failing, "sandbox"), (failing, "generated_1.sql")}
    sarif = json.loads(sarif_path.read_text())
    assert sarif["version"] == "2.1.0"
    located = [
        (
            r["ruleId"],
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
        )
        for r in sarif["runs"][0]["results"]
    ]
    assert located == [("sql.42601", "generated_1.sql", 5), ("sql.mysql-on-update", "generated_1.sql", 14)]

    again = run_executor("run", "--all-approved", "--repo", repo)
    assert again.returncode == 0, again.stderr
    assert "0 approved proposal(s) run" in again.stdout


def test_concurrent_runs_on_one_repository_both_land(
    repo: Path, run_cli: Cli, tmp_path: Path, sandboxes: Sandboxes
) -> None:
    ids = []
    for n in range(2):
        proposal_id = f"fsar_concurrent-{n}"
        write_report(
            tmp_path / "reports",
            proposal_id,
            f"db/{n:03d}_table.sql",
            f"CREATE TABLE t{n} (id int PRIMARY KEY);\n",
        )
        ids.append(proposal_id)
    assert run_cli("ingest", tmp_path / "reports").exit_code == 0
    for proposal_id in ids:
        assert run_cli("approve", proposal_id, "--by", "tester").exit_code == 0
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "executor", "run", proposal_id, "--repo", str(repo), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for proposal_id in ids
    ]
    results = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], results
    statuses = [json.loads(out)["status"] for out, _ in results]
    assert statuses == ["rolled_out", "rolled_out"]
    files = git(repo, "ls-tree", "-r", "--name-only", "main").split()
    assert files == ["README.md", "db/000_table.sql", "db/001_table.sql"], "neither rollout was lost"


# -- review regressions -----------------------------------------------------------------------


def test_a_base_rewritten_during_the_run_is_not_merged_back(
    repo: Path, approve: Callable[[str], str], runner: Callable[..., Runner]
) -> None:
    proposal_id = approve("003")
    secret = commit_file(repo, "secret.env", "TOKEN=oops\n", "oops")

    def rewrite() -> str:  # someone scrubs the secret with a force-push
        git(repo, "reset", "-q", "--hard", "HEAD~1")
        return commit_file(repo, "docs/x.md", "clean\n", "rewrite without the secret")

    meanwhile, rewritten = at_rollout(rewrite)
    outcome = runner(meanwhile).run(proposal_id, repo, None)
    assert outcome.status == "gate_failed"
    failed = outcome.failed_gate
    assert failed is not None
    assert failed.name == "rollout"
    assert failed.message is not None
    assert "rewritten" in failed.message
    assert git(repo, "rev-parse", "main") == rewritten[0]
    assert secret not in git(repo, "rev-list", "main").split()


def test_validated_only_is_run_again_by_all_approved_and_modes_are_kept(
    repo: Path, run_cli: Cli, runner: Callable[..., Runner], tmp_path: Path
) -> None:
    commit_file(repo, "run.sh", "#!/bin/sh\necho old\n", "script")
    git(repo, "update-index", "--chmod=+x", "run.sh")
    git(repo, "-c", "core.hooksPath=/dev/null", "commit", "-qm", "executable")
    write_report(tmp_path / "r", "fsar_script", "run.sh", "#!/bin/sh\necho new\n")
    assert run_cli("ingest", tmp_path / "r").exit_code == 0
    assert run_cli("approve", "fsar_script", "--by", "tester").exit_code == 0
    made = runner()
    made.settings = made.settings.model_copy(
        update={"plugins": made.settings.plugins.model_copy(update={"unvalidated": ["*.sh"]})}
    )
    assert made.run("fsar_script", repo, None, rollout=False).status == "validated"
    assert made.not_yet_run(repo, None) == ["fsar_script"], "validated only: not done"
    assert made.run("fsar_script", repo, None).status == "rolled_out"
    assert made.not_yet_run(repo, None) == []
    assert git(repo, "ls-tree", "main", "run.sh").split()[0] == "100755", "an executable stays one"


def test_a_rollout_reverted_by_hand_is_not_reported_as_rolled_out(
    repo: Path, approve: Callable[[str], str], runner: Callable[..., Runner]
) -> None:
    proposal_id = approve("003")
    first = runner().run(proposal_id, repo, None)
    assert first.status == "rolled_out"
    git(repo, "reset", "-q", "--hard")
    git(
        repo,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "-c",
        "core.hooksPath=/dev/null",
        "revert",
        "--no-edit",
        "HEAD",
    )
    again = runner().run(proposal_id, repo, None)
    assert again.status == "rolled_out", again.notes
    refs = git(repo, "for-each-ref", "--format=%(refname)", f"refs/rollbacks/{proposal_id}/").split()
    assert len(refs) == 2, "each rollout keeps its own prepared revert"


def test_a_reject_during_the_gates_stops_the_rollout(
    repo: Path, approve: Callable[[str], str], runner: Callable[..., Runner], run_cli: Cli
) -> None:
    proposal_id = approve("003")
    base = git(repo, "rev-parse", "main")

    meanwhile, rejected = at_rollout(lambda: run_cli("reject", proposal_id, "--by", "security").output)
    outcome = runner(meanwhile).run(proposal_id, repo, None)
    assert rejected
    assert "rejected" in str(rejected[0])
    assert outcome.status == "gate_failed"
    assert outcome.failed_gate is not None
    assert "approval was withdrawn" in str(outcome.failed_gate.message)
    assert git(repo, "rev-parse", "main") == base


def test_foreign_git_environment_and_non_utf8_names_change_nothing(
    repo: Path,
    approve: Callable[[str], str],
    runner: Callable[..., Runner],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proposal_id = approve("003")
    name = b"caf\xe9.txt"
    blob = (
        subprocess.run(
            ["git", "-C", str(repo), "hash-object", "-w", "--stdin"],
            input=b"latin-1 name\n",
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    cacheinfo = b"100644," + blob.encode() + b"," + name  # argv as bytes: the name is not UTF-8
    subprocess.run(
        [b"git", b"-C", str(repo).encode(), b"update-index", b"--add", b"--cacheinfo", cacheinfo], check=True
    )
    tree = git(repo, "write-tree")
    head = git(repo, "rev-parse", "HEAD")
    latin = git(
        repo,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit-tree",
        tree,
        "-p",
        head,
        "-m",
        "latin-1 name",
    )
    git(repo, "update-ref", "refs/heads/main", latin)
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    hooks = tmp_path / "evil-hooks"
    hooks.mkdir()
    marker = tmp_path / "evil-ran"
    (hooks / "reference-transaction").write_text(f"#!/bin/sh\necho ran >> {marker}\n")
    (hooks / "reference-transaction").chmod(0o755)
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.hookspath'='{hooks}'")
    outcome = runner().run(proposal_id, repo, None)
    assert outcome.status == "rolled_out", outcome.gates
    assert not marker.exists(), "no hook ran"
    monkeypatch.delenv("GIT_DIR", raising=False)
    assert git(repo, "rev-parse", "main") == outcome.rollout_commit, "the right repository moved"
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-z", "--name-only", "main"], capture_output=True, check=True
    ).stdout
    assert name in listed.split(b"\0"), "the sibling with a Latin-1 name is carried over byte for byte"


def test_a_refused_run_still_answers_in_json_and_replaces_old_ci_reports(
    repo: Path, run_cli: Cli, tmp_path: Path
) -> None:
    assert run_cli("ingest", seed("000")).exit_code == 0
    junit_path = tmp_path / "junit.xml"
    junit_path.write_text("<stale/>")
    result = run_executor("run", SEED_IDS["000"], "--repo", repo, "--json", "--junit", junit_path)
    assert result.returncode == 2
    answer = json.loads(result.stdout)
    assert (answer["status"], answer["exit_code"]) == ("refused", 2)
    assert "no executable file changes" in answer["message"]
    assert "no executable file changes" in result.stderr
    report = junit_path.read_text()
    assert "<stale/>" not in report
    assert 'type="refused"' in report


def test_a_repository_made_again_at_the_same_path_is_a_new_one(
    repo: Path, approve: Callable[[str], str], runner: Callable[..., Runner]
) -> None:
    import shutil

    proposal_id = approve("003")
    assert runner().run(proposal_id, repo, None).status == "rolled_out"
    assert runner().not_yet_run(repo, None) == []
    shutil.rmtree(repo)
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit_file(repo, "README.md", "# again\n", "init")
    assert runner().not_yet_run(repo, None) == [proposal_id]
    assert runner().run(proposal_id, repo, None).status == "rolled_out"
    assert rollback(repo, proposal_id).status == "rolled_back"
