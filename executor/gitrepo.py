"""The target repository, as the executor changes it: objects and refs only, never a hook.

Commits are built from git objects (GitPython writes blobs, trees and commits
in-process; a throw-away index lives in a temporary file), so the user's
working tree and index are never read or written, no file from a proposal ever
lands on disk, and there is no worktree to leave behind. Every git command the
executor runs gets ``core.hooksPath=/dev/null`` (and no fsmonitor) through
``GIT_CONFIG_*`` variables: no repository hook runs, ``reference-transaction``
included. Refs move only by compare-and-swap (``git update-ref NEW OLD``).
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import functools
import os
import secrets
import subprocess
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executor.errors import InfrastructureError, RefusedError
from executor.paths import GIT_METADATA_FILES, collision_key

if TYPE_CHECKING:
    import git

#: Config every git command of the executor runs with, whatever the repository says.
SAFE_CONFIG = {
    "core.hooksPath": "/dev/null",
    "core.fsmonitor": "false",
    "core.splitIndex": "false",
    "gc.auto": "0",
}
REPO_CONFIG = ".executor.toml"  # the target repository's own rules for proposals, read at the base commit
BLOB, EXECUTABLE, SYMLINK, TREE, SUBMODULE = 0o100644, 0o100755, 0o120000, 0o040000, 0o160000
ACTOR_NAME, ACTOR_EMAIL = "proposal-executor", "proposal-executor@localhost"
_EMPTY_TREE = bytes.fromhex("4b825dc642cb6eb9a060e54bf8d69288fbee4904")
# Commits an ancestry check walks in-process before it asks git (whose commit-graph
# answers fast on long histories); a rollout's check is usually one or two steps.
ANCESTRY_WALK = 256
STALE_TEMPORARY = 3600.0  # seconds after which an unrenamed temporary object file is a leftover


#: Variables that would point git at another repository, index or object store, or
#: inject config ahead of ours (GIT_CONFIG_PARAMETERS wins over GIT_CONFIG_COUNT):
#: set when the executor is started from a hook, an alias or ``rebase --exec``.
FOREIGN_GIT_VARIABLES = (
    "GIT_CONFIG_PARAMETERS",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_GRAFT_FILE",
    "GIT_REPLACE_REF_BASE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_SHALLOW_FILE",
    "GIT_PREFIX",
    "GIT_INTERNAL_SUPER_PREFIX",
)


def safe_environment() -> dict[str, str]:
    """Our config after whatever the caller set through GIT_CONFIG_COUNT (kept: e.g. safe.directory); later wins."""
    try:
        start = max(0, int(os.environ.get("GIT_CONFIG_COUNT", "0")))
    except ValueError:
        start = 0
    env = {
        "GIT_CONFIG_COUNT": str(start + len(SAFE_CONFIG)),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_NO_LAZY_FETCH": "1",  # a partial clone's missing object is not fetched (by a configured command)
    }
    for index, (key, value) in enumerate(SAFE_CONFIG.items(), start=start):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def scrub_git_environment() -> None:
    """Drop variables that would redirect or reconfigure the git commands the executor runs (for this process)."""
    for name in FOREIGN_GIT_VARIABLES:
        os.environ.pop(name, None)


@dataclass(frozen=True)
class RepoRules:
    """``.executor.toml`` of the target repository at the base commit."""

    allow: tuple[str, ...] | None = None  # globs a proposal's paths must match ('*' crosses '/')
    git_metadata: bool = False  # may proposals write .gitmodules / .gitattributes

    def problems(self, paths: list[str]) -> list[str]:
        out = []
        for path in paths:
            if path == REPO_CONFIG:
                out.append(f"{path}: proposals may not change the repository's executor rules")
            elif path.rsplit("/", 1)[-1].casefold() in GIT_METADATA_FILES and not self.git_metadata:
                out.append(
                    f"{path}: changes how git reads the repository; allowed only with "
                    f"git_metadata = true under [paths] in {REPO_CONFIG}"
                )
            elif self.allow is not None and not any(fnmatch.fnmatchcase(path, g) for g in self.allow):
                out.append(f"{path}: not matched by [paths] allow in {REPO_CONFIG} ({', '.join(self.allow)})")
        return out


@dataclass(frozen=True)
class TreeEntry:
    mode: int
    sha: str


@dataclass
class Change:
    """A commit's worth of file writes: path -> new bytes (None: remove the file there; a directory is left alone)."""

    files: Mapping[str, bytes | None]
    modes: dict[str, int] = field(default_factory=dict)


class TargetRepo:
    """The repository at ``path`` (a work tree or bare), with every git command made hook-free."""

    def __init__(self, path: str | Path) -> None:
        scrub_git_environment()
        self._env = {**os.environ, **safe_environment()}
        self._git_executable = os.environ.get("GIT_PYTHON_GIT_EXECUTABLE") or "git"  # the one GitPython runs
        self.path = Path(path).resolve()
        if "\n" in str(self.path):
            raise RefusedError(f"{path!r}: a repository path with a newline in it is not supported")
        # Found by git itself: one process (~2 ms), where GitPython costs ~60 ms to import and
        # a rollback of a prepared revert needs none of it. Accepted as git.Repo(path) accepts
        # a path: the top of a work tree, or a git directory itself, never a directory inside.
        found = self._git(
            "rev-parse",
            "--path-format=absolute",
            "--git-dir",
            "--git-common-dir",
            "--show-object-format",
            "--is-inside-git-dir",
            "--show-prefix",
            cwd=self.path,
        )
        fields = found.stdout.split("\n")
        if found.returncode != 0 and self.path.is_dir() and "not a git repository" not in found.stderr:
            raise RefusedError(
                f"git cannot open {path}: {found.stderr.strip()}",
                hint="see git's message (e.g. safe.directory for a repository another user owns)",
            )
        if (
            found.returncode != 0
            or len(fields) != 6
            or fields[5]
            or not (fields[0].startswith("/") and fields[1].startswith("/"))
            or (fields[3] == "true" and Path(fields[0]).resolve() != self.path)
            or fields[4]
        ):
            raise RefusedError(
                f"{path} is not a git repository (the top of a work tree, or a git directory)",
                hint="pass --repo with the target repository",
            )
        self.git_dir, self.common_dir = Path(fields[0]).resolve(), Path(fields[1]).resolve()
        if fields[2] != "sha1":
            raise RefusedError(
                f"{path} uses {fields[2].upper()} object names, which the executor's git library cannot write",
                hint="use a SHA-1 repository",
            )
        #: What records key on: one repository, whichever work tree or path it was reached through,
        #: and not another one made later at the same path.
        self.key = f"{self.common_dir}#{self._identity()}"
        self._loose: Any = None
        self._rewritten: bool | None = None

    @functools.cached_property
    def repo(self) -> git.Repo:
        """GitPython on this repository, for objects (made on first use)."""
        import git

        repo = git.Repo(self.path)
        repo.git.update_environment(**safe_environment())
        return repo

    def close(self) -> None:
        if "repo" in self.__dict__:
            self.repo.close()

    def _git(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """One hook-free git command (``SAFE_CONFIG``) on this repository, or in ``cwd``; its result.

        A failing command is returned, not raised; only a git that cannot be run raises.
        """
        where = ["-C", str(cwd)] if cwd is not None else ["--git-dir", str(self.git_dir)]
        try:
            return subprocess.run(
                [self._git_executable, *where, *args],
                env=self._env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="surrogateescape",
                check=False,
            )
        except OSError as exc:
            raise InfrastructureError(f"cannot run git: {exc}", hint="install git") from exc

    def _identity(self) -> str:
        """A random id kept in the git directory (beside the rollout lock), made on first use."""
        path = self.common_dir / "executor-id"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            text = path.read_text(encoding="ascii", errors="replace").strip()
            if text.isalnum() and len(text) == 32:
                return text
            raise RefusedError(
                f"{path} is not an executor repository id", hint="remove it; the executor makes a new one"
            ) from None
        identity = secrets.token_hex(16)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(identity + "\n")
        return identity

    # -- reading -----------------------------------------------------------------------

    def base_branch(self, name: str | None) -> str:
        """``refs/heads/<name>``, or the branch HEAD is on; refused when there is none."""
        if name is None:
            head = self._git("symbolic-ref", "--quiet", "HEAD")  # HEAD of this work tree
            if head.returncode != 0:
                raise RefusedError(
                    f"{self.path} has a detached HEAD, so there is no current branch to use as the base",
                    hint="name the base branch with --base",
                )
            ref = head.stdout.strip()
            if not ref.startswith("refs/heads/"):
                raise RefusedError(
                    f"HEAD of {self.path} is {ref}, not a branch", hint="name the base branch with --base"
                )
            return ref
        ref = name if name.startswith("refs/heads/") else f"refs/heads/{name}"
        if self.resolve(ref) is None:
            raise RefusedError(f"{self.path} has no branch {name!r}", hint="pass an existing --base")
        return ref

    def resolve(self, ref: str) -> str | None:
        """The commit the ref named exactly ``ref`` (``refs/...``) points at (through a tag), or None.

        Read by git (whatever the ref storage), by exact name: no revision
        expression (``main~1``) and no guessing at other names for it.
        """
        if not ref.startswith("refs/"):
            raise ValueError(f"not a full ref name: {ref!r}")
        # A pattern also matches the refs below it (refs/heads/main/x): the name must be the one asked.
        listed = self._git(
            "for-each-ref",
            "--format=%(refname)%00%(objecttype)%00%(objectname)%00%(*objecttype)%00%(*objectname)",
            ref,
        )
        for line in listed.stdout.split("\n") if listed.returncode == 0 else []:
            name, kind, sha, peeled_kind, peeled = (line.split("\0") + [""] * 5)[:5]
            if name == ref:
                if kind == "commit":
                    return sha
                return peeled if kind == "tag" and peeled_kind == "commit" else None
        return None

    def commit(self, sha: str) -> git.Commit:
        return self.repo.commit(sha)

    def entry(self, commit: str, path: str) -> TreeEntry | None:
        """The tree entry at ``path`` in ``commit`` (a blob, symlink, submodule or tree), or None."""
        tree = self.repo.commit(commit).tree
        try:
            item = tree[path]
        except KeyError:
            return None
        return TreeEntry(int(item.mode), str(item.hexsha))

    def read(self, commit: str, path: str) -> bytes | None:
        entry = self.entry(commit, path)
        if entry is None or entry.mode not in (BLOB, EXECUTABLE):
            return None
        return bytes(self.repo.odb.stream(bytes.fromhex(entry.sha)).read())

    def rules(self, commit: str) -> RepoRules:
        """The repository's ``.executor.toml`` at ``commit``; a broken one refuses the run."""
        data = self.read(commit, REPO_CONFIG)
        if data is None:
            return RepoRules()
        try:
            table = tomllib.loads(data.decode("utf-8")).get("paths", {})
            allow = table.get("allow")
            git_metadata = table.get("git_metadata", False)
            if allow is not None and not (isinstance(allow, list) and all(isinstance(g, str) for g in allow)):
                raise ValueError("[paths] allow must be a list of glob strings")
            if not isinstance(git_metadata, bool):
                raise ValueError("[paths] git_metadata must be true or false")
        except (UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError, AttributeError) as exc:
            raise RefusedError(
                f"{REPO_CONFIG} in the target repository at {commit[:12]} is invalid: {exc}",
                hint=f"fix {REPO_CONFIG} on the base branch",
            ) from exc
        return RepoRules(tuple(allow) if allow is not None else None, git_metadata)

    def tree_problems(self, commit: str, paths: list[str]) -> list[str]:
        """Why writing ``paths`` as regular files onto ``commit``'s tree would be wrong, one line each.

        Never through or over a symlink or submodule; never a file where a
        directory is or the reverse; never a second spelling of an existing path.
        """
        tree = self.repo.commit(commit).tree
        existing: dict[str, str] = {}
        for item in tree.traverse():
            path = str(getattr(item, "path", ""))
            existing.setdefault(collision_key(path), path)
        out = []
        for path in paths:
            parts = path.split("/")
            for depth in range(1, len(parts) + 1):
                prefix = "/".join(parts[:depth])
                last = depth == len(parts)
                try:
                    item = tree[prefix]
                except KeyError:
                    spelled = existing.get(collision_key(prefix))
                    if spelled is not None:
                        out.append(
                            f"{path}: the repository has {spelled!r}, the same name on case-insensitive filesystems"
                        )
                        break
                    continue
                mode = int(item.mode)
                if mode == SYMLINK:
                    out.append(
                        f"{path}: {prefix!r} is a symlink in the repository; nothing is written through or over one"
                    )
                    break
                if mode == SUBMODULE:
                    out.append(f"{path}: {prefix!r} is a submodule; proposals cannot change it")
                    break
                if last and mode == TREE:
                    out.append(f"{path}: is a directory in the repository; a file cannot replace it")
                elif not last and mode != TREE:
                    out.append(f"{path}: {prefix!r} is a file in the repository, not a directory")
                    break
        return out

    def changed_paths(self, old: str, new: str) -> set[str]:
        """Paths whose entries differ between two commits, as ``git diff-tree -r --name-only`` lists them.

        Compared in-process, tree by tree; subtrees with the same id are skipped.
        """
        if old == new:
            return set()
        out: set[str] = set()
        self._diff_trees(self._tree_of(old), self._tree_of(new), "", out)
        return out

    def _tree_of(self, commit: str) -> bytes:
        return bytes(self.repo.commit(commit).tree.binsha)

    def _entries(self, tree: bytes | None) -> dict[str, tuple[bytes, int]]:
        from git.objects.fun import tree_entries_from_data

        if tree is None:
            return {}
        data = self.repo.odb.stream(tree).read()
        return {name: (sha, mode) for sha, mode, name in tree_entries_from_data(data)}

    def _diff_trees(self, old: bytes | None, new: bytes | None, prefix: str, out: set[str]) -> None:
        before, after = self._entries(old), self._entries(new)
        for name in before.keys() | after.keys():
            a, b = before.get(name), after.get(name)
            if a == b:
                continue
            path = prefix + name
            # By type, as git reads modes: an old tool's 040755 is a directory too.
            a_tree = a[0] if a is not None and _is_tree(a[1]) else None
            b_tree = b[0] if b is not None and _is_tree(b[1]) else None
            if a_tree is not None or b_tree is not None:
                self._diff_trees(a_tree, b_tree, path + "/", out)
            if (a is not None and not _is_tree(a[1])) or (b is not None and not _is_tree(b[1])):
                out.add(path)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ``ancestor`` is ``descendant`` or reachable from it through parents.

        Walked in-process for the first ``ANCESTRY_WALK`` commits; git decides
        beyond, and always where it would see other parents than the commits
        name (replace refs, grafts, a shallow clone).
        """
        if ancestor == descendant:
            return True
        known = None if self._history_is_rewritten() else self._walk_ancestry(ancestor, descendant)
        if known is not None:
            return known
        return self._git("merge-base", "--is-ancestor", ancestor, descendant).returncode == 0

    def _history_is_rewritten(self) -> bool:
        if self._rewritten is None:
            replace = self.common_dir / "refs" / "replace"
            packed = self.common_dir / "packed-refs"
            self._rewritten = (
                (self.common_dir / "shallow").exists()
                or (self.common_dir / "info" / "grafts").exists()
                or (replace.is_dir() and any(replace.iterdir()))
                or (packed.exists() and b" refs/replace/" in packed.read_bytes())
            )
        return self._rewritten

    def _walk_ancestry(self, ancestor: str, descendant: str) -> bool | None:
        """Through parents from ``descendant``, up to ``ANCESTRY_WALK`` commits; None if that did not tell."""
        import git

        seen: set[str] = set()
        frontier = [descendant]
        try:
            while frontier and len(seen) < ANCESTRY_WALK:
                sha = frontier.pop()
                if sha in seen:
                    continue
                seen.add(sha)
                for parent in self.repo.commit(sha).parents:
                    if parent.hexsha == ancestor:
                        return True
                    frontier.append(parent.hexsha)
        except (ValueError, git.BadName, git.BadObject):
            return None  # a missing commit or a bad name: git knows what to make of it
        return False if not frontier else None

    # -- writing -----------------------------------------------------------------------

    def write_commit(self, parents: list[str], onto: str, change: Change, message: str) -> str:
        """A commit with ``parents`` whose tree is ``onto``'s tree with ``change`` applied; its sha.

        Objects only, written in-process: no index (GitPython's
        ``IndexFile.from_tree`` moves the user's index aside while it works,
        which a kill -9 would turn into a lost index), no working tree, no hook.
        """
        updates: dict[str, tuple[int, bytes] | None] = {}
        for path, data in change.files.items():
            if data is None:
                updates[path] = None
            else:
                updates[path] = (change.modes.get(path, BLOB), self._store("blob", data))
        root = bytes.fromhex(str(self.repo.commit(onto).tree.hexsha))
        tree = self._write_tree(root, updates)
        identity = f"{ACTOR_NAME} <{ACTOR_EMAIL}> {int(time.time())} +0000"
        lines = [f"tree {tree.hex()}", *(f"parent {self.repo.commit(p).hexsha}" for p in parents)]
        lines += [f"author {identity}", f"committer {identity}"]
        body = "\n".join(lines) + "\n\n" + message
        return self._store("commit", body.encode("utf-8")).hex()

    def _store(self, kind: str, data: bytes) -> bytes:
        """Write a loose object in-process (GitPython's own store runs ``git hash-object`` per object)."""
        from gitdb import IStream  # type: ignore[import-untyped]
        from gitdb.db.loose import LooseObjectDB  # type: ignore[import-untyped]

        if self._loose is None:
            self._loose = LooseObjectDB(str(self.common_dir / "objects"))
            self._remove_stale_temporaries()
        return bytes(self._loose.store(IStream(kind, len(data), BytesIO(data))).binsha)

    def _remove_stale_temporaries(self) -> None:
        """Temporary object files (``objects/obj*``) an executor killed mid-write left behind.

        gitdb writes each object to such a file and renames it within
        milliseconds; git never names a file there so, and ``git gc`` does
        not remove them. One older than ``STALE_TEMPORARY`` is a leftover.
        """
        objects = self.common_dir / "objects"
        cutoff = time.time() - STALE_TEMPORARY
        with os.scandir(objects) as entries:
            for entry in entries:
                if entry.name.startswith("obj") and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                            os.unlink(entry.path)

    def _write_tree(
        self, tree: bytes | None, updates: Mapping[str, tuple[int, bytes] | None], *, keep_empty: bool = True
    ) -> bytes:
        """Tree ``tree`` (None: empty) with ``updates`` (relative path -> (mode, blob) or None) applied.

        A subtree left empty is not stored (git drops empty directories); the root always is.
        """
        from git.objects.fun import tree_to_stream

        # Names as git stores them (bytes; GitPython decodes with surrogateescape), so a
        # sibling whose name is not UTF-8 is carried over unchanged.
        entries = {_raw(name): entry for name, entry in self._entries(tree).items()}
        deeper: dict[bytes, dict[str, tuple[int, bytes] | None]] = {}
        for path, update in updates.items():
            text_head, _, rest = path.partition("/")
            head = _raw(text_head)
            if rest:
                deeper.setdefault(head, {})[rest] = update
            elif update is None:
                if head in entries and entries[head][1] != TREE:  # removes a file, never a directory
                    del entries[head]
            else:
                entries[head] = (update[1], update[0])
        for name, sub in deeper.items():
            current = entries.get(name)
            below = current[0] if current is not None and current[1] == TREE else None
            written = self._write_tree(below, sub, keep_empty=False)
            if written == _EMPTY_TREE:
                entries.pop(name, None)
            else:
                entries[name] = (written, TREE)
        # git's order: byte-wise by name, a tree's name compared as if it ended in '/'.
        ordered = sorted(entries.items(), key=lambda item: item[0] + (b"/" if item[1][1] == TREE else b""))
        if not entries and not keep_empty:
            return _EMPTY_TREE
        out = BytesIO()
        tree_to_stream([(sha, mode, name) for name, (sha, mode) in ordered], out.write)  # type: ignore[misc]
        return self._store("tree", out.getvalue())

    def update_ref(self, ref: str, new: str, old: str | None, reason: str) -> bool:
        """Move ``ref`` to ``new`` if it still points at ``old`` (None: must not exist); False if it moved."""
        expected = old if old is not None else "0" * 40
        done = self._git("update-ref", "-m", reason, ref, new, expected)
        if done.returncode == 0:
            return True
        if self.resolve(ref) != old:
            return False
        raise InfrastructureError(f"git update-ref {ref} failed in {self.path}: {done.stderr.strip()}")

    def delete_ref(self, ref: str, old: str | None = None) -> None:
        """Delete ``ref`` if it still points at ``old`` (any value when None); quietly nothing otherwise."""
        self._git("update-ref", "-d", ref, *([old] if old else []))

    @contextlib.contextmanager
    def rollout_lock(self, wait: bool = True) -> Iterator[bool]:
        """Serializes rollouts and rollbacks on this repository across processes; dies with its holder.

        Yields whether the lock is held: always, when ``wait``; else False if
        another process holds it (the caller skips what needed it).
        """
        path = self.common_dir / "executor-rollout.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def checked_out_at(self, ref: str) -> list[Path]:
        """Work trees that have ``ref`` checked out (their files trail the branch once it moves).

        Read in-process from git's layout, as ``git worktree list`` does: the
        main work tree (unless the repository is bare) from ``HEAD`` in the
        common directory, each linked one from ``worktrees/<id>/HEAD`` and the
        ``gitdir`` file that says where it is.
        """
        found: list[Path] = []
        config = self.repo.config_reader()
        if not config.get_value("core", "bare", False):
            main = self.common_dir.parent
            if config.has_option("core", "worktree"):
                main = (self.common_dir / str(config.get_value("core", "worktree"))).resolve()
            if _head_ref(self.common_dir / "HEAD") == ref:
                found.append(main)
        linked = self.common_dir / "worktrees"
        for entry in sorted(linked.iterdir()) if linked.is_dir() else []:
            if _head_ref(entry / "HEAD") != ref:
                continue
            with contextlib.suppress(OSError):
                # Absolute, or relative to this admin directory (worktree.useRelativePaths).
                gitdir = entry / (entry / "gitdir").read_text(encoding="utf-8").strip()
                found.append(Path(os.path.normpath(gitdir)).parent)
        return found


def _is_tree(mode: int) -> bool:
    return mode >> 12 == TREE >> 12


def _head_ref(path: Path) -> str | None:
    """The branch a HEAD file names, or None (detached, missing, unreadable)."""
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape").strip()
    except OSError:
        return None
    return text[len("ref: ") :] if text.startswith("ref: ") else None


def repository_path(key: str) -> str:
    """The git directory a record key names (see ``TargetRepo.key``)."""
    return key.rsplit("#", 1)[0]


def _raw(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")
