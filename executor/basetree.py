"""The target repository at its base commit, as plugins see it: read-only, regular files only.

Read straight from git's object database (GitPython), so the user's working
tree and index are never looked at, and nothing runs: no hook, no filter, no
checkout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from executor.errors import RefusedError

REGULAR_MODES = (0o100644, 0o100755)


class GitTree:
    """Regular files of ``rev`` in the repository at ``repo_dir`` (symlinks and submodules are left out)."""

    def __init__(self, repo_dir: str | Path, rev: str = "HEAD") -> None:
        import git

        try:
            self.repo = git.Repo(repo_dir)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise RefusedError(
                f"{repo_dir} is not a git repository", hint="pass --repo with the target repository"
            ) from exc
        try:
            self.commit = self.repo.commit(rev)
        except (git.BadName, ValueError) as exc:
            raise RefusedError(f"{repo_dir} has no commit {rev!r}", hint="pass an existing --base") from exc
        self._blobs: dict[str, Any] = {
            str(item.path): item
            for item in self.commit.tree.traverse()
            if isinstance(item, git.Blob) and item.mode in REGULAR_MODES
        }

    def paths(self) -> list[str]:
        return sorted(self._blobs)

    def read(self, path: str) -> bytes | None:
        blob = self._blobs.get(path)
        return None if blob is None else bytes(blob.data_stream.read())
