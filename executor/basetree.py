"""The target repository at its base commit, as plugins see it: read-only, regular files only.

Read straight from git's object database (GitPython), so the user's working
tree and index are never looked at, and nothing runs: no hook, no filter, no
checkout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from executor.errors import RefusedError
from executor.gitrepo import BLOB, EXECUTABLE, TargetRepo


class GitTree:
    """Regular files of ``rev`` in a repository (symlinks and submodules are left out).

    ``repo`` is an open ``TargetRepo`` (a run's), or the path of one.
    """

    def __init__(self, repo: TargetRepo | str | Path, rev: str = "HEAD") -> None:
        import git

        target = repo if isinstance(repo, TargetRepo) else TargetRepo(repo)
        try:
            self.commit = target.repo.commit(rev)
        except (git.BadName, ValueError) as exc:
            raise RefusedError(
                f"{target.path} has no commit {rev!r}", hint="pass an existing --base"
            ) from exc
        self._blobs: dict[str, Any] = {
            str(item.path): item
            for item in self.commit.tree.traverse()
            if isinstance(item, git.Blob) and item.mode in (BLOB, EXECUTABLE)
        }

    def paths(self) -> list[str]:
        return sorted(self._blobs)

    def read(self, path: str) -> bytes | None:
        blob = self._blobs.get(path)
        return None if blob is None else bytes(blob.data_stream.read())
