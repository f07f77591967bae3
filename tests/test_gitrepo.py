"""TargetRepo's in-process git objects against git's own: the same trees, valid to ``git fsck --strict``."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.errors import RefusedError
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


def gits_commit(repo: Path, files: dict[str, bytes], parents: list[str], index: Path) -> str:
    """A commit made by git's own plumbing from scratch: ``files`` (no path both a file and a directory)."""
    env = {"GIT_INDEX_FILE": str(index)}
    git(repo, "read-tree", "--empty", env=env)
    for path, data in sorted(files.items()):
        blob = git(repo, "hash-object", "-w", "--stdin", input=data)
        git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
    tree = git(repo, "write-tree", env=env)
    args = [arg for parent in parents for arg in ("-p", parent)]
    return git(
        repo,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit-tree",
        tree,
        *args,
        input=b"c\n",
    )


FILE_SETS = st.dictionaries(PATHS, st.sampled_from([b"1", b"2"]), max_size=5).filter(
    lambda files: not any(other.startswith(path + "/") for path in files for other in files)
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=FILE_SETS, new=FILE_SETS)
def test_changed_paths_are_the_ones_git_diff_tree_lists(
    repo: Path, old: dict[str, bytes], new: dict[str, bytes], tmp_path: Path
) -> None:
    """Files become directories and back, subtrees appear and go: the in-process diff says what git says."""
    index = tmp_path / f"index-{abs(hash((tuple(old), tuple(new))))}"
    a, b = gits_commit(repo, old, [], index), gits_commit(repo, new, [], index)
    listed = git(repo, "diff-tree", "-r", "-z", "--name-only", "--no-renames", a, b)
    target = TargetRepo(repo)
    assert target.changed_paths(a, b) == {p for p in listed.split("\0") if p}
    target.close()


@pytest.mark.parametrize("walk", [256, 2])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.lists(st.integers(min_value=0, max_value=30), max_size=2), min_size=1, max_size=8))
def test_ancestry_agrees_with_git_merge_base(
    repo: Path, shape: list[list[int]], walk: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random histories with merges and several roots; a short walk leaves the answer to git."""
    from executor import gitrepo

    monkeypatch.setattr(gitrepo, "ANCESTRY_WALK", walk)
    index = tmp_path / f"index-{abs(hash(str(shape)))}"
    commits: list[str] = []
    for n, picks in enumerate(shape):
        parents = sorted({commits[p % len(commits)] for p in picks} if commits else set())
        commits.append(gits_commit(repo, {f"f{n}": b"1"}, parents, index))
    target = TargetRepo(repo)
    for x in commits:
        for y in commits:
            merge_base = subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", x, y])
            assert target.is_ancestor(x, y) == (merge_base.returncode == 0), (x, y)
    assert target.is_ancestor("0" * 40, commits[-1]) is False
    target.close()


def gits_worktrees(repo: Path, ref: str) -> list[Path]:
    listed, found, current = git(repo, "worktree", "list", "--porcelain"), [], None
    for line in listed.splitlines():
        if line.startswith("worktree "):
            current = Path(line[len("worktree ") :])
        elif line == f"branch {ref}" and current is not None:
            found.append(current)
    return found


def test_work_trees_with_a_branch_checked_out_are_the_ones_git_lists(tmp_path: Path) -> None:
    main = tmp_path / "main"
    main.mkdir()
    git(main, "init", "-q", "-b", "main")
    commit_file = main / "f"
    commit_file.write_text("1\n")
    git(main, "add", "f")
    git(main, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    git(main, "branch", "feature")
    git(main, "worktree", "add", "-q", str(tmp_path / "feature"), "feature")
    git(main, "worktree", "add", "-q", "--detach", str(tmp_path / "detached"), "main")
    git(main, "worktree", "add", "-q", "-f", str(tmp_path / "main-too"), "main")
    for opened in (main, tmp_path / "feature"):  # the same answer from any work tree
        target = TargetRepo(opened)
        for ref in ("refs/heads/main", "refs/heads/feature", "refs/heads/none"):
            assert sorted(target.checked_out_at(ref)) == sorted(gits_worktrees(main, ref)), (opened, ref)
        target.close()
    assert gits_worktrees(main, "refs/heads/main") == [main, tmp_path / "main-too"]
    # A bare repository has no main work tree, only linked ones.
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(main), str(bare))
    git(bare, "worktree", "add", "-q", str(tmp_path / "from-bare"), "main")
    target = TargetRepo(bare)
    assert target.checked_out_at("refs/heads/main") == gits_worktrees(bare, "refs/heads/main")
    assert target.checked_out_at("refs/heads/main") == [tmp_path / "from-bare"]
    target.close()


def test_temporary_object_files_a_killed_writer_left_are_removed_when_old(repo: Path) -> None:
    objects = repo / ".git" / "objects"
    old, fresh = objects / "objdeadbeef", objects / "objcafe1234"
    old.write_bytes(b"half an object")
    fresh.write_bytes(b"being written right now")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    target = TargetRepo(repo)
    base = str(target.resolve("refs/heads/main"))
    target.write_commit([base], base, Change({"tmp/new.txt": b"x"}), "m\n")
    assert not old.exists()
    assert fresh.exists(), "a writer may still be renaming it"
    fresh.unlink()
    target.close()


def test_ancestry_follows_the_parents_git_sees_through_a_replace_ref(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    index = tmp_path / "index"
    root = gits_commit(repo, {"a": b"1"}, [], index)
    other = gits_commit(repo, {"b": b"1"}, [], index)
    child = gits_commit(repo, {"a": b"2"}, [root], index)
    target = TargetRepo(repo)
    assert target.is_ancestor(root, child) is True
    assert target.is_ancestor(other, child) is False
    target.close()
    git(repo, "replace", "--graft", child, other)  # git now sees other as child's parent
    target = TargetRepo(repo)
    assert target.is_ancestor(root, child) is False
    assert target.is_ancestor(other, child) is True
    target.close()


def test_a_repository_opens_at_its_top_or_its_git_directory_and_nowhere_inside(tmp_path: Path) -> None:
    work, bare = tmp_path / "work", tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "c")
    git(work, "worktree", "add", "-q", "-b", "side", str(tmp_path / "linked"))
    (work / "sub").mkdir()
    common = (work / ".git").resolve()
    for path, git_dir, common_dir in [
        (work, common, common),
        (work / ".git", common, common),
        (tmp_path / "linked", common / "worktrees" / "linked", common),
        (bare, bare.resolve(), bare.resolve()),
    ]:
        target = TargetRepo(path)
        assert (target.git_dir, target.common_dir) == (git_dir, common_dir)
        target.close()
    assert TargetRepo(tmp_path / "linked").key == TargetRepo(work).key  # one repository, one key
    assert TargetRepo(tmp_path / "linked").base_branch(None) == "refs/heads/side"
    for wrong in (
        work / "sub",
        work / ".git" / "refs",
        tmp_path,
        tmp_path / "missing",
        work / ".git" / "HEAD",
    ):
        with pytest.raises(RefusedError, match="is not a git repository"):
            TargetRepo(wrong)


def test_a_detached_head_has_no_base_branch(repo: Path, tmp_path: Path) -> None:
    linked = tmp_path / "detached"
    git(repo, "worktree", "add", "-q", "--detach", str(linked))
    with pytest.raises(RefusedError, match="detached HEAD"):
        TargetRepo(linked).base_branch(None)
    git(repo, "worktree", "remove", "--force", str(linked))


def test_submodule_checkouts_and_separate_git_dirs_read_their_own_objects(tmp_path: Path) -> None:
    def committed(path: Path, name: str) -> str:
        (path / name).write_text(name + "\n")
        git(path, "add", name)
        git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", name)
        return git(path, "rev-parse", "HEAD")

    inner, outer, separate = tmp_path / "inner", tmp_path / "outer", tmp_path / "separate"
    git(tmp_path, "init", "-q", "-b", "main", str(inner))
    committed(inner, "inner.txt")
    git(tmp_path, "init", "-q", "-b", "main", str(outer))
    committed(outer, "outer.txt")
    git(outer, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(inner), "sm")
    git(
        tmp_path, "init", "-q", "-b", "main", f"--separate-git-dir={tmp_path / 'separate.git'}", str(separate)
    )
    committed(separate, "separate.txt")
    for path, name in ((outer / "sm", "inner.txt"), (separate, "separate.txt")):
        target = TargetRepo(path)
        head = target.resolve(target.base_branch(None))
        assert head == git(path, "rev-parse", "HEAD")
        assert target.read(head, name) == f"{name}\n".encode()
        target.close()


def test_refs_resolve_by_their_exact_name_only(repo: Path) -> None:
    target = TargetRepo(repo)
    head = git(repo, "rev-parse", "main")
    blob = git(repo, "rev-parse", "main:README.md")
    git(repo, "update-ref", "refs/rollbacks/p/run", head)
    git(repo, "update-ref", "refs/tags/refs/heads/ghost", head)
    git(repo, "update-ref", "refs/blobs/readme", blob)
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "tag", "-a", "-m", "v", "annotated", head)
    try:
        assert target.resolve("refs/heads/main") == head
        assert target.resolve("refs/tags/annotated") == head  # through the tag object
        for not_a_ref in (
            "refs/heads/main~1",
            "refs/heads/main@{0}",
            "refs/heads/main^{/base}",
            "refs/heads/ghost",  # no guessing at refs/tags/refs/heads/ghost
            "refs/rollbacks/p",  # only a ref below it exists
            "refs/blobs/readme",  # not a commit
        ):
            assert target.resolve(not_a_ref) is None, not_a_ref
        with pytest.raises(RefusedError, match="has no branch 'main~1'"):
            target.base_branch("main~1")
    finally:
        for ref in (
            "refs/rollbacks/p/run",
            "refs/tags/refs/heads/ghost",
            "refs/blobs/readme",
            "refs/tags/annotated",
        ):
            git(repo, "update-ref", "-d", ref)
        target.close()


def test_a_repository_git_refuses_to_open_says_why_and_newlines_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    for name, value in (("COUNT", "1"), ("KEY_0", "safe.bareRepository"), ("VALUE_0", "explicit")):
        monkeypatch.setenv(f"GIT_CONFIG_{name}", value)
    with pytest.raises(RefusedError, match=r"git cannot open .*safe\.bareRepository"):
        TargetRepo(bare)
    monkeypatch.delenv("GIT_CONFIG_COUNT")
    crafted = tmp_path / "a\nB\nsha1\nfalse\n"  # would read as other lines of git's answer
    git(tmp_path, "init", "-q", "--bare", str(crafted))
    with pytest.raises(RefusedError, match="newline"):
        TargetRepo(crafted)
    assert not (tmp_path / "B").exists()
