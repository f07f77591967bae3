"""TargetRepo's in-process git objects against git's own: the same trees, valid to ``git fsck --strict``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.gitrepo import Change, TargetRepo
from tests.conftest import git

BASE_FILES = {
    "README.md": b"# r\n",
    "a/b/c.sql": b"select 1;\n",
    "a-b.txt": b"x\n",
    "a.b": b"y\n",
    "db/001_init.sql": b"create table t (id int);\n",
}
NAMES = st.sampled_from(["a", "a-b", "a.b", "a_b", "b", "B", "db", "z", "é", "x y", "001_init.sql", "c.sql"])
PATHS = st.lists(NAMES, min_size=1, max_size=4).map("/".join)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gitrepo")
    git(path, "init", "-q", "-b", "main")
    for name, data in BASE_FILES.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    git(path, "add", "-A")
    git(
        path,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "-c",
        "core.hooksPath=/dev/null",
        "commit",
        "-qm",
        "base",
    )
    return path


def gits_own_tree(repo: Path, base: str, files: dict[str, bytes | None], index: Path) -> str:
    env = {"GIT_INDEX_FILE": str(index)}
    git(repo, "read-tree", base, env=env)
    for path, data in sorted(files.items()):
        if data is None:
            git(repo, "update-index", "--force-remove", "--", path, env=env)
        else:
            blob = git(repo, "hash-object", "-w", "--stdin", input=data)
            git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
    return git(repo, "write-tree", env=env)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.dictionaries(PATHS, st.one_of(st.none(), st.binary(max_size=40)), min_size=1, max_size=5),
)
def test_trees_equal_the_ones_git_writes(
    repo: Path, changes: dict[str, bytes | None], tmp_path: Path
) -> None:
    target = TargetRepo(repo)
    base = str(target.resolve("refs/heads/main"))
    paths = sorted(changes)
    # Only change sets git can hold: no path both a file and a directory, nothing in the way in the tree.
    if any(other.startswith(path + "/") for path in paths for other in paths):
        return
    if target.tree_problems(base, [p for p, d in changes.items() if d is not None]):
        return
    removals = {p: d for p, d in changes.items() if d is None and target.entry(base, p) is not None}
    files = {**{p: d for p, d in changes.items() if d is not None}, **removals}
    if not files:
        return
    commit = target.write_commit([base], base, Change(files), "test\n")
    index = tmp_path / f"index-{abs(hash(tuple(paths)))}"
    assert target.commit(commit).tree.hexsha == gits_own_tree(repo, base, files, index)
    assert git(repo, "rev-parse", f"{commit}^") == base
    target.close()


def test_objects_pass_fsck_and_removing_the_last_file_drops_its_directory(repo: Path) -> None:
    target = TargetRepo(repo)
    base = str(target.resolve("refs/heads/main"))
    commit = target.write_commit([base], base, Change({"a/b/c.sql": None, "new/deep/dir/f.js": b"x"}), "m\n")
    listed = git(repo, "ls-tree", "-r", "-t", "--name-only", commit).split("\n")
    assert "a/b" not in listed
    assert "a" not in listed
    assert "new/deep/dir/f.js" in listed
    subprocess.run(["git", "-C", str(repo), "update-ref", "refs/heads/fsck-check", commit], check=True)
    fsck = subprocess.run(
        ["git", "-C", str(repo), "fsck", "--strict", "--no-dangling"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr
    target.close()


def test_a_reference_that_does_not_exist_resolves_to_none(repo: Path) -> None:
    target = TargetRepo(repo)
    assert target.resolve("refs/heads/nope") is None
    assert target.resolve("refs/rollbacks/nothing") is None
    target.close()
